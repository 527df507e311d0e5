import pytest

from poisoncurv.core.prose import GluedText, powers_text, prose_text


@pytest.mark.parametrize("x, text", [(30000, "3·10⁴"), (1e5, "10⁵"), (2500, "2.5·10³"), (163.84, "1.64·10²"), (0.01, "10⁻²")])
def test_powers_text(x, text):
    assert powers_text(x) == text


@pytest.mark.parametrize("value, text", [
    (True, "yes"), (False, "no"), (3, "3"), (3.0, "3"), (817.0, "817"), (0.0923, "0.0923"), (-2.0, "-2"),
    (7.8e-05, "7.8·10⁻⁵"), (1e-05, "10⁻⁵"), (1.5e16, "1.5·10¹⁶"), (1638400.0, "1638400"), (float("nan"), "nan"),
    ("seeds disagree", "seeds disagree"), (0.1, "0.1")])
def test_prose_text(value, text):
    assert prose_text(value) == text


def test_glued_text_reads_as_prose():
    assert repr(GluedText(1.0)) == "1" and repr(GluedText(True)) == "yes" and GluedText(2.5).value == 2.5
