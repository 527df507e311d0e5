"""Every chapter result follows the contract of :mod:`poisoncurv.core.contract`."""

import importlib
import inspect
import pkgutil

import poisoncurv.chapters
from poisoncurv.core.contract import ChapterResult, Summary


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
