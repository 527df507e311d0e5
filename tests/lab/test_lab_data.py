"""Loaders on tiny files written here in torchvision's on-disk formats (never ../shared)."""

import numpy as np
import pytest
import torch
from lab_files import write_cifar, write_cifar_jpeg, write_mnist

from poisoncurv.lab import data


def test_mnist_canonical_layout(tmp_path):
    arrays = write_mnist(tmp_path / "mnist-download" / "MNIST" / "raw")
    d = data.load("mnist", root=tmp_path, shared=tmp_path / "none", download=False)
    assert d.source == data.SOURCES["download"]
    assert d.x_train.shape == (12, 1, 28, 28) and d.x_train.dtype == torch.uint8
    assert np.array_equal(d.x_train[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert d.y_test.tolist() == list(np.arange(5) % 10)


def test_mnist_offline_copy_is_unpacked_into_the_cache_only(tmp_path):
    shared = tmp_path / "shared"
    arrays = write_mnist(shared / "mnist", gz=True)
    before = sorted(p.name for p in (shared / "mnist").iterdir())
    d = data.load("mnist", root=tmp_path / "cache", shared=shared, download=False, verify=False)
    assert d.source == data.SOURCES["offline"]
    assert np.array_equal(d.x_test[:, 0].numpy(), arrays["t10k-images-idx3-ubyte"])
    assert sorted(p.name for p in (shared / "mnist").iterdir()) == before
    assert not [p for p in (tmp_path / "cache").rglob(".*") if p.is_dir()], "a temporary folder was left behind"


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_pickles(tmp_path, name):
    written = write_cifar(tmp_path, name)
    d = data.load(name, root=tmp_path, shared=tmp_path / "none", download=False, verify=False)
    assert d.source == data.SOURCES["download"] and d.num_classes == (10 if name == "cifar10" else 100)
    n_train_files = len(data._cifar_class(name).train_list)
    assert d.x_train.shape == (4 * n_train_files, 3, 32, 32)
    assert np.array_equal(d.x_train[:4].reshape(4, -1).numpy(), written[0][0])
    assert d.y_test.tolist() == [int(v) for v in written[-1][1]]
    with pytest.raises(data.DataNotFoundError, match="MD5"):
        data.load(name, root=tmp_path, shared=tmp_path / "none", download=False, verify=True)


def test_cifar10_jpeg_copy(tmp_path):
    shared = tmp_path / "shared"
    write_cifar_jpeg(shared / data.CIFAR_JPEG_TAR)
    d = data.load("cifar10", root=tmp_path / "cache", shared=shared, download=False, verify=False)
    assert d.source == data.SOURCES["jpeg"] and "not canonical" in d.source
    assert d.y_train.tolist() == list(range(10)) and d.x_test.shape == (10, 3, 32, 32)
    assert abs(int(d.x_train[3, 0, 5, 5]) - 60) <= 3  # class order = CIFAR-10 label order
    assert data.load("cifar10", root=tmp_path / "cache", shared=shared, download=False, verify=False).x_train.equal(d.x_train)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100"])
def test_missing_data_names_the_places(tmp_path, name):
    with pytest.raises(data.DataNotFoundError) as err:
        data.load(name, root=tmp_path / "cache", shared=tmp_path / "shared", download=False)
    msg = str(err.value)
    assert str(tmp_path / "cache") in msg and "download" in msg
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_subsets_are_deterministic(tmp_path):
    write_mnist(tmp_path / "mnist-download" / "MNIST" / "raw", n_train=40, n_test=20)
    d = data.load("mnist", root=tmp_path, shared=tmp_path / "none", download=False)
    a, b = d.subset(10, 5, seed=3), d.subset(10, 5, seed=3)
    assert a.x_train.equal(b.x_train) and a.y_test.equal(b.y_test) and len(a.y_train) == 10
    assert not d.subset(10, 5, seed=4).x_train.equal(a.x_train)
    assert d.subset(None, None, seed=3).x_train.equal(d.x_train)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset"):
        data.load("svhn")


def test_unpacked_folder_has_ordinary_permissions(tmp_path):
    import os
    import stat

    write_mnist(tmp_path / "shared" / "mnist", gz=True)
    old = os.umask(0o022)
    try:
        data.load("mnist", root=tmp_path / "cache", shared=tmp_path / "shared", download=False, verify=False)
    finally:
        os.umask(old)
    raw = tmp_path / "cache" / "mnist-offline" / "MNIST" / "raw"
    assert stat.S_IMODE(raw.stat().st_mode) == 0o755
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in raw.iterdir())
