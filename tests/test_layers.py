"""The README's layering rule: a layer of ``poisoncurv`` imports only from itself and the layers listed before it."""

import ast
import json
from pathlib import Path

import poisoncurv
from poisoncurv.core.paths import REPO_ROOT

SRC = Path(poisoncurv.__file__).parent


def readme_layers() -> list[str]:
    """The layers in the order the README's table lists them (lowest first)."""
    text = (REPO_ROOT / "README.md").read_text()
    table = text[text.index("The package's layers, lowest first"):].split("\n\n")[1]
    return [line.split("`")[1].removeprefix("poisoncurv.") for line in table.splitlines() if line.startswith("| `poisoncurv.")]


def imported(path: Path) -> set[str]:
    """The ``poisoncurv`` subpackages (``core``, ``lab``, ...) a source file imports."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] if node.module != "poisoncurv" else [f"poisoncurv.{a.name}" for a in node.names]
        out |= {n.split(".")[1] for n in names if n.startswith("poisoncurv.")}
    return out


def test_every_import_goes_down_the_layers():
    layers = readme_layers()
    assert layers[:2] == ["core", "krr"] and layers[-1] == "book"
    assert {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()} | {"models"} == set(layers)
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        own = path.relative_to(SRC).parts[0].removesuffix(".py")
        if own not in layers:
            continue
        wrong += [f"{path.relative_to(SRC)} imports poisoncurv.{m}" for m in imported(path)
                  if m in layers and layers.index(m) > layers.index(own)]
    assert not wrong, wrong


def test_the_check_sees_an_upward_import(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("from poisoncurv.book.runtime import Chapter\nimport poisoncurv.lab.train\nfrom poisoncurv import chapters\n")
    assert imported(f) == {"book", "lab", "chapters"}


# ---- chapter drivers import no other driver ------------------------------------------------------------------------

CHAPTERS = SRC / "chapters"


def cell_sources(notebook: Path) -> list[str]:
    """The code cells of a notebook, with IPython's magic and shell lines left out."""
    cells = json.loads(notebook.read_text())["cells"]
    return ["\n".join(line for line in "".join(c["source"]).splitlines() if not line.lstrip().startswith(("%", "!")))
            for c in cells if c["cell_type"] == "code"]


def drivers(book_dir: Path = REPO_ROOT / "book") -> set[str]:
    """The chapter drivers: the modules the notebooks import as ``from poisoncurv.chapters import X [as ...]``."""
    out = set()
    for notebook in sorted(book_dir.glob("*.ipynb")):
        for source in cell_sources(notebook):
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "poisoncurv.chapters":
                    out |= {a.name for a in node.names}
    return out


def chapter_modules_imported(path: Path) -> set[str]:
    """The modules of ``poisoncurv.chapters`` a source file imports, anywhere in it (also inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[2] for a in node.names if a.name.startswith("poisoncurv.chapters.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "poisoncurv.chapters":
                out |= {a.name for a in node.names}
            elif node.module.startswith("poisoncurv.chapters."):
                out.add(node.module.split(".")[2])
        elif isinstance(node, ast.ImportFrom) and node.level > 0:       # relative imports count too
            out |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    return out


def driver_imports(chapters_dir: Path, driver_names: set[str]) -> list[str]:
    """``"a imports b"`` for every module of ``chapters_dir`` that imports a driver other than itself: a driver may import
    only the shared modules (``deep_runs``, ``hardware``, ``mnist_runs``, ...), and those import no driver."""
    return [f"{p.stem} imports {m}" for p in sorted(chapters_dir.glob("*.py"))
            for m in sorted(chapter_modules_imported(p) & driver_names - {p.stem})]


def test_the_notebooks_name_the_drivers():
    names = drivers()
    assert {"krr_clones", "near_clones", "gradient_flow_defence", "exponential_filter", "linear_mnist", "cnn_mnist",
            "resnet_cifar", "detectors", "detectors_cnn"} <= names
    assert all((CHAPTERS / f"{n}.py").exists() for n in names), names
    assert not names & {"deep_runs", "hardware", "gallery"}


def test_no_driver_imports_another_driver():
    wrong = driver_imports(CHAPTERS, drivers())
    assert not wrong, f"chapter drivers import each other (move what they share into a shared module): {wrong}"


def test_the_driver_check_sees_every_form_of_import(tmp_path):
    (tmp_path / "a.py").write_text("from poisoncurv.chapters.b import x\n")
    (tmp_path / "c.py").write_text("def f():\n    from poisoncurv.chapters import b\n")
    (tmp_path / "d.py").write_text("import poisoncurv.chapters.b as bb\nfrom poisoncurv.chapters import shared\n")
    (tmp_path / "e.py").write_text("from .b import x\n")
    (tmp_path / "shared.py").write_text("from poisoncurv.chapters import b\n")
    (tmp_path / "b.py").write_text("from poisoncurv.chapters import shared\nfrom poisoncurv.chapters.b import y\n")
    assert driver_imports(tmp_path, {"a", "b", "c", "d", "e"}) == [
        "a imports b", "c imports b", "d imports b", "e imports b", "shared imports b"]
