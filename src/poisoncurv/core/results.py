"""Machine-readable results files, written atomically (a reader never sees half a file)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


def ordinary_mode(directory: bool = False) -> int:
    """The mode ``open``/``mkdir`` would give a new file (``0o666``) or folder (``0o777``) under the current umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


@contextmanager
def atomic_target(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on any error it is removed.

    ``path``'s folder is created if needed. Readers never see a half-written file. The file gets the
    mode of an ordinary new file (``0o666`` less the umask), not ``mkstemp``'s ``0o600``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, ordinary_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as JSON to ``path`` atomically (:func:`atomic_target`); returns the path."""
    with atomic_target(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(payload), indent=1, sort_keys=True) + "\n")
    return Path(path)


class CorruptResultError(ValueError):
    """A results file that is not valid JSON (truncated or corrupt): ``path`` and the parser's ``reason``."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path} is not valid JSON ({reason}): truncated or corrupt; delete it and rerun what writes it")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Load a results file; raises ``FileNotFoundError`` naming the path and how to make it, or
    ``ValueError`` naming it if it is not valid JSON."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no results file at {path}: run `make rerun CHAPTER=<chapter>` to produce it")
    try:
        return json.loads(path.read_text())
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
        raise CorruptResultError(path, str(err)) from None
