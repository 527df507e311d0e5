"""Derived-results cache: small quantities computed from a lab run (not the run itself), one JSON file per kind and
run under ``results/derived/<kind>/<key>.json``.

A chapter re-executed from the committed files should not recompute what only depends on committed inputs and
deterministic code: a kept model's penultimate features and the detectors run on them, or the adaptive attacker's
surrogate. :func:`get` loads the file when it holds the same ``kind``, ``key`` (the run's configuration key),
``version`` (of the code that computes it, a constant its owner bumps whenever that code changes) and ``inputs``
(fingerprints of the files it was computed from); otherwise it calls ``compute()`` and writes the file atomically.
A file of another version or from other inputs, or an unreadable one, is recomputed and replaced; a file that holds
another kind or key (copied or renamed by hand) is refused with :class:`StaleDerivedError`, never silently reused.
``force=True`` or ``FORCE=1`` recomputes. A computed file also carries ``provenance`` (commit, profile, device and
CPU model, data source, library versions, the computation's wall time) from the caller's ``record``. The values
are returned as read back from the file (non-finite floats are stored as strings, ``"inf"``; ``float()`` restores
them), so computed and cached values are the same floats.

Keep the values small: scalars and short lists, not feature matrices (the files are committed with the chapters).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeGuard

from poisoncurv.core.paths import DERIVED_RESULTS_DIR
from poisoncurv.core.provenance import RunRecord
from poisoncurv.core.results import CorruptResultError, read_json, write_json_atomic
from poisoncurv.lab.cache import force_from_env

FIELDS = ("kind", "key", "version", "inputs", "values")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class StaleDerivedError(RuntimeError):
    """A derived-results file holds another kind or configuration key than its name says."""


def derived_path(kind: str, key: str, directory: str | os.PathLike | None = None) -> Path:
    """``<directory or results/derived>/<kind>/<key>.json`` (``kind`` and ``key``: plain file names)."""
    for what, name in (("kind", kind), ("key", key)):
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"{what} must be a plain file name (letters, digits, _ . -), got {name!r}")
    return Path(directory or DERIVED_RESULTS_DIR) / kind / f"{key}.json"


def _usable(res: Any, kind: str, key: str, version: int, inputs: dict[str, Any], path: Path) -> TypeGuard[dict[str, Any]]:
    """Whether ``res`` stands for ``(kind, key, version, inputs)``; raises when it names another kind or key."""
    if not isinstance(res, dict) or any(f not in res for f in FIELDS):
        return False
    if res["kind"] != kind or res["key"] != key:
        raise StaleDerivedError(f"{path} holds {res['kind']!r} of {res['key']!r}, not {kind!r} of {key!r}: delete it "
                                f"(it is recomputed on the next use)")
    return res["version"] == version and res["inputs"] == inputs


def get(kind: str, key: str, version: int, compute: Callable[[], dict[str, Any]],
        directory: str | os.PathLike | None = None, force: bool | None = None,
        inputs: dict[str, Any] | None = None, record: RunRecord | None = None) -> dict[str, Any]:
    """The values of ``kind`` for run ``key``: read from :func:`derived_path` when that file was written by code of
    ``version`` from the same ``inputs`` (JSON-ready, e.g. :func:`~poisoncurv.core.digests.file_digest` of the kept weights), else
    ``compute()`` (a dict of JSON-ready values), written atomically and read back, with ``record``'s provenance
    (its clock started when ``compute`` is called)."""
    path = derived_path(kind, key, directory)
    inputs = {} if inputs is None else inputs
    force = force_from_env() if force is None else force
    if path.exists() and not force:
        try:
            res = read_json(path)
        except CorruptResultError:
            res = None
        if _usable(res, kind, key, version, inputs, path):
            return res["values"]
    started = time.perf_counter()
    values = compute()
    if not isinstance(values, dict):
        raise TypeError(f"compute() must return a dict of JSON-ready values, got {type(values).__name__}")
    payload = {"kind": kind, "key": key, "version": version, "inputs": inputs, "values": values}
    if record is not None:
        payload["provenance"] = replace(record, started=started).finish()
    write_json_atomic(path, payload)
    return read_json(path)["values"]
