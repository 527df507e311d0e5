"""Chapter 8 drivers at smoke size: kernel features, the boundary sweep's known limits, the synthetic check."""

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from poisoncurv.book.claims import committed_values, evaluate, load_ledger
from poisoncurv.chapters import detectors as ex
from poisoncurv.core.prose import round_sig
from poisoncurv.detect import suite
from poisoncurv.detect.suite import DETECTORS
from poisoncurv.krr.kernels import make_kernel
from poisoncurv.lab import derived

CHECKS = {chk["key"]: chk for claim in load_ledger() for chk in claim["checks"]}


def passes(summary: dict, key: str) -> bool:
    return evaluate(CHECKS[key], summary[key])


@pytest.fixture(scope="module")
def smoke():
    torch.set_num_threads(1)
    return ex.settings("smoke")


def test_kernel_features_factor_the_gram_matrix():
    X = torch.randn(40, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kernel = make_kernel("gaussian", 1.0)
    K = kernel(X, X)
    full = torch.as_tensor(ex.kernel_features(kernel, X, 40))
    torch.testing.assert_close(full @ full.T, K, rtol=0, atol=1e-12)
    # truncation: the spectral-norm error is the first dropped eigenvalue (Eckart-Young)
    part = torch.as_tensor(ex.kernel_features(kernel, X, 10))
    dropped = torch.linalg.eigvalsh(K).flip(0)[10]
    assert float(torch.linalg.matrix_norm(K - part @ part.T, ord=2)) == pytest.approx(float(dropped), rel=1e-9)
    with pytest.raises(ValueError, match="n_features"):
        ex.kernel_features(kernel, X, 41)


def test_boundary_point_limits(smoke):
    near, far = ex.boundary_point(smoke, 0.01, 0), ex.boundary_point(smoke, 1000.0, 0)
    # a poison is its source moved by a·ℓ off the data's subspace: its nearest clean input is the source
    assert near["nearest_clean"] == pytest.approx(0.01, rel=1e-9)
    assert far["nearest_clean"] == pytest.approx(1000.0, rel=1e-3)
    # near clones of other classes' inputs flip nothing; far triggers reach only the poisons
    assert near["success"] == 0.0 and far["success"] > 0.9
    n_target = int((ex.clean_data(smoke["n_clean"], smoke["d"], smoke["n_classes"], 0)[1].argmax(1) == ex.TARGET).sum())
    assert near["eps"] == pytest.approx(smoke["m"] / (n_target + smoke["m"]))
    assert set(near["scores"]) == set(DETECTORS)
    with pytest.raises(ValueError, match="m = "):
        ex.boundary_point({**smoke, "m": smoke["n_clean"]}, 1.0, 0)


def test_boundary_sweep_shapes_summary_and_table(smoke):
    b = ex.boundary_sweep(smoke, 0)
    shape = (len(smoke["amplitudes"]), smoke["boundary_seeds"])
    assert b.success.shape == shape and all(v.shape == shape for v in b.auroc.values())
    s = b.summary()
    assert s["ch8_a_succ"] in smoke["amplitudes"] and s["ch8_success_far"] > 0.9
    assert 0 <= s["ch8_n_found_at_succ"] <= len(DETECTORS)
    assert len(b.table().rows) == len(smoke["amplitudes"])
    rates = b.rates_table()
    assert [r[0] for r in rates.rows] == list(DETECTORS) and len(rates.columns) == 7
    assert all(0 <= v <= 1 for r in rates.rows for v in r[1:])


def test_synthetic_check_finds_separated_and_not_mixed(smoke):
    s = ex.synthetic_check(smoke, 0)
    summ = s.summary()
    assert summ["ch8_syn_far_min_auroc"] > 0.95
    assert summ["ch8_syn_null_max_dev"] < 4 * summ["ch8_syn_null_mean_sd"]
    assert summ["ch8_syn_null_sd"] == pytest.approx(np.sqrt(301 / (12 * 30 * 270)))
    # oracle whitening (the true clean law) finds the cluster at the largest separation
    assert s.oracle_que.mean(1)[-1] > 0.99 and summ["ch8_syn_oracle_mid"] >= ex.AUROC_FOUND


def test_ledger_checks_fail_without_centring(smoke, monkeypatch):
    """Mutation: score spectral signatures uncentred; D2's checks on it must then fail."""
    assert passes(ex.boundary_sweep(smoke, 0).summary(), "ch8_auroc_spectral_signatures_at_succ")
    monkeypatch.setitem(suite.DETECTORS, "spectral signatures", suite.DETECTORS["spectral (uncentred)"])
    s = ex.boundary_sweep(smoke, 0).summary()
    assert not passes(s, "ch8_auroc_spectral_signatures_at_succ") and not passes(s, "ch8_n_found_at_succ")


def test_ledger_checks_fail_with_reversed_auroc(smoke, monkeypatch):
    """Mutation: rank the scores the wrong way round; D1's known-answer check must then fail, the null check not."""
    real = suite.roc_auc
    monkeypatch.setattr(suite, "roc_auc", lambda s, t: real(-s, t))
    s = ex.synthetic_check(smoke, 0).summary()
    assert not passes(s, "ch8_syn_far_min_auroc") and passes(s, "ch8_syn_null_max_z")


def sweeps_equal(a, b) -> bool:
    arrays = ("a", "success", "margin_shift", "visible", "curvature_auroc", "nearest_clean")
    return (all(np.array_equal(getattr(a, f), getattr(b, f)) for f in arrays) and a.eps == b.eps
            and all(np.array_equal(getattr(a, f)[n], getattr(b, f)[n]) for f in ("auroc", "tpr", "fpr") for n in DETECTORS))


def test_boundary_sweep_cached_in_its_results_dir(smoke, tmp_path):
    computed = ex.boundary_sweep(smoke, 0)
    written = ex.boundary_sweep(smoke, 0, str(tmp_path), cached=True)
    path = derived.derived_path(ex.BOUNDARY, ex.sweep_key(smoke, 0), tmp_path / "derived")
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*.json")] == [path.relative_to(tmp_path)]
    assert sweeps_equal(computed, written) and computed.summary() == written.summary()
    planted = json.loads(path.read_text())
    planted["values"]["points"][0][1]["success"] = 0.125
    planted["values"]["points"][-1][0]["scores"]["SPECTRE"]["auroc"] = 0.375
    path.write_text(json.dumps(planted))
    read = ex.boundary_sweep(smoke, 0, str(tmp_path), cached=True)                  # read, not recomputed
    assert read.success[0, 1] == 0.125 and read.auroc["SPECTRE"][-1, 0] == 0.375
    path.write_text(json.dumps({**planted, "version": ex.BOUNDARY_VERSION - 1}))
    assert sweeps_equal(ex.boundary_sweep(smoke, 0, str(tmp_path), cached=True), computed)   # another version: recomputed
    assert ex.sweep_key(smoke, 0) != ex.sweep_key(smoke, 1) != ex.sweep_key({**smoke, "m": 31}, 1)


def test_committed_cpu_boundary_sweep_two_points_recomputed_and_the_glued_numbers():
    """The committed cpu-profile sweep (results/derived) holds what boundary_point computes (two points recomputed
    here), and gives the chapter's committed glued numbers without computing anything."""
    torch.set_num_threads(1)
    cfg = ex.settings("cpu")
    path = derived.derived_path(ex.BOUNDARY, ex.sweep_key(cfg, 0))
    stored = json.loads(path.read_text())
    assert stored["version"] == ex.BOUNDARY_VERSION
    points = stored["values"]["points"]
    assert [len(row) for row in points] == [cfg["boundary_seeds"]] * len(cfg["amplitudes"])
    for i, j in ((3, 5), (len(cfg["amplitudes"]) - 1, 0)):
        p = ex.boundary_point(cfg, float(cfg["amplitudes"][i]), j)
        fresh = {k: ({n: asdict(d) for n, d in v.items()} if k == "scores" else float(v)) for k, v in p.items()}
        assert json.loads(json.dumps(fresh)) == points[i][j], "bump BOUNDARY_VERSION and rerun the chapter"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ex, "boundary_point", lambda *a, **k: pytest.fail("the cached sweep recomputed a point"))
        s = ex.boundary_sweep(cfg, 0, cached=True).summary()
    committed = committed_values()["ch08_detectors"]
    shown = [k for k in s if k in committed]                  # the keys the chapter glues (its page or the ledger reads)
    assert shown and {k: (round_sig(v, 3) if isinstance(v, float) else v) for k, v in s.items() if k in committed} == {
        k: committed[k] for k in shown}
