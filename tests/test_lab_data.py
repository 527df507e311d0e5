"""Loaders on tiny files written here in torchvision's on-disk formats (never ../shared)."""

import gzip
import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from poisoncurv.lab import data


def idx_bytes(arr: np.ndarray) -> bytes:
    """An IDX file: magic (0, 0, dtype 0x08 = ubyte, ndim), big-endian sizes, raw bytes."""
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def write_mnist(folder, n_train=12, n_test=5, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": np.arange(n_test) % 10}
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        payload = idx_bytes(np.asarray(arr))
        (folder / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(payload) if gz else payload)
    return arrays


def write_cifar(root, name, per_file=4, seed=0):
    cls = data._cifar_class(name)
    folder = root / f"{name}-download" / cls.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    label_key = "labels" if name == "cifar10" else "fine_labels"
    n_classes = 10 if name == "cifar10" else 100
    written = []
    for fname, _ in cls.train_list + cls.test_list:
        x = rng.integers(0, 256, (per_file, 3 * 32 * 32), dtype=np.uint8)
        y = list(rng.integers(0, n_classes, per_file))
        with open(folder / fname, "wb") as fh:
            pickle.dump({"data": x, label_key: y}, fh)
        written.append((x, y))
    with open(folder / cls.meta["filename"], "wb") as fh:
        pickle.dump({cls.meta["key"]: [f"c{i}" for i in range(n_classes)]}, fh)
    return written


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
    d = data.load("mnist", root=tmp_path / "cache", shared=shared, download=False)
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
    from PIL import Image

    shared = tmp_path / "shared"
    (shared / "cifar10-jpeg").mkdir(parents=True)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with tarfile.open(shared / data.CIFAR_JPEG_TAR, "w:gz") as tar:
        for split in ("train", "test"):
            for c in classes:
                buf = io.BytesIO()
                Image.new("RGB", (32, 32), (20 * classes.index(c), 0, 0)).save(buf, "JPEG", quality=95)
                info = tarfile.TarInfo(f"cifar10/{split}/{c}/0000.jpg")
                info.size = buf.tell()
                buf.seek(0)
                tar.addfile(info, buf)
    d = data.load("cifar10", root=tmp_path / "cache", shared=shared, download=False)
    assert d.source == data.SOURCES["jpeg"] and "not canonical" in d.source
    assert d.y_train.tolist() == list(range(10)) and d.x_test.shape == (10, 3, 32, 32)
    assert abs(int(d.x_train[3, 0, 5, 5]) - 60) <= 3  # class order = CIFAR-10 label order
    assert data.load("cifar10", root=tmp_path / "cache", shared=shared, download=False).x_train.equal(d.x_train)


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
