"""Clean runs that differ only in the trigger they measure share one training (``train_shared``): each gets exactly
the results of training it alone, an interrupted shared training resumes to the same numbers, and anything else is
refused before training."""

from dataclasses import replace

import pytest
import torch
from lab_files import synthetic

from poisoncurv.lab.config import config_from_fields
from poisoncurv.lab.train import shared_training_problem, train, train_shared

ATTACKS = ("cross-stochastic", "badnets", "warp")


def clean_runs(**over):
    base = {"model": "lenet", "theta": 0.0, "n_train": 200, "n_test": 100, "n_eval": 16, "epochs": 2, "evals_per_epoch": 2,
            "batch_size": 50, "measure": "deep", "augment": True, "profile": "smoke", **over}
    return tuple(config_from_fields({**base, "attack": a}) for a in ATTACKS)


def without_provenance(res):
    return {k: v for k, v in res.items() if k != "provenance"}


@pytest.mark.slow
def test_a_shared_training_gives_each_run_what_training_it_alone_gives(tmp_path):
    torch.set_default_dtype(torch.float32)
    data = synthetic(n_train=200, n_test=100, side=28)
    cfgs = clean_runs()
    shared = train_shared(cfgs, data=data, checkpoint_dir=tmp_path / "s", progress=False, model_dir=tmp_path / "m")
    for cfg, res in zip(cfgs, shared):
        alone = train(cfg, data=data, checkpoint_dir=tmp_path / "a", progress=False)
        assert without_provenance(res) == without_provenance(alone)              # every row, bit for bit
        assert res["provenance"]["shared_training"] == [c.key() for c in cfgs]
        assert (tmp_path / "m" / f"{cfg.key()}.pt").exists()
    shift = [[row["trigger_shift2"] for row in res["epochs"]] for res in shared]
    assert len({tuple(s) for s in shift}) == 3                                    # each measured its own trigger
    # interrupted after one epoch, then resumed: the same numbers for every run
    assert train_shared(cfgs, data=data, checkpoint_dir=tmp_path / "r", progress=False, max_epochs=1) is None
    resumed = train_shared(cfgs, data=data, checkpoint_dir=tmp_path / "r", progress=False)
    assert [r["epochs"] for r in resumed] == [r["epochs"] for r in shared]
    # a checkpoint of the first run alone does not resume the shared training: discarded, trained over, same numbers
    assert train(cfgs[0], data=data, checkpoint_dir=tmp_path / "x", progress=False, max_epochs=1) is None
    with pytest.warns(UserWarning, match="measures runs \\[\\] besides its own"):
        again = train_shared(cfgs, data=data, checkpoint_dir=tmp_path / "x", progress=False)
    assert [r["epochs"] for r in again] == [r["epochs"] for r in shared]


def test_only_clean_runs_that_differ_in_their_trigger_share_a_training():
    cfgs = clean_runs()
    assert shared_training_problem(cfgs) is None and shared_training_problem(cfgs[:1]) is None
    assert shared_training_problem(cfgs + cfgs[:1]) == "a configuration appears twice"
    assert "trains on poisons (theta 0.05" in shared_training_problem((cfgs[0], replace(cfgs[1], theta=0.05)))
    assert "differs from" in shared_training_problem((cfgs[0], replace(cfgs[1], seed=1)))
    assert "differs from" in shared_training_problem((cfgs[0], replace(cfgs[1], augment=False)))
    assert shared_training_problem((cfgs[0], replace(cfgs[1], amplitude=2.0, warp_strength=0.05))) is None
    with pytest.raises(ValueError, match="shared training: run .* differs from"):
        train_shared((cfgs[0], replace(cfgs[1], seed=1)), data=synthetic(n_train=200, n_test=100, side=28))
