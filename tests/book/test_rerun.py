"""`make rerun` machinery: papermill output folded back into a clean chapter."""

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from poisoncurv.book.nbcheck import nbval_notebooks, parameters
from poisoncurv.book.rerun import chapter_path, execute, rerun_chapter


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
