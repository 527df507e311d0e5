"""Hostile input: every bad field, file or cache gets one line naming it and the fix; nothing half-written is left."""

import gzip
import json
import subprocess
import sys
import threading
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from lab_files import synthetic, write_cifar, write_cifar_jpeg, write_mnist

from poisoncurv.lab import cache, data, runner
from poisoncurv.lab import train as train_mod
from poisoncurv.lab.__main__ import main as cli
from poisoncurv.lab.config import LabConfig, config_from_fields, parse_value, profile_config, validate
from poisoncurv.lab.train import checkpoint_path, train

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def no_data(monkeypatch):
    """Fail the test if anything tries to read a data set."""
    def boom(*a, **k):
        raise AssertionError("data were read before the configuration was checked")

    monkeypatch.setattr(train_mod, "load", boom)
    monkeypatch.setattr(cache, "locate", boom)


@pytest.mark.parametrize("item,field,allowed", [
    ("augment=maybe", "augment", "True or False"), ("epochs=None", "epochs", "an integer"),
    ("epochs=2.5", "epochs", "an integer"), ("batch_size=64.0", "batch_size", "an integer"),
    ("lr=abc", "lr", "a finite number"), ("lr=nan", "lr", "a finite number"), ("kappa=None", "kappa", "a finite number"),
    ("profile=", "profile", "--profile"), ("profile=gpu", "profile", "--profile"), ("model=None", "model", "choose one of"),
    ("n_train=100000", "n_train", "at most 60000"), ("n_test=20000", "n_test", "at most 10000"),
    ("n_eval=301", "n_eval", "at most 300"), ("top_k=11", "top_k", "at most 10"), ("momentum=1.5", "momentum", "[0, 1)"),
    ("weight_decay=-1", "weight_decay", ">= 0"), ("seed=x", "seed", "an integer"), ("nosuch=1", "nosuch", "unknown"),
    ("epochs", "epochs", "FIELD=VALUE"), ("target=True", "target", "an integer"), ("batch_size=601", "batch_size", "n_train"),
])
def test_bad_set_value_is_one_line_before_any_data(item, field, allowed, no_data, tmp_path, capsys):
    assert cli(["--profile", "smoke", "--results-dir", str(tmp_path / "res"), "--set", item]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and field in err and allowed in err, err
    assert not (tmp_path / "res").exists()


def test_set_values_are_parsed_by_the_field_type():
    assert parse_value("augment", "true") is True and parse_value("augment", "No") is False
    assert parse_value("n_train", "none") is None and parse_value("n_train", "300") == 300
    assert parse_value("attack", "badnets") == "badnets" and parse_value("kappa", "1e-3") == 1e-3
    assert parse_value("augment", "maybe") == "maybe"  # passed on, then refused by validate
    with pytest.raises(ValueError, match="unknown configuration field"):
        parse_value("nosuch", "1")


@pytest.mark.parametrize("fields,name", [({"augment": "yes"}, "augment"), ({"epochs": 2.0}, "epochs"), ({"theta": None}, "theta"),
                                         ({"n_train": 1.5}, "n_train"), ({"dataset": 3}, "dataset"), ({"bogus": 1}, "bogus")])
def test_python_api_and_grid_fields_use_the_same_checks(fields, name):
    with pytest.raises(ValueError, match=name):
        config_from_fields(fields)
    if name != "bogus":
        with pytest.raises(ValueError, match=name):
            validate(LabConfig(**fields))
    with pytest.raises(ValueError, match=name):
        profile_config("smoke", **fields)


def test_good_fields_round_trip():
    cfg = profile_config("smoke", n_train=None, augment=True, theta=0)
    assert config_from_fields({k: getattr(cfg, k) for k in cfg.__dataclass_fields__}) == cfg


def test_sizes_beyond_the_data_read_are_refused(tmp_path):
    small = synthetic(n_train=50, n_test=20)
    with pytest.raises(ValueError, match="n_train: got 600; allowed: at most 50"):
        train(profile_config("smoke"), data=small, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="n_eval: got 200; allowed: at most 20"):
        train(profile_config("smoke", n_train=None, n_test=None, theta=0.1), data=small, checkpoint_dir=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())


# ---- data files -----------------------------------------------------------------------------------------

def _damage(path: Path, how: str) -> None:
    raw = path.read_bytes()
    path.write_bytes({"truncate": raw[: len(raw) // 2], "empty": b"", "magic": b"\x00\x00\x09\x03" + raw[4:]}[how])


@pytest.mark.parametrize("how", ["truncate", "empty", "magic"])
@pytest.mark.parametrize("fname", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
def test_bad_idx_file_is_named(tmp_path, how, fname):
    raw = tmp_path / "mnist-download" / "MNIST" / "raw"
    write_mnist(raw)
    _damage(raw / fname, how)
    with pytest.raises(data.CorruptDataError) as err:
        data.load("mnist", root=tmp_path, shared=tmp_path / "none", download=False)
    assert str(raw / fname) in str(err.value) and "download again" in str(err.value)


@pytest.mark.parametrize("how", ["truncate", "empty"])
def test_bad_offline_gzip_is_named_and_a_fixed_copy_is_used(tmp_path, how):
    shared, cache_dir = tmp_path / "shared", tmp_path / "cache"
    write_mnist(shared / "mnist", gz=True)
    gz = shared / "mnist" / "train-images-idx3-ubyte.gz"
    good = gz.read_bytes()
    _damage(gz, how)
    with pytest.raises(data.CorruptDataError, match=str(gz)):
        data.load("mnist", root=cache_dir, shared=shared, download=False, verify=False)
    with pytest.raises(data.CorruptDataError, match="sha256"):  # with verification: the checksum names it first
        data.load("mnist", root=cache_dir, shared=shared, download=False)
    gz.write_bytes(good)
    assert len(data.load("mnist", root=cache_dir, shared=shared, download=False, verify=False).y_train) == 12
    assert not [p for p in cache_dir.rglob(".*") if p.is_dir()], "a temporary folder was left behind"


def test_offline_gzip_with_a_bad_payload_is_named(tmp_path):
    shared = tmp_path / "shared"
    write_mnist(shared / "mnist", gz=True)
    gz = shared / "mnist" / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(gzip.decompress(gz.read_bytes())[:-7]))  # valid gzip, truncated IDX inside
    with pytest.raises(data.CorruptDataError, match="restore .*t10k-images"):
        data.load("mnist", root=tmp_path / "cache", shared=shared, download=False, verify=False)
    assert not (tmp_path / "cache" / "mnist-offline" / "MNIST" / "raw").exists()


def test_unpacked_cache_is_rebuilt_when_stale_or_damaged(tmp_path):
    shared, cache_dir = tmp_path / "shared", tmp_path / "cache"
    write_mnist(shared / "mnist", gz=True, seed=0)
    first = data.load("mnist", root=cache_dir, shared=shared, download=False, verify=False)
    raw = cache_dir / "mnist-offline" / "MNIST" / "raw"
    _damage(raw / "train-images-idx3-ubyte", "truncate")  # damaged after unpacking: rebuilt
    assert data.load("mnist", root=cache_dir, shared=shared, download=False, verify=False).x_train.equal(first.x_train)
    write_mnist(shared / "mnist", gz=True, seed=1)  # the source was replaced: the old unpacked copy is stale
    again = data.load("mnist", root=cache_dir, shared=shared, download=False, verify=False)
    assert not again.x_train.equal(first.x_train)
    (raw / data.MARKER).unlink()  # half-written (no marker): rebuilt
    assert data.load("mnist", root=cache_dir, shared=shared, download=False, verify=False).x_train.equal(again.x_train)
    (raw / "t10k-labels-idx1-ubyte").unlink()  # a file the marker vouches for deleted since: rebuilt, not a traceback
    assert data.load("mnist", root=cache_dir, shared=shared, download=False, verify=False).y_test.equal(again.y_test)
    assert (raw / "t10k-labels-idx1-ubyte").exists()


def test_a_marker_vouches_for_every_file_and_its_size(tmp_path):
    final, stamp = tmp_path / "tree", {"a": "1"}
    data._build_dir(final, stamp, lambda t: [(t / "sub").mkdir(), (t / "sub" / "f").write_text("1234")])
    assert data._complete(final, stamp)
    (final / "sub" / "f").write_text("12")                    # cut short
    assert not data._complete(final, stamp)
    (final / "sub" / "f").unlink()                            # gone
    assert not data._complete(final, stamp) and not data._complete(final, {"a": "2"})


def test_offline_copies_match_the_readme_hashes():
    shared = data.shared_root()
    present = [rel for rel in data.OFFLINE_SHA256 if (shared / rel).exists()]
    if not present:
        pytest.skip("no offline copies on this machine")
    readme = (shared / "README.md").read_text()
    for rel in present:
        assert f"{data.OFFLINE_SHA256[rel]}  {rel}" in readme
        data._check_offline(shared, rel, verify=True)


def test_canonical_mnist_archive_md5_is_checked(tmp_path):
    raw = tmp_path / "mnist-download" / "MNIST" / "raw"
    write_mnist(raw)
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(b"not the published archive")
    with pytest.raises(data.CorruptDataError, match="train-labels-idx1-ubyte.gz fails its published MD5"):
        data.load("mnist", root=tmp_path, shared=tmp_path / "none", download=False)
    assert not (raw / data.MARKER).exists()


def test_truncated_cifar_pickle_is_named(tmp_path):
    write_cifar(tmp_path, "cifar100")
    bad = tmp_path / "cifar100-download" / "cifar-100-python" / "test"
    _damage(bad, "truncate")
    with pytest.raises(data.CorruptDataError, match=f"{bad} is not a CIFAR batch"):
        data.load("cifar100", root=tmp_path, shared=tmp_path / "none", download=False, verify=False)


def test_truncated_jpeg_archive_and_tensor_cache(tmp_path):
    shared, cache_dir = tmp_path / "shared", tmp_path / "cache"
    tar = shared / data.CIFAR_JPEG_TAR
    write_cifar_jpeg(tar)
    good = tar.read_bytes()
    _damage(tar, "truncate")
    with pytest.raises(data.CorruptDataError, match=f"{tar} is not a complete tar.gz"):
        data.load("cifar10", root=cache_dir, shared=shared, download=False, verify=False)
    assert not (cache_dir / "cifar10-jpeg-q75").exists() and not (cache_dir / "cifar10-jpeg-q75.pt").exists()
    tar.write_bytes(good)
    first = data.load("cifar10", root=cache_dir, shared=shared, download=False, verify=False)
    _damage(cache_dir / "cifar10-jpeg-q75.pt", "truncate")
    assert data.load("cifar10", root=cache_dir, shared=shared, download=False, verify=False).x_train.equal(first.x_train)


# ---- concurrency ----------------------------------------------------------------------------------------

def test_first_complete_copy_is_kept_when_another_process_wins(tmp_path):
    final, stamp = tmp_path / "tree", {"a": "1"}

    def other_process_publishes_meanwhile(tmp):
        (tmp / "mine").write_text("mine")
        data._build_dir(final, stamp, lambda t: (t / "theirs").write_text("theirs"))

    assert data._build_dir(final, stamp, other_process_publishes_meanwhile) == final
    assert sorted(p.name for p in final.iterdir()) == [data.MARKER, "theirs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tree"], "a temporary folder was left behind"
    data._build_dir(final, {"a": "2"}, lambda t: (t / "new").write_text("new"))  # stale copy: replaced
    assert sorted(p.name for p in final.iterdir()) == [data.MARKER, "new"]


@pytest.mark.slow
def test_concurrent_first_use_of_a_fresh_cache(tmp_path):
    """Three processes unpack the same offline copy at once: all succeed with the same data, no debris."""
    shared = tmp_path / "shared"
    write_mnist(shared / "mnist", n_train=3000, n_test=500, gz=True)
    code = ("import sys; from poisoncurv.lab import data; d = data.load('mnist', root=sys.argv[1], shared=sys.argv[2], "
            "download=False, verify=False); print(int(d.x_train.sum()))")
    for trial in range(2):
        cache_dir = tmp_path / f"cache{trial}"
        procs = [subprocess.Popen([sys.executable, "-c", code, str(cache_dir), str(shared)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
                 for _ in range(3)]
        outs = [p.communicate(timeout=300) for p in procs]
        assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
        assert len({o for o, _ in outs}) == 1
        assert not [p for p in cache_dir.rglob(".*") if p.is_dir()]


def test_concurrent_threads_unpacking(tmp_path):
    shared = tmp_path / "shared"
    write_mnist(shared / "mnist", gz=True)
    results, errors = [], []

    def work():
        try:
            results.append(data.load("mnist", root=tmp_path / "cache", shared=shared, download=False, verify=False))
        except Exception as err:  # collected, asserted below
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(r.x_train.equal(results[0].x_train) for r in results)


# ---- results and checkpoints ----------------------------------------------------------------------------

@pytest.mark.parametrize("content,hint", [('{"schema_version": 1, "ke', "not valid JSON"), ("{}", "missing schema_version"),
                                          ("[1, 2]", "not a lab results file"), ("", "not valid JSON")])
def test_corrupt_results_file_names_it_and_force(tmp_path, content, hint, capsys):
    cfg = profile_config("smoke", n_train=None, n_test=None, n_eval=20, epochs=1, batch_size=50)
    path = cache.result_path(cfg, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    small = synthetic(n_train=100, n_test=50)
    with pytest.raises(cache.StaleResultError) as err:
        runner.get(cfg, tmp_path, data=small)
    assert str(path) in str(err.value) and hint in str(err.value) and "--force" in str(err.value)
    fresh = runner.get(cfg, tmp_path, data=small, force=True, checkpoint_dir=tmp_path / "ck")
    assert json.loads(path.read_text())["key"] == fresh["key"] == cfg.key()


def _one_cli_run(tmp_path, monkeypatch):
    """A one-epoch smoke run through the CLI on a tiny fake MNIST: its arguments and its results file."""
    write_mnist(tmp_path / "data" / "mnist-download" / "MNIST" / "raw", n_train=60, n_test=30)
    monkeypatch.setenv("POISONCURV_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("POISONCURV_SHARED_DATA", str(tmp_path / "no-shared"))
    args = ["--profile", "smoke", "--theta", "0.1", "--results-dir", str(tmp_path / "res"), "--quiet",
            "--set", "epochs=1", "--set", "n_train=60", "--set", "n_test=30", "--set", "n_eval=20"]
    assert cli(args) == 0
    (path,) = (tmp_path / "res").glob("*.json")
    return args, path


def test_cli_reports_a_corrupt_results_file_in_one_line(tmp_path, monkeypatch, capsys):
    args, path = _one_cli_run(tmp_path, monkeypatch)
    path.write_text(path.read_text()[:100])
    capsys.readouterr()
    assert cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and "--force" in err
    assert cli(args + ["--force"]) == 0 and json.loads(path.read_text())["config"]["epochs"] == 1


ROW_DAMAGE = [("asr missing", lambda r: r["epochs"][1].pop("asr"), "epochs[1]: asr is missing"),
              ("text for a number", lambda r: r["epochs"][2].update(clean_acc="high"), "epochs[2]: clean_acc is 'high', expected a number"),
              ("null for a number", lambda r: r["epochs"][0].update(epoch=None), "epochs[0]: epoch is None"),
              ("list with text", lambda r: r["epochs"][1].update(hess_top=[1.0, "x"]), "hess_top is [1.0, 'x'], expected a list"),
              ("bool as a number", lambda r: r["epochs"][1].update(overlap=True), "overlap is True"),
              ("a row not a mapping", lambda r: r["epochs"].append(3), "epochs[5]: is int"),
              ("no rows", lambda r: r.update(epochs=[]), "epochs is [], not a list")]


@pytest.mark.parametrize("what,damage,named", ROW_DAMAGE, ids=[d[0] for d in ROW_DAMAGE])
def test_a_bad_evaluation_row_names_the_file_the_row_and_the_field(tmp_path, what, damage, named, capsys):
    cfg, small = _small_run()
    res = runner.get(cfg, tmp_path / "res", data=small, checkpoint_dir=tmp_path / "ck")
    path = cache.result_path(cfg, tmp_path / "res")
    assert len(res["epochs"]) == 5 and runner.get(cfg, tmp_path / "res", data=small) == json.loads(path.read_text())
    damage(res)
    path.write_text(json.dumps(res))
    with pytest.raises(cache.StaleResultError) as err:
        runner.get(cfg, tmp_path / "res", data=small)
    msg = str(err.value)
    assert str(path) in msg and named in msg and "--force" in msg and "\n" not in msg, msg
    assert runner.get(cfg, tmp_path / "res", data=small, force=True, checkpoint_dir=tmp_path / "ck")["epochs"][1]["asr"] >= 0


def test_non_finite_values_and_nulls_where_allowed_pass(tmp_path):
    cfg, small = _small_run()
    res = runner.get(cfg, tmp_path, data=small, checkpoint_dir=tmp_path / "ck")
    res["epochs"][1].update(overlap="nan", hess_top=["inf", 1.0], train_loss=None, extra_field="kept")
    cache.write_json_atomic(cache.result_path(cfg, tmp_path), res)
    assert runner.get(cfg, tmp_path, data=small)["epochs"][1]["overlap"] == "nan"


def test_cli_reports_a_bad_evaluation_row_in_one_line(tmp_path, monkeypatch, capsys):
    args, path = _one_cli_run(tmp_path, monkeypatch)
    res = json.loads(path.read_text())
    res["epochs"][-1]["asr"] = "n/a"
    path.write_text(json.dumps(res))
    capsys.readouterr()
    assert cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and "asr is 'n/a'" in err and "--force" in err, err


@pytest.mark.parametrize("damage", ["truncate", "foreign"])
def test_unreadable_checkpoint_is_discarded_and_the_run_starts_over(tmp_path, damage):
    small = synthetic(n_train=100, n_test=50)
    cfg = profile_config("smoke", n_train=None, n_test=None, n_eval=20, epochs=2, batch_size=50)
    whole = train(cfg, data=small, checkpoint_dir=tmp_path / "a", progress=False)
    assert train(cfg, data=small, checkpoint_dir=tmp_path / "b", progress=False, max_epochs=1) is None
    ckpt = checkpoint_path(cfg, tmp_path / "b")
    if damage == "truncate":
        ckpt.write_bytes(ckpt.read_bytes()[:200])
    else:
        torch.save({"model": {"weight": torch.zeros(3)}}, ckpt)
    fault = "is unreadable" if damage == "truncate" else "carries no run key and schema version"
    with pytest.warns(UserWarning, match=f"checkpoint {ckpt} {fault}.*starting the run over"):
        again = train(cfg, data=small, checkpoint_dir=tmp_path / "b", progress=False)
    assert again["epochs"] == whole["epochs"] and not ckpt.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a good checkpoint resumes without a warning
        assert train(cfg, data=small, checkpoint_dir=tmp_path / "c", progress=False, max_epochs=1) is None
        assert train(cfg, data=small, checkpoint_dir=tmp_path / "c", progress=False)["epochs"] == whole["epochs"]


def _other_rows(tmp_path, cfg, small, state):
    """The rows of the same run measured twice per epoch instead of once: another run's rows, as many epochs."""
    other = replace(cfg, evals_per_epoch=2)
    train(other, data=small, checkpoint_dir=tmp_path / "other", progress=False, max_epochs=1)
    state["rows"] = torch.load(checkpoint_path(other, tmp_path / "other"), weights_only=True)["rows"]


CKPT_FAULTS = [
    ("more epochs than configured", lambda t, c, d, s: s.update(completed_epochs=3), "claims 3 completed epochs; the run has 2"),
    ("negative epochs", lambda t, c, d, s: s.update(completed_epochs=-1), "claims -1 completed epochs"),
    ("another run's key", lambda t, c, d, s: s.update(key="0123456789abcdef"), "belongs to run '0123456789abcdef'"),
    ("another run's rows", _other_rows, "holds evaluation rows that are not this run's (3 rows; after 1 epochs it has 2"),
    ("a bad row", lambda t, c, d, s: s["rows"][1].pop("asr"), "holds a bad evaluation row (1: asr is missing)"),
    ("another schema", lambda t, c, d, s: s.update(schema_version=99), "has schema version 99"),
    ("an older checkpoint", lambda t, c, d, s: [s.pop("key"), s.pop("schema_version")], "carries no run key and schema version"),
]


@pytest.mark.parametrize("what,fault,named", CKPT_FAULTS, ids=[f[0] for f in CKPT_FAULTS])
def test_a_checkpoint_that_is_not_this_runs_is_discarded_with_one_warning(tmp_path, what, fault, named):
    small = synthetic(n_train=100, n_test=50)
    cfg = profile_config("smoke", n_train=None, n_test=None, n_eval=20, epochs=2, evals_per_epoch=1, batch_size=50)
    whole = train(cfg, data=small, checkpoint_dir=tmp_path / "a", progress=False)
    assert train(cfg, data=small, checkpoint_dir=tmp_path / "b", progress=False, max_epochs=1) is None
    ckpt = checkpoint_path(cfg, tmp_path / "b")
    state = torch.load(ckpt, weights_only=True)
    assert state["key"] == cfg.key() and state["schema_version"] == train_mod.CHECKPOINT_VERSION
    fault(tmp_path, cfg, small, state)
    torch.save(state, ckpt)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        again = train(cfg, data=small, checkpoint_dir=tmp_path / "b", progress=False)
    assert len(seen) == 1, [str(w.message) for w in seen]
    msg = str(seen[0].message)
    assert msg.startswith(f"checkpoint {ckpt} {named}") and msg.endswith("; discarding it and starting the run over"), msg
    assert again["epochs"] == whole["epochs"] and not ckpt.exists()


def test_checkpoints_load_with_weights_only(tmp_path, monkeypatch):
    seen = []
    real = torch.load

    def spy(*a, **k):
        seen.append(k.get("weights_only"))
        return real(*a, **k)

    monkeypatch.setattr(torch, "load", spy)
    small = synthetic(n_train=100, n_test=50)
    cfg = profile_config("smoke", n_train=None, n_test=None, n_eval=20, epochs=2, batch_size=50)
    train(cfg, data=small, checkpoint_dir=tmp_path, progress=False, max_epochs=1)
    train(cfg, data=small, checkpoint_dir=tmp_path, progress=False)
    assert seen == [True]


def _small_run():
    return profile_config("smoke", n_train=None, n_test=None, n_eval=20, epochs=2, batch_size=50, theta=0.05), synthetic(200, 100)


def test_an_unusable_results_folder_is_refused_before_training(tmp_path, monkeypatch, capsys):
    cfg, small = _small_run()
    (tmp_path / "afile").write_text("not a folder")
    monkeypatch.setattr(runner, "train", lambda *a, **k: pytest.fail("trained although the results could not be written"))
    with pytest.raises(ValueError, match="results folder .*afile.* cannot hold files"):
        runner.get(cfg, tmp_path / "afile", data=small, checkpoint_dir=tmp_path / "ck")
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "models").write_text("a file where the kept weights' folder goes")
    with pytest.raises(ValueError, match="results folder .*models cannot hold files"):
        runner.get(cfg, tmp_path / "res", data=small, checkpoint_dir=tmp_path / "ck", keep_model=True)
    monkeypatch.setenv("POISONCURV_DATA", str(tmp_path / "none"))
    assert cli(["--profile", "smoke", "--results-dir", str(tmp_path / "afile"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "afile" in err


def test_a_failed_results_write_keeps_the_trained_run(tmp_path, monkeypatch):
    cfg, small = _small_run()
    real_write = cache.write_json_atomic

    def full_disk(path, payload):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "write_json_atomic", full_disk)
    with pytest.raises(cache.ResultWriteError, match="No space left on device.*kept in .*ck"):
        runner.get(cfg, tmp_path / "res", data=small, checkpoint_dir=tmp_path / "ck")
    assert checkpoint_path(cfg, tmp_path / "ck").exists() and not cache.result_path(cfg, tmp_path / "res").exists()
    monkeypatch.setattr(cache, "write_json_atomic", real_write)
    monkeypatch.setattr(train_mod, "penalised_loss", lambda *a, **k: pytest.fail("trained again"))
    res = runner.get(cfg, tmp_path / "res", data=small, checkpoint_dir=tmp_path / "ck")
    assert cache.result_path(cfg, tmp_path / "res").exists() and not checkpoint_path(cfg, tmp_path / "ck").exists()
    monkeypatch.undo()
    again = train(cfg, data=small, checkpoint_dir=tmp_path / "ck2", progress=False)   # the same run from scratch
    assert again["epochs"] == res["epochs"] and again["poison"] == res["poison"]


def test_kept_weights_and_checkpoint_in_one_folder_are_refused(tmp_path):
    cfg, small = _small_run()
    with pytest.raises(ValueError, match="model_dir and checkpoint_dir: both"):
        train(cfg, data=small, checkpoint_dir=tmp_path, model_dir=tmp_path, progress=False)
    assert not list(tmp_path.iterdir())


# ---- one line instead of a traceback --------------------------------------------------------------------

SMALL = ["--profile", "smoke", "--quiet", "--theta", "0.1", "--set", "epochs=1", "--set", "n_train=60", "--set", "n_test=30",
         "--set", "n_eval=20"]
GRID_ONE = "base: {model: linear, device: cpu}\nprofiles: {smoke: {groups: {g: {axes: {theta: [0.1]}}}}}\n"


def _small_cli_config(**kw):
    """The configuration ``SMALL`` asks the CLI for (with ``kw``)."""
    return profile_config("smoke", theta=0.1, epochs=1, n_train=60, n_test=30, n_eval=20, **kw)


def _kept_model(tmp, damage):
    """The unfiltered MLP run cached with its weights, then its weights damaged; the CLI asks for its filtered run."""
    base = _small_cli_config(model="mlp")
    runner.get(base, tmp / "res", checkpoint_dir=tmp / "ck", keep_model=True)
    path = cache.model_path(base, tmp / "res")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    else:
        torch.save({"weight": torch.zeros(3)}, path)
    return cli, [*SMALL, "--model", "mlp", "--set", "filter=spectral", "--results-dir", str(tmp / "res")]


def _stale_temporary(tmp):
    ckpt = checkpoint_path(_small_cli_config())
    ckpt.parent.mkdir(parents=True)
    (ckpt.parent / f".{ckpt.stem}.k1ll3d.tmp").write_bytes(b"")        # a kill during a checkpoint write leaves this
    (ckpt.parent / ".another-run.k1ll3d.tmp").write_bytes(b"")          # another run's: left alone
    return cli, [*SMALL, "--results-dir", str(tmp / "res")]


def _no_slurm(tmp, monkeypatch):
    (tmp / "empty-bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp / "empty-bin"))
    (tmp / "g.yaml").write_text(GRID_ONE)
    return cli, ["sweep", str(tmp / "g.yaml"), "--profile", "smoke", "--executor", "slurm", "--results-dir", str(tmp / "res")]


def _log_dir_a_file(tmp):
    (tmp / "g.yaml").write_text(GRID_ONE)
    (tmp / "log").write_text("a file")
    return cli, ["sweep", str(tmp / "g.yaml"), "--profile", "smoke", "--executor", "debug", "--results-dir", str(tmp / "res"),
                 "--log-dir", str(tmp / "log")]


def _no_internet(monkeypatch):
    import urllib.error

    from torchvision import datasets

    class Offline(datasets.CIFAR100):
        def __init__(self, *a, **k):
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution\n(no network)")

    monkeypatch.setattr(datasets, "CIFAR100", Offline)
    return data.main, ["cifar100"]


ONE_LINE = [  # case, setup(tmp, monkeypatch) -> (entry point, arguments), exit status, a substring of the one line
    ("kappa diverges", lambda t, m: (cli, [*SMALL, "--kappa", "1e308", "--results-dir", str(t / "res")]), 2,
     "kappa=1e+308, lr=1e-308): choose a smaller kappa"),
    ("results-dir is a file", lambda t, m: (t / "res").write_text("a file") and (cli, [*SMALL, "--results-dir", str(t / "res")]),
     2, "cannot hold files (File exists): choose another --results-dir"),
    ("log-dir is a file", lambda t, m: _log_dir_a_file(t), 2, "sweep log folder"),
    ("slurm absent", _no_slurm, 2, "executor: slurm needs SLURM's sbatch and srun on the PATH"),
    ("kept model truncated", lambda t, m: _kept_model(t, "truncate"), 2, "the kept weights of run"),
    ("kept model foreign", lambda t, m: _kept_model(t, "foreign"), 2, "cannot be loaded (RuntimeError"),
    ("unknown dataset", lambda t, m: (data.main, ["svhn"]), 2, "dataset: unknown 'svhn'"),
    ("cifar100 without internet", lambda t, m: _no_internet(m), 2, "(download failed: <urlopen error [Errno -3]"),
    ("negative seed", lambda t, m: (cli, [*SMALL, "--seed", "-1", "--results-dir", str(t / "res")]), 2, "seed: got -1; allowed"),
    ("seed beyond 2**32", lambda t, m: (cli, [*SMALL, "--seed", str(2**32), "--results-dir", str(t / "res")]), 2,
     "seed: got 4294967296; allowed: an integer in [0, 2**32)"),
    ("stale checkpoint temporary", lambda t, m: _stale_temporary(t), 0, "removed 1 temporary file(s) of"),
]


def _files(folder: Path) -> dict[str, bytes]:
    if folder.is_file():
        return {".": folder.read_bytes()}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case,setup,status,message", ONE_LINE, ids=[c[0] for c in ONE_LINE])
def test_hostile_input_is_one_line_and_writes_no_results(tmp_path, monkeypatch, capsys, case, setup, status, message):
    write_mnist(tmp_path / "data" / "mnist-download" / "MNIST" / "raw", n_train=60, n_test=30)
    monkeypatch.setenv("POISONCURV_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("POISONCURV_SHARED_DATA", str(tmp_path / "no-shared"))
    entry, argv = setup(tmp_path, monkeypatch)
    before = _files(tmp_path / "res")
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert entry(argv) == status
    lines = capsys.readouterr().err.splitlines() + [str(w.message) for w in seen if w.category is UserWarning]
    assert len(lines) == 1 and message in lines[0], lines
    if status:
        assert _files(tmp_path / "res") == before, "the results folder changed"
    else:
        assert [p.name for p in (tmp_path / "data" / "checkpoints").iterdir()] == [".another-run.k1ll3d.tmp"]


def test_force_recomputes_an_unloadable_kept_model_and_its_filtered_run(tmp_path, monkeypatch, capsys):
    write_mnist(tmp_path / "data" / "mnist-download" / "MNIST" / "raw", n_train=60, n_test=30)
    monkeypatch.setenv("POISONCURV_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("POISONCURV_SHARED_DATA", str(tmp_path / "no-shared"))
    entry, argv = _kept_model(tmp_path, "truncate")
    assert entry(argv) == 2 and "--force" in capsys.readouterr().err
    assert entry([*argv, "--force"]) == 0
    base = _small_cli_config(model="mlp")
    assert runner.trained_run(base, tmp_path / "res").model is not None
    assert cache.result_path(replace(base, filter="spectral"), tmp_path / "res").exists()


@pytest.mark.parametrize("edit,hint", [(lambda r: r.update(key="0123456789abcdef"), "holds configuration 0123456789abcdef"),
                                       (lambda r: r.update(data_source="another copy"), "was computed from 'another copy'")])
def test_a_results_file_of_another_run_or_data_is_refused(tmp_path, edit, hint):
    """A file under this run's name that holds another configuration, or numbers from other data, is never used."""
    cfg, small = _small_run()
    res = runner.get(cfg, tmp_path, data=small, checkpoint_dir=tmp_path / "ck")
    edit(res)
    cache.write_json_atomic(cache.result_path(cfg, tmp_path), res)
    with pytest.raises(cache.StaleResultError, match=hint):
        runner.get(cfg, tmp_path, data=small)
