"""Fingerprints: a file's digest and the short key of a JSON-ready value (the names of cached results files)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any


def file_digest(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest (``algo``: any name :func:`hashlib.new` takes) of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def json_key(value: Any) -> str:
    """16 hex digits of the SHA-256 of ``value`` as JSON with sorted keys: a short stable key."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
