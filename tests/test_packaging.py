"""Issue 26: ``pip install .`` alone (pyproject's core dependencies) is enough to import every layer below the book.

The optional groups (``book``, ``test``, ``bench``, ``sweep``) are needed only by the book layer, the tests, the
benchmarks and a sweep that runs jobs; a module-level import of one of their packages in the layers below would break
``import poisoncurv.lab`` (or ``.curvature``, ``.chapters``) after a plain ``pip install``.
"""

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import poisoncurv
from poisoncurv.core.paths import REPO_ROOT

SRC = Path(poisoncurv.__file__).parent
# Every layer a plain install must import, walked module by module. Left out, on purpose: poisoncurv.book, the
# book extra's layer (docutils, sphinx, nbformat, papermill, myst_nb, IPython: the Sphinx extensions, nbcheck, rerun).
# No module of these layers needs an extra at import; poisoncurv.lab.sweep imports submitit when a sweep runs jobs.
LAYERS = ["core", "krr", "models", "curvature", "detect", "lab", "chapters"]
# Top-level names of the optional groups' packages and of what they pull in (none is a core dependency's dependency).
OPTIONAL = ["nbformat", "nbclient", "nbval", "myst_nb", "myst_parser", "IPython", "ipykernel", "ipywidgets", "papermill",
            "submitit", "sphinx", "sphinxcontrib", "sphinx_proof", "sphinx_book_theme", "docutils", "pybtex",
            "jupyter_book", "jupyter_cache", "jupyter_client", "jupyter_core", "traitlets", "zmq", "tqdm", "pytest",
            "ruff", "psutil", "curvlinops", "backpack", "pyhessian", "pandas"]
IMPORT_NAME = {"pyyaml": "yaml"}  # distribution name -> import name where they differ

GRID = "base: {model: linear, attack: cross-deterministic, device: cpu}\nprofiles: {smoke: {groups: {g: {axes: {theta: [0.1]}}}}}\n"

CHILD = """
import importlib, io, json, pkgutil, sys, contextlib
blocked = set({optional!r})

class Block:  # stands in for an environment without the optional groups
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)

sys.meta_path.insert(0, Block())
out = {{"failed": {{}}, "imported": []}}
for layer in {layers!r}:
    name = "poisoncurv." + layer
    try:
        mod = importlib.import_module(name)
        out["imported"].append(name)
        subs = [m.name for m in pkgutil.walk_packages(getattr(mod, "__path__", []), name + ".")]
    except Exception as err:
        out["failed"][name] = repr(err)
        continue
    for sub in subs:
        try:
            importlib.import_module(sub)
            out["imported"].append(sub)
        except Exception as err:
            out["failed"][sub] = repr(err)
err = io.StringIO()
try:  # a sweep with jobs to run, without submitit: one line, exit 2
    from poisoncurv.lab.sweep import main
    with contextlib.redirect_stderr(err):
        out["sweep_rc"] = main([{grid!r}, "--profile", "smoke", "--executor", "debug", "--results-dir", {res!r},
                                "--log-dir", {log!r}])
except Exception as e:
    out["sweep_rc"] = repr(e)
out["sweep_err"] = err.getvalue()
out["loaded_optional"] = sorted(m for m in sys.modules if m.partition(".")[0] in blocked)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def blocked_run(tmp_path_factory):
    """One subprocess, the optional packages blocked: imports every module of :data:`LAYERS`, then starts a sweep."""
    tmp = tmp_path_factory.mktemp("packaging")
    (tmp / "g.yaml").write_text(GRID)
    code = CHILD.format(optional=OPTIONAL, layers=LAYERS, grid=str(tmp / "g.yaml"), res=str(tmp / "res"), log=str(tmp / "log"))
    env_path = str(SRC.parent)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp,
                          env={**os.environ, "PYTHONPATH": env_path, "POISONCURV_DATA": str(tmp / "data")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_every_module_below_the_book_imports_without_the_optional_groups(blocked_run):
    assert not blocked_run["failed"], blocked_run["failed"]
    assert {"poisoncurv.lab.train", "poisoncurv.lab.sweep", "poisoncurv.curvature.eigen", "poisoncurv.chapters.deep_runs",
            "poisoncurv.models"} <= set(blocked_run["imported"])
    assert blocked_run["loaded_optional"] == []


def test_a_sweep_without_submitit_says_how_to_install_it(blocked_run):
    assert blocked_run["sweep_rc"] == 2
    lines = blocked_run["sweep_err"].strip().splitlines()
    assert len(lines) == 1 and "pip install 'poisoncurv[sweep]'" in lines[0], lines


def module_level_imports(path: Path) -> set[str]:
    """Top-level names a module imports when it is imported: not inside a function, an ``if TYPE_CHECKING:`` block or
    a ``try`` that catches ``ImportError``; absolute imports only."""
    names: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Try) and any("ImportError" in ast.unparse(h.type or ast.Name("")) for h in node.handlers):
                visit(node.orelse + node.finalbody)
                continue
            if isinstance(node, ast.Import):
                names.update(a.name.partition(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit([n for n in getattr(node, field, []) if isinstance(n, ast.stmt | ast.excepthandler)])

    visit(ast.parse(path.read_text()).body)
    return names


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def dist_name(requirement: str) -> str:
    """``"PyYAML>=6.0"`` -> ``"pyyaml"``: a requirement's distribution name, normalised (PEP 503)."""
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)[1]).lower()


def core_dependencies() -> set[str]:
    """Import names of ``[project] dependencies`` in pyproject.toml."""
    names = {dist_name(dep) for dep in pyproject()["dependencies"]}
    return {IMPORT_NAME.get(n, n.replace("-", "_")) for n in names}


def pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements file, by normalised name."""
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {dist_name(line): line.split("==")[1] for line in lines if "==" in line}


def test_every_requirement_of_pyproject_is_pinned_and_the_bench_group_is_benchmarks_requirements():
    project, top, bench = pyproject(), pins(REPO_ROOT / "requirements.txt"), pins(REPO_ROOT / "benchmarks" / "requirements.txt")
    groups = project["optional-dependencies"]
    assert set(groups) == {"book", "test", "bench", "sweep"}
    named = {dist_name(r) for r in project["dependencies"] + [r for g in groups.values() for r in g]} - {"poisoncurv"}
    assert named - set(top) - set(bench) == set()
    assert {dist_name(r) for r in groups["bench"]} == set(bench)
    assert any(r.startswith("poisoncurv[") and all(g in r for g in ("book", "sweep", "bench")) for r in groups["test"])


def test_the_core_dependencies_cover_the_module_level_imports_of_the_layers():
    allowed = core_dependencies() | set(sys.stdlib_module_names) | {"poisoncurv"}
    assert {"torch", "torchvision", "numpy", "scipy", "yaml", "matplotlib"} <= core_dependencies()
    files = [SRC / "__init__.py", SRC / "models.py"] + [p for layer in LAYERS if (SRC / layer).is_dir()
                                                         for p in sorted((SRC / layer).rglob("*.py"))]
    missing = {f"{p.relative_to(SRC)}: {name}" for p in files for name in module_level_imports(p) - allowed}
    assert not missing, f"module-level imports outside pyproject's [project] dependencies: {sorted(missing)}"


def test_the_import_scan_sees_what_runs_at_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(textwrap.dedent("""
        import os, nbformat.v4
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            import submitit
        try:
            import tqdm
        except ImportError:
            tqdm = None
        class A:
            from docutils import nodes
        def f():
            import papermill
    """))
    assert module_level_imports(f) == {"os", "nbformat", "typing", "docutils"}


def test_the_rerun_command_without_the_book_extra_says_how_to_install_it():
    child = textwrap.dedent("""
        import sys
        class Block:  # an environment without the book extra
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] in {"nbformat", "matplotlib", "papermill"}:
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, Block())
        from poisoncurv.book import rerun_main
        sys.exit(rerun_main())
    """)
    proc = subprocess.run([sys.executable, "-c", child, "ch01_krr_clones"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(SRC.parent)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "poisoncurv-rerun: needs the book extra (nbformat is not installed): pip install 'poisoncurv[book]'"]
