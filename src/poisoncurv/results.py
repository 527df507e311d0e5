"""Machine-readable results files, written atomically (a reader never sees half a file)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def _jsonable(value: Any) -> Any:
    """Convert numpy / torch scalars and arrays to plain JSON types; non-finite floats to strings."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_json_atomic(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as JSON to ``path`` via a temporary file and ``os.replace``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(_jsonable(payload), fh, indent=1, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Load a results file; raises ``FileNotFoundError`` naming the path and how to make it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no results file at {path}: run `make rerun CHAPTER=<chapter>` to produce it")
    return json.loads(path.read_text())
