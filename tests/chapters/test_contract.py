"""Every chapter result follows the contract of :mod:`poisoncurv.core.contract`."""

import importlib
import inspect
import json
import pkgutil
import re

import poisoncurv.chapters
from poisoncurv.core.contract import ChapterResult, Summary, glue_key
from poisoncurv.core.paths import BOOK_DIR


def chapter_modules():
    return [importlib.import_module(m.name) for m in pkgutil.iter_modules(poisoncurv.chapters.__path__, "poisoncurv.chapters.")]


def chapter_classes():
    return [(m.__name__, c) for m in chapter_modules() for _, c in inspect.getmembers(m, inspect.isclass)
            if c.__module__ == m.__name__]


def test_the_walk_finds_the_drivers():
    names = {m.__name__.rsplit(".", 1)[1] for m in chapter_modules()}
    assert {"krr_clones", "linear_mnist", "deep_runs", "detectors_cnn"} <= names
    assert len([c for _, c in chapter_classes() if issubclass(c, ChapterResult)]) >= 40


def test_every_class_with_a_summary_is_a_chapter_result():
    loose = [f"{m}.{c.__name__}" for m, c in chapter_classes() if hasattr(c, "summary") and not issubclass(c, ChapterResult)]
    assert not loose, f"classes with summary() that do not derive from ChapterResult: {loose}"


def test_results_take_no_arguments_and_use_the_one_summary_alias():
    for m, c in chapter_classes():
        if issubclass(c, ChapterResult):
            for name in ("summary", "tables"):
                params = list(inspect.signature(getattr(c, name)).parameters)
                assert params == ["self"], f"{m}.{c.__name__}.{name} takes {params}"
            assert isinstance(c.sig, int) or all(isinstance(v, int) for v in c.sig.values()), f"{m}.{c.__name__}.sig"
    for m in chapter_modules():
        assert getattr(m, "Summary", Summary) is Summary, f"{m.__name__} defines its own Summary"
        assert not hasattr(m, "SIG"), f"{m.__name__} keeps a digit table of its own"


def test_every_driver_of_a_chapter_ends_its_captions_with_that_chapter_s_run_label():
    """A chapter may have several drivers (Chapter 8: ``detectors`` and ``detectors_cnn``), each with its own ``RUN``
    (drivers import no other driver: ``tests/test_layers.py``); each must be the label its chapter glues."""
    seen = 0
    for notebook in sorted(BOOK_DIR.glob("ch*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code")
        for name in re.findall(r"^from poisoncurv\.chapters import (\w+)", code, re.M):
            run = getattr(importlib.import_module(f"poisoncurv.chapters.{name}"), "RUN", None)
            if run is not None:
                assert run == f"Run: {{glue:text}}`{notebook.stem}_run`.", f"{name}.RUN in {notebook.name}: {run}"
                seen += 1
    assert seen >= 7


def test_glue_key_fragments():
    assert glue_key("spectral (uncentred)") == "spectral_uncentred"
    assert glue_key("Activation clustering") == "activation_clustering"
    assert glue_key("κ_paper = 1e4") == "κ_paper_1e4"
