"""The dtypes the book computes in: float64 for the theory, and random draws that do not depend on the default dtype.

The theory chapters (1 to 4, and Chapter 8's kernel model) compute in :data:`THEORY_DTYPE` (float64), defined here
once; their drivers and :mod:`poisoncurv.krr.synthetic` import it.

``torch.rand`` and the initialisers of ``nn.Module`` draw in ``torch.get_default_dtype()``: the same generator state
gives other numbers in float64 than in float32. The theory chapters set float64 as the default; the lab's runs were
trained under float32. Everything the lab draws (poison amplitudes, the warp field, model initialisation, augmentation
flips) therefore draws in :data:`DRAW_DTYPE` explicitly, or inside :func:`default_dtype`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

THEORY_DTYPE = torch.float64   # what the theory chapters compute in
DRAW_DTYPE = torch.float32     # what the lab's committed runs drew in (they were trained under the float32 default)


@contextmanager
def default_dtype(dtype: torch.dtype = DRAW_DTYPE) -> Iterator[None]:
    """Run the block with ``dtype`` as torch's default dtype, restoring the caller's afterwards (also on errors)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)
