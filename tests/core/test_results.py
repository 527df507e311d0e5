"""Atomic results files: complete or absent, ordinary permissions, corrupt JSON named."""

import os
import stat

import pytest

from poisoncurv.core.results import atomic_target, read_json, write_json_atomic


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_writes_get_the_mode_of_an_ordinary_file(tmp_path, mask):
    old = os.umask(mask)
    try:
        path = write_json_atomic(tmp_path / "r.json", {"a": 1})
        (tmp_path / "plain").write_text("x")  # what open() gives under the same umask
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_failed_write_leaves_nothing(tmp_path):
    (tmp_path / "r.json").write_text('{"old": 1}')
    with pytest.raises(RuntimeError), atomic_target(tmp_path / "r.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert read_json(tmp_path / "r.json") == {"old": 1} and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_corrupt_json_names_the_file(tmp_path):
    (tmp_path / "r.json").write_text('{"values": {"a": 1')
    with pytest.raises(ValueError, match=f"{tmp_path / 'r.json'} is not valid JSON"):
        read_json(tmp_path / "r.json")
