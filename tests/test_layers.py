"""The README's layering rule: a layer of ``poisoncurv`` imports only from itself and the layers listed before it."""

import ast
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
