"""What the MNIST chapters share (poisoncurv.chapters.mnist_runs): one MNIST per process, and Chapter 6's runs."""

from poisoncurv.chapters import cnn_mnist, detectors_cnn, linear_mnist, mnist_runs
from poisoncurv.chapters.mnist_runs import ch06_grid, ch06_runs


def keys(runs):
    return [r.config.key() for r in runs]


def test_the_chapters_share_one_mnist_and_one_grid():
    for driver in (linear_mnist, cnn_mnist, detectors_cnn):
        assert driver.mnist is mnist_runs.mnist and driver.data_source is mnist_runs.data_source
    assert cnn_mnist.GRID == mnist_runs.CH06_GRID and cnn_mnist.SEED_GROUPS == mnist_runs.CH06_SEED_GROUPS
    assert keys(cnn_mnist.grid("cpu").runs) == keys(ch06_grid("cpu").runs)


def test_ch06_runs_leave_out_the_groups_a_profile_lacks():
    smoke, cpu = ch06_grid("smoke"), ch06_grid("cpu")
    assert "defence_seeds" not in smoke.groups and "defence_seeds" in cpu.groups
    assert keys(ch06_runs(smoke, ("defence", "defence_seeds"))) == keys(smoke.group("defence"))
    assert keys(ch06_runs(cpu, ("defence", "defence_seeds"))) == keys(cpu.group("defence") + cpu.group("defence_seeds"))
    assert ch06_runs(smoke, ()) == []
