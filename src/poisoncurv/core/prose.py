"""How a glued value reads in prose: one formatter for every ``{glue:text}`` of the book.

The results files keep the numbers; only the text shown on the page goes through :func:`prose_text`:
``True`` → ``yes``, ``3.0`` → ``3``, ``7.8e-05`` → ``7.8·10⁻⁵``, ``1638400.0`` → ``1638400``; other numbers and
text as they are.
"""

from __future__ import annotations

import math
import re
from typing import Any

SUPERSCRIPTS = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")

GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`]+)`")
"""A glue role in MyST text (``{glue:text}`key```); group 1 is the key."""


def powers_text(x: float) -> str:
    """A positive number as prose writes a power of ten: ``30000`` → ``3·10⁴``, ``1e5`` → ``10⁵``, ``2500`` → ``2.5·10³``."""
    e = math.floor(math.log10(x))
    m = round(x / 10**e, 2)
    mant = "" if m == 1 else f"{m:g}·"
    return f"{mant}10{str(e).translate(SUPERSCRIPTS)}"


def prose_text(value: Any) -> str:
    """The text of ``value`` in a sentence (module docstring)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return repr(value)
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        text = repr(value)
        if "e" in text:
            mantissa, exponent = text.split("e")
            power = "10" + str(int(exponent)).translate(SUPERSCRIPTS)
            return power if mantissa in ("1", "1.0") else f"{mantissa}·{power}"
        return text
    return str(value)


class GluedText:
    """A glued value whose text on the page is :func:`prose_text` of it (``repr`` is what myst-nb shows)."""

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return prose_text(self.value)


def round_sig(value: float, sig: int = 4) -> float:
    """``value`` rounded to ``sig`` significant digits (so glued text is stable across machines)."""
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, sig - 1 - int(math.floor(math.log10(abs(value)))))
