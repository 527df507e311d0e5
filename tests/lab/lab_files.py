"""Tiny data files in the on-disk formats the lab reads (MNIST IDX, CIFAR pickles, the JPEG tree), and a synthetic set."""

import gzip
import io
import pickle
import tarfile

import numpy as np
import torch

from poisoncurv.lab import data
from poisoncurv.lab.data import ImageData

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


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


def write_cifar(root, name, per_file=4, seed=0, cyclic=False):
    """torchvision's pickles under ``root/<name>-download``; labels uniform at random, or (``cyclic``) ``i mod classes``."""
    cls = data._cifar_class(name)
    folder = root / f"{name}-download" / cls.base_folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    label_key = "labels" if name == "cifar10" else "fine_labels"
    n_classes = 10 if name == "cifar10" else 100
    written = []
    for fname, _ in cls.train_list + cls.test_list:
        x = rng.integers(0, 256, (per_file, 3 * 32 * 32), dtype=np.uint8)
        y = [int(i) % n_classes for i in range(per_file)] if cyclic else list(rng.integers(0, n_classes, per_file))
        with open(folder / fname, "wb") as fh:
            pickle.dump({"data": x, label_key: y}, fh)
        written.append((x, y))
    with open(folder / cls.meta["filename"], "wb") as fh:
        pickle.dump({cls.meta["key"]: [f"c{i}" for i in range(n_classes)]}, fh)
    return written


def write_cifar_jpeg(tar_path, per_class=1, quality=95):
    """The offline CIFAR-10 JPEG tree (``cifar10/{train,test}/<class>/NNNN.jpg``) as a tar.gz; class ``c``'s
    images are a flat colour with red = 20·c."""
    from PIL import Image

    tar_path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path, "w:gz") as tar:
        for split in ("train", "test"):
            for c in CIFAR10_CLASSES:
                for i in range(per_class):
                    buf = io.BytesIO()
                    Image.new("RGB", (32, 32), (20 * CIFAR10_CLASSES.index(c), 5 * i, 0)).save(buf, "JPEG", quality=quality)
                    info = tarfile.TarInfo(f"cifar10/{split}/{c}/{i:04d}.jpg")
                    info.size = buf.tell()
                    buf.seek(0)
                    tar.addfile(info, buf)


def synthetic(n_train=500, n_test=200, side=12, seed=0) -> ImageData:
    """Ten noisy class prototypes on ``side × side`` images with an empty bottom-right corner."""
    gen = torch.Generator().manual_seed(seed)
    protos = torch.rand(10, 1, side, side, generator=gen)

    def draw(n):
        y = torch.arange(n) % 10
        x = (protos[y] + 0.6 * torch.rand(n, 1, side, side, generator=gen)).clamp(0, 1)
        x[..., -6:, -6:] = 0
        return (x * 255).round().to(torch.uint8), y

    return ImageData("mnist", *draw(n_train), *draw(n_test), 10, "synthetic (tests)")
