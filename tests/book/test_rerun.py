"""`make rerun` machinery: papermill output folded back into a clean chapter; all-or-nothing moves; safe names."""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from poisoncurv.book.nbcheck import chapters, nbval_notebooks, parameters
from poisoncurv.book.rerun import chapter_path, execute, recover, rerun_chapter
from poisoncurv.book.text_pairs import notebook_text
from poisoncurv.core.paths import REPO_ROOT

SRC = REPO_ROOT / "src"


def _tiny(path):
    nb = new_notebook(cells=[
        new_markdown_cell("# Tiny"),
        new_code_cell('# Parameters\nprofile = "cpu"\ndevice = "cpu"\nseed = 0\nresults_dir = None', metadata={"tags": ["parameters"]}),
        new_code_cell("print(profile, device, seed, results_dir is not None)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_execute_folds_parameters_and_strips_papermill(tmp_path):
    src = tmp_path / "tiny.ipynb"
    _tiny(src)
    nb = execute(src, src, {"profile": "smoke", "device": "cpu", "results_dir": str(tmp_path)}, cwd=tmp_path)
    text = src.read_text()
    assert "papermill" not in text and "injected-parameters" not in text
    assert len(nb.cells) == 3
    assert [c.execution_count for c in nb.cells if c.cell_type == "code"] == [1, 2]
    assert nb.cells[1].source == '# Parameters\nprofile = \'smoke\'\ndevice = \'cpu\'\nseed = 0\nresults_dir = None'
    assert nb.cells[2].outputs[0]["text"] == "smoke cpu 0 True\n"
    assert parameters(src) == {"profile": "smoke", "device": "cpu", "seed": 0, "results_dir": None}
    assert json.loads(text)["metadata"]["kernelspec"]["name"] == "python3"


def test_failed_execution_leaves_chapter_untouched(tmp_path):
    src = tmp_path / "bad.ipynb"
    _tiny(src)
    nb = nbformat.read(src, as_version=4)
    nb.cells.append(new_code_cell("raise RuntimeError('boom')"))
    nbformat.write(nb, src)
    before = src.read_text()
    with pytest.raises(Exception, match="boom"):
        execute(src, src, {"profile": "smoke"}, cwd=tmp_path)
    assert src.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ipynb"]


def test_bad_arguments_fail_before_work(tmp_path):
    with pytest.raises(ValueError, match="unknown profile"):
        rerun_chapter("ch01_krr_clones", "medium", "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        rerun_chapter("ch01_krr_clones", "smoke", "gpu0")
    with pytest.raises(FileNotFoundError, match="chapters:"):
        chapter_path("no_such_chapter")


def test_nbval_selection(tmp_path):
    _tiny(tmp_path / "a.ipynb")
    nb = nbformat.read(tmp_path / "a.ipynb", as_version=4)
    nb.cells[1].source = 'profile = "gpu"\ndevice = "cuda"'
    nbformat.write(nb, tmp_path / "b.ipynb")
    assert [p.name for p in nbval_notebooks(tmp_path)] == ["a.ipynb"]


def _book(root, claims_fails=False, sleep=0):
    """A tiny book: ``tiny`` writes ``results/tiny.json`` (its profile), ``claims`` prints what it reads from results."""
    book, results = root / "book", root / "results"
    (results / "lab").mkdir(parents=True)
    book.mkdir()
    nb = new_notebook(cells=[
        new_code_cell('profile = "cpu"\ndevice = "cpu"\nresults_dir = None', metadata={"tags": ["parameters"]}),
        new_code_cell("import time\nfrom pathlib import Path\nfrom poisoncurv.core.results import write_json_atomic\n"
                      "write_json_atomic(Path(results_dir) / 'tiny.json', {'values': {'profile': profile}})\n"
                      "write_json_atomic(Path(results_dir) / 'lab' / 'new.json', {'run': profile})\n"
                      f"time.sleep({sleep})"),
    ])
    claims = new_notebook(cells=[new_code_cell(
        "import json\nfrom poisoncurv.core.paths import RESULTS_DIR\n"
        "print(json.loads((RESULTS_DIR / 'tiny.json').read_text())['values']['profile'])"
        + ("\nraise RuntimeError('claims failed')" if claims_fails else ""))])
    for n in (nb, claims):
        n.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, book / "tiny.ipynb")
    nbformat.write(claims, book / "claims.ipynb")
    (results / "tiny.json").write_text(json.dumps({"values": {"profile": "cpu"}}))
    (results / "lab" / "old.json").write_text("{}")
    return book, results


def _snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_rerun_moves_chapter_results_and_claims_together(tmp_path):
    book, results = _book(tmp_path)
    old_mask = os.umask(0o022)
    try:
        rerun_chapter("tiny", "smoke", "cpu", book_dir=book, results_dir=results)
    finally:
        os.umask(old_mask)
    assert parameters(book / "tiny.ipynb")["profile"] == "smoke"
    assert json.loads((results / "tiny.json").read_text())["values"]["profile"] == "smoke"
    assert json.loads((results / "lab" / "new.json").read_text()) == {"run": "smoke"}
    assert (results / "lab" / "old.json").read_text() == "{}"
    claims = nbformat.read(book / "claims.ipynb", as_version=4)
    assert claims.cells[0].outputs[0]["text"] == "smoke\n", "the claims page did not read the new results"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book", "results"], "a staging folder was left behind"
    assert not [p for p in book.iterdir() if p.name.startswith(".")]
    for p in (book / "tiny.ipynb", book / "claims.ipynb", results / "tiny.json", results / "lab" / "new.json"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p


def test_rerun_writes_the_texts_of_a_paired_book(tmp_path):
    book, results = _book(tmp_path)
    shutil.copy(REPO_ROOT / "jupytext.toml", tmp_path / "jupytext.toml")
    rerun_chapter("tiny", "smoke", "cpu", book_dir=book, results_dir=results)
    assert sorted(p.name for p in (book / "text").iterdir()) == ["claims.md", "tiny.md"]
    assert (book / "text" / "tiny.md").read_text() == notebook_text(book / "tiny.ipynb", tmp_path)
    assert "'smoke'" in (book / "text" / "tiny.md").read_text()          # the parameters that ran


def test_failed_claims_page_leaves_the_old_set(tmp_path):
    book, results = _book(tmp_path, claims_fails=True)
    before = _snapshot(tmp_path)
    with pytest.raises(Exception, match="claims failed"):
        rerun_chapter("tiny", "smoke", "cpu", book_dir=book, results_dir=results)
    assert _snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book", "results"]


def test_killed_rerun_leaves_the_old_set(tmp_path):
    """SIGKILL while the chapter runs (after it wrote its results JSON): nothing of the old set changes."""
    book, results = _book(tmp_path, sleep=60)
    before = _snapshot(tmp_path)
    code = (f"from pathlib import Path\nfrom poisoncurv.book.rerun import rerun_chapter\n"
            f"rerun_chapter('tiny', 'smoke', 'cpu', book_dir=Path({str(book)!r}), results_dir=Path({str(results)!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob(".rerun-*/results/tiny.json")) or list(tmp_path.glob(".rerun-*/results/tiny.json"))[0].is_symlink():
            assert time.time() < deadline and proc.poll() is None, "the chapter never wrote its results"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert _snapshot(tmp_path / "book") == {k.removeprefix("book/"): v for k, v in before.items() if k.startswith("book/")}
    assert {k: v for k, v in _snapshot(tmp_path).items() if not k.startswith(".rerun-")} == before
    assert recover(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["book", "results"]


def test_recover_completes_renames_a_kill_interrupted(tmp_path):
    book, results = _book(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stage = tmp_path / f".rerun-{int(dead.stdout)}-abc"
    stage.mkdir()
    (stage / "tiny.json").write_text('{"values": {"profile": "smoke"}}')
    (stage / "claims.ipynb").write_text("new claims")
    moves = [[str(stage / "tiny.json"), str(results / "tiny.json")], [str(stage / "tiny.ipynb"), str(book / "tiny.ipynb")],
             [str(stage / "claims.ipynb"), str(book / "claims.ipynb")]]
    (stage / "journal.json").write_text(json.dumps({"moves": moves}))
    (book / "tiny.ipynb").write_text("new chapter")  # the kill came after the chapter's rename
    assert recover(tmp_path) == [results / "tiny.json", book / "tiny.ipynb", book / "claims.ipynb"]
    assert (book / "claims.ipynb").read_text() == "new claims" and "smoke" in (results / "tiny.json").read_text()
    assert not stage.exists()


def test_dotfiles_are_not_notebooks_and_chapter_names_are_checked(tmp_path):
    _tiny(tmp_path / "a.ipynb")
    _tiny(tmp_path / ".a.x1y2.ipynb")  # what a killed atomic write used to leave
    assert [p.name for p in nbval_notebooks(tmp_path)] == ["a.ipynb"] and chapters(tmp_path) == ["a"]
    for bad in ("x; touch pwned", "../book/a", "a b", "$(id)"):
        with pytest.raises(ValueError, match="not a chapter name"):
            chapter_path(bad, tmp_path)
    assert chapter_path("a.ipynb", tmp_path) == tmp_path / "a.ipynb"


@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
def test_makefile_passes_the_chapter_quoted(tmp_path):
    pwned = tmp_path / "pwned"
    out = subprocess.run(["make", "-s", "-o", ".venv/.installed", "rerun", f"CHAPTER=x; touch {pwned}"], cwd=REPO_ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SRC)})
    assert out.returncode != 0 and "not a chapter name" in out.stderr and not pwned.exists()


def test_rerun_writes_each_labelled_figure_as_svg_into_the_book(tmp_path):
    """A chapter's labelled figure cell, run by ``make rerun``, leaves ``book/_static/figures/<label>.svg``; a legend
    the cell drew at 6 pt is shown at 9 pt."""
    book, results = tmp_path / "book", tmp_path / "results"
    book.mkdir()
    results.mkdir()
    nb = new_notebook(cells=[
        new_code_cell('profile = "cpu"\ndevice = "cpu"\nseed = 0\nresults_dir = None', metadata={"tags": ["parameters"]}),
        new_code_cell("import matplotlib.pyplot as plt\nfrom poisoncurv.book.figures import panels, setup_plots\n"
                      "from poisoncurv.book.runtime import Chapter\n"
                      "ch = Chapter('tiny', profile, device, seed, data_source='none', results_dir=results_dir)\n"
                      "setup_plots()"),
        new_code_cell("fig, ax = panels(1)\nax.plot([0, 1], label='line')\nleg = ax.legend(fontsize=6)\nplt.show()",
                      metadata={"mystnb": {"figure": {"name": "fig-tiny-line", "caption": "A line."}}}),
        new_code_cell("print(leg.get_texts()[0].get_fontsize())"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, book / "tiny.ipynb")
    rerun_chapter("tiny", "smoke", "cpu", book_dir=book, results_dir=results)
    svg = book / "_static" / "figures" / "fig-tiny-line.svg"
    assert svg.read_bytes().startswith(b"<?xml") and b"<svg" in svg.read_bytes()
    assert [p.name for p in svg.parent.iterdir()] == ["fig-tiny-line.svg"]
    done = nbformat.read(book / "tiny.ipynb", as_version=4)
    assert "image/png" in done.cells[2].outputs[0]["data"]
    assert done.cells[3].outputs[0]["text"] == "9.0\n"
    assert not (results / "figures").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["book", "results"]
