"""The derived-results cache (poisoncurv.lab.derived): round trip, versions and inputs, refused files, atomic writes,
FORCE, and the folder it follows."""

import json
import math

import pytest

from poisoncurv.core.digests import file_digest
from poisoncurv.core.paths import DERIVED_RESULTS_DIR, chapter_derived_dir, chapter_lab_dir
from poisoncurv.lab import derived

KIND = "test-kind"
KEY = "0123456789abcdef"


class Counter:
    """A ``compute`` that counts its calls and returns ``values`` (a fresh copy each time)."""

    def __init__(self, values):
        self.values, self.calls = values, 0

    def __call__(self):
        self.calls += 1
        return json.loads(json.dumps(self.values)) if not callable(self.values) else self.values()


def test_round_trip_computes_once_and_keeps_the_floats(tmp_path):
    vals = {"third": 1 / 3, "sum": 0.1 + 0.2, "tiny": 5e-324, "n": 7, "list": [2.5, -0.0], "none": None}
    c = Counter(vals)
    first = derived.get(KIND, KEY, 1, c, tmp_path, inputs={"weights_sha256": "ab"})
    again = derived.get(KIND, KEY, 1, c, tmp_path, inputs={"weights_sha256": "ab"})
    assert c.calls == 1 and first == again == vals
    assert again["third"] == 1 / 3 and again["sum"] == 0.1 + 0.2 and again["tiny"] == 5e-324    # bit for bit
    path = tmp_path / KIND / f"{KEY}.json"
    assert derived.derived_path(KIND, KEY, tmp_path) == path
    stored = json.loads(path.read_text())
    assert (stored["kind"], stored["key"], stored["version"], stored["inputs"]) == (KIND, KEY, 1, {"weights_sha256": "ab"})


def test_non_finite_values_come_back_as_strings_float_restores(tmp_path):
    c = Counter(lambda: {"gap": math.inf})
    computed = derived.get(KIND, KEY, 1, c, tmp_path)
    cached = derived.get(KIND, KEY, 1, c, tmp_path)
    assert c.calls == 1 and computed == cached == {"gap": "inf"} and float(cached["gap"]) == math.inf


def test_other_version_or_inputs_are_recomputed_and_replaced(tmp_path):
    derived.get(KIND, KEY, 1, Counter({"v": 1.0}), tmp_path, inputs={"w": "a"})
    c = Counter({"v": 2.0})
    assert derived.get(KIND, KEY, 2, c, tmp_path, inputs={"w": "a"}) == {"v": 2.0} and c.calls == 1
    assert json.loads(derived.derived_path(KIND, KEY, tmp_path).read_text())["version"] == 2
    assert derived.get(KIND, KEY, 2, c, tmp_path, inputs={"w": "a"}) == {"v": 2.0} and c.calls == 1   # now cached
    c3 = Counter({"v": 3.0})
    assert derived.get(KIND, KEY, 2, c3, tmp_path, inputs={"w": "b"}) == {"v": 3.0} and c3.calls == 1  # new weights
    # going back to the old version recomputes too: a file is used only by the version that wrote it
    c1 = Counter({"v": 1.5})
    assert derived.get(KIND, KEY, 1, c1, tmp_path, inputs={"w": "b"}) == {"v": 1.5} and c1.calls == 1


def test_file_of_another_key_or_kind_is_refused(tmp_path):
    derived.get(KIND, KEY, 1, Counter({"v": 1.0}), tmp_path)
    other = derived.derived_path(KIND, "fedcba9876543210", tmp_path)
    other.write_text(derived.derived_path(KIND, KEY, tmp_path).read_text())        # copied under another key
    c = Counter({"v": 9.0})
    with pytest.raises(derived.StaleDerivedError, match="fedcba9876543210"):
        derived.get(KIND, "fedcba9876543210", 1, c, tmp_path)
    renamed = derived.derived_path("other-kind", KEY, tmp_path)
    renamed.parent.mkdir()
    renamed.write_text(derived.derived_path(KIND, KEY, tmp_path).read_text())      # moved to another kind
    with pytest.raises(derived.StaleDerivedError, match="other-kind"):
        derived.get("other-kind", KEY, 1, c, tmp_path)
    assert c.calls == 0


def test_unreadable_or_foreign_file_is_recomputed(tmp_path):
    path = derived.derived_path(KIND, KEY, tmp_path)
    path.parent.mkdir(parents=True)
    for text in ('{"kind": "test-kind", "key": "0123', '{"values": {"v": 5.0}}', "[1, 2]"):
        path.write_text(text)
        c = Counter({"v": 1.0})
        assert derived.get(KIND, KEY, 1, c, tmp_path) == {"v": 1.0} and c.calls == 1


def test_force_and_FORCE_recompute(tmp_path, monkeypatch):
    derived.get(KIND, KEY, 1, Counter({"v": 1.0}), tmp_path)
    c = Counter({"v": 2.0})
    assert derived.get(KIND, KEY, 1, c, tmp_path, force=True) == {"v": 2.0} and c.calls == 1
    monkeypatch.setenv("FORCE", "1")
    c3 = Counter({"v": 3.0})
    assert derived.get(KIND, KEY, 1, c3, tmp_path) == {"v": 3.0} and c3.calls == 1
    assert derived.get(KIND, KEY, 1, Counter({"v": 4.0}), tmp_path, force=False) == {"v": 3.0}   # force=False wins
    monkeypatch.setenv("FORCE", "0")
    c5 = Counter({"v": 5.0})
    assert derived.get(KIND, KEY, 1, c5, tmp_path) == {"v": 3.0} and c5.calls == 0


def test_writes_are_atomic(tmp_path):
    derived.get(KIND, KEY, 1, Counter({"v": 1.0}), tmp_path)
    path = derived.derived_path(KIND, KEY, tmp_path)
    before = path.read_bytes()
    with pytest.raises(TypeError):      # not JSON-ready: fails while writing the temporary file
        derived.get(KIND, KEY, 2, Counter(lambda: {"v": object()}), tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        derived.get(KIND, KEY, 2, Counter(lambda: (_ for _ in ()).throw(RuntimeError("boom"))), tmp_path)
    with pytest.raises(TypeError, match="dict"):
        derived.get(KIND, KEY, 2, Counter(lambda: [1.0]), tmp_path)
    assert path.read_bytes() == before                                   # the old file, whole
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left behind


def test_results_dir_is_followed_and_names_are_checked(tmp_path):
    assert chapter_derived_dir(None) is None and chapter_lab_dir(None) is None
    assert chapter_derived_dir(tmp_path) == tmp_path / "derived" and chapter_lab_dir(tmp_path).parent == tmp_path
    assert derived.derived_path(KIND, KEY) == DERIVED_RESULTS_DIR / KIND / f"{KEY}.json"
    derived.get(KIND, KEY, 1, Counter({"v": 1.0}), chapter_derived_dir(tmp_path))
    assert (tmp_path / "derived" / KIND / f"{KEY}.json").exists() and not (DERIVED_RESULTS_DIR / KIND).exists()
    for kind, key in (("../up", KEY), (KIND, "a/b"), (KIND, ".hidden"), ("", KEY), (KIND, None)):
        with pytest.raises(ValueError, match="plain file name"):
            derived.derived_path(kind, key, tmp_path)


def test_file_digest_fingerprints_the_bytes(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    assert file_digest(tmp_path / "a") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_a_computed_file_carries_its_record_s_provenance(tmp_path):
    from poisoncurv.core.provenance import RunRecord

    record = RunRecord("smoke", "cpu", 3, "synthetic (test)")
    derived.get("kind", "k1", 1, lambda: {"v": 1.0}, tmp_path, record=record)
    prov = json.loads(derived.derived_path("kind", "k1", tmp_path).read_text())["provenance"]
    assert (prov["profile"], prov["device"], prov["seed"], prov["data_source"]) == ("smoke", "cpu", 3, "synthetic (test)")
    assert prov["device_name"].startswith("CPU: ") and prov["git_commit"] and prov["wall_time_s"] >= 0
    derived.get("kind", "k2", 1, lambda: {"v": 1.0}, tmp_path)                      # no record: no provenance
    assert "provenance" not in json.loads(derived.derived_path("kind", "k2", tmp_path).read_text())
