"""Image data sets for the poisoning lab: MNIST, CIFAR-10 and CIFAR-100 as uint8 tensors.

Where the files come from, in order of preference (the first that is present is used):

1. a canonical copy already in the cache (``<cache>/<name>-download``, torchvision's layout);
2. the offline copy in the shared data folder (``<repo>/../shared/data``; exact MNIST IDX files,
   CIFAR-10 as a JPEG tree re-encoded at quality 75), unpacked once into the cache;
3. a torchvision download into the cache (``download=True``; needs internet).

The cache is ``$POISONCURV_DATA`` or ``<repo>/data`` (git-ignored); the shared folder is
``$POISONCURV_SHARED_DATA`` or ``<repo>/../shared/data``. Nothing is ever written into the shared
folder, and every unpacking goes to a temporary folder first and is renamed when complete.
Every :class:`ImageData` carries its :data:`SOURCES` label, which results record.
"""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from poisoncurv.core.paths import DATA_DIR, SHARED_DATA_DIR

DATASETS = ("mnist", "cifar10", "cifar100")
SOURCES = {
    "download": "canonical download (torchvision)",
    "offline": "exact offline copy (../shared/data)",
    "jpeg": "JPEG copy (q75), not canonical (../shared/data)",
}
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_JPEG_TAR = "cifar10-jpeg/cifar10-jpeg-q75.tar.gz"


class DataNotFoundError(FileNotFoundError):
    """No copy of a data set could be found or downloaded; the message says where and how."""


@dataclass(frozen=True)
class ImageData:
    """A labelled image data set: ``x_*`` uint8 ``(N, C, H, W)``, ``y_*`` int64 ``(N,)``."""

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    source: str

    def subset(self, n_train: int | None, n_test: int | None, seed: int) -> ImageData:
        """The first ``n_train`` / ``n_test`` images of a seeded permutation (``None``: all)."""
        gen = torch.Generator().manual_seed(seed)
        tr, te = torch.randperm(len(self.y_train), generator=gen), torch.randperm(len(self.y_test), generator=gen)
        tr = torch.arange(len(self.y_train)) if n_train is None else tr[:n_train]
        te = torch.arange(len(self.y_test)) if n_test is None else te[:n_test]
        return replace(self, x_train=self.x_train[tr], y_train=self.y_train[tr], x_test=self.x_test[te], y_test=self.y_test[te])


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """The writable cache folder: ``root``, else ``$POISONCURV_DATA``, else ``<repo>/data``."""
    return Path(root or os.environ.get("POISONCURV_DATA") or DATA_DIR)


def shared_root(shared: str | os.PathLike | None = None) -> Path:
    """The read-only offline folder: ``shared``, else ``$POISONCURV_SHARED_DATA``, else ``<repo>/../shared/data``."""
    return Path(shared or os.environ.get("POISONCURV_SHARED_DATA") or SHARED_DATA_DIR)


def check_dataset(name: str) -> str:
    """Return ``name`` if it is a known data set, else raise ``ValueError`` naming the field."""
    if name not in DATASETS:
        raise ValueError(f"dataset: unknown {name!r}; choose one of {', '.join(DATASETS)}")
    return name


def locate(name: str, root: str | os.PathLike | None = None, shared: str | os.PathLike | None = None) -> str | None:
    """Which source :func:`load` would use without downloading: a key of :data:`SOURCES`, or ``None``."""
    check_dataset(name)
    cache, shared_dir = cache_root(root), shared_root(shared)
    if _canonical_present(name, cache):
        return "download"
    if name == "mnist" and all((shared_dir / "mnist" / f"{f}.gz").exists() for f in MNIST_FILES):
        return "offline"
    if name == "cifar10" and (shared_dir / CIFAR_JPEG_TAR).exists():
        return "jpeg"
    return None


def load(name: str, root: str | os.PathLike | None = None, shared: str | os.PathLike | None = None,
         download: bool = True, verify: bool = True) -> ImageData:
    """Load data set ``name`` (see the module docstring for where from).

    ``verify`` checks torchvision's MD5 sums of canonical CIFAR files (tests that write tiny files
    in torchvision's format switch it off). Raises :class:`DataNotFoundError` naming the folders
    searched and how to obtain the files.
    """
    check_dataset(name)
    cache = cache_root(root)
    source = locate(name, root, shared)
    if source is None and download:
        _download(name, cache)
        source = "download"
    if source is None:
        raise DataNotFoundError(_missing_message(name, cache, shared_root(shared)))
    if source == "download":
        folder = cache / f"{name}-download"
        return _read_mnist(folder, source) if name == "mnist" else _read_cifar_pickles(folder, name, source, verify)
    if source == "offline":
        return _read_mnist(_unpack_mnist(shared_root(shared) / "mnist", cache), source)
    return _read_cifar_jpeg(shared_root(shared) / CIFAR_JPEG_TAR, cache)


def _missing_message(name: str, cache: Path, shared: Path) -> str:
    offline = {"mnist": f"{shared / 'mnist'}/<the four *-ubyte.gz files>", "cifar10": str(shared / CIFAR_JPEG_TAR),
               "cifar100": "(no offline copy exists for CIFAR-100)"}[name]
    return (f"dataset {name!r} not found. Looked for a canonical copy under {cache / (name + '-download')} "
            f"(torchvision layout) and an offline copy at {offline}. Get it with "
            f"`python -m poisoncurv.lab.data {name}` on a machine with internet (torchvision download into "
            f"{cache}), or set POISONCURV_DATA / POISONCURV_SHARED_DATA to where the files are.")


def _canonical_present(name: str, cache: Path) -> bool:
    folder = cache / f"{name}-download"
    if name == "mnist":
        return all((folder / "MNIST" / "raw" / f).exists() for f in MNIST_FILES)
    cls = _cifar_class(name)
    names = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return all((folder / cls.base_folder / f).exists() for f in names)


def _download(name: str, cache: Path) -> None:
    """torchvision download into ``<cache>/<name>-download``; a failure becomes :class:`DataNotFoundError`."""
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    folder = cache / f"{name}-download"
    try:
        for train in (True, False):
            cls(str(folder), train=train, download=True)
    except Exception as err:  # network errors come in many types (URLError, HTTPError, socket, RuntimeError)
        raise DataNotFoundError(_missing_message(name, cache, shared_root()) + f" (download failed: {err})") from err


def _atomic_dir(final: Path) -> tuple[Path, Path]:
    """A fresh temporary folder beside ``final`` (rename it to ``final`` when complete)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.")), final


def _publish_dir(tmp: Path, final: Path) -> None:
    """Rename the complete folder ``tmp`` to ``final``; if another process published ``final`` first
    (parallel sweep workers), keep theirs and remove ``tmp``."""
    try:
        os.replace(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _unpack_mnist(shared_mnist: Path, cache: Path) -> Path:
    """Decompress the offline IDX ``.gz`` files into ``<cache>/mnist-offline/MNIST/raw``; returns ``<cache>/mnist-offline``."""
    root = cache / "mnist-offline"
    raw = root / "MNIST" / "raw"
    if all((raw / f).exists() for f in MNIST_FILES):
        return root
    tmp, final = _atomic_dir(raw)
    try:
        for f in MNIST_FILES:
            with gzip.open(shared_mnist / f"{f}.gz", "rb") as src, open(tmp / f, "wb") as dst:
                shutil.copyfileobj(src, dst)
        _publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _read_mnist(root: Path, source: str) -> ImageData:
    from torchvision.datasets import MNIST

    tr, te = MNIST(str(root), train=True), MNIST(str(root), train=False)
    return ImageData("mnist", tr.data[:, None].contiguous(), tr.targets.long(), te.data[:, None].contiguous(),
                     te.targets.long(), 10, SOURCES[source])


def _cifar_class(name: str):
    from torchvision import datasets

    return datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100


def _read_cifar_pickles(root: Path, name: str, source: str, verify: bool) -> ImageData:
    """Read torchvision's CIFAR pickles (``cifar-10-batches-py`` / ``cifar-100-python``) under ``root``."""
    from torchvision.datasets.utils import check_integrity

    cls = _cifar_class(name)
    folder = root / cls.base_folder

    def read(files: list[list[str]]) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for fname, md5 in files:
            path = folder / fname
            if verify and not check_integrity(str(path), md5):
                raise DataNotFoundError(f"{path} is corrupted (MD5 mismatch): delete {folder} and download again")
            with open(path, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
            xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
        return torch.from_numpy(np.concatenate(xs)), torch.tensor(ys, dtype=torch.long)

    x_tr, y_tr = read(cls.train_list)
    x_te, y_te = read(cls.test_list)
    return ImageData(name, x_tr, y_tr, x_te, y_te, 10 if name == "cifar10" else 100, SOURCES[source])


def _read_cifar_jpeg(tar_path: Path, cache: Path) -> ImageData:
    """Unpack the JPEG tree once into ``<cache>/cifar10-jpeg-q75``, read it with ``ImageFolder`` and cache
    the decoded tensors in ``<cache>/cifar10-jpeg-q75.pt``."""
    tensors = cache / "cifar10-jpeg-q75.pt"
    if not tensors.exists():
        tree = cache / "cifar10-jpeg-q75"
        if not tree.exists():
            tmp, final = _atomic_dir(tree)
            try:
                with tarfile.open(tar_path) as tar:
                    tar.extractall(tmp, filter="data")
                _publish_dir(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        split = {s: _read_image_folder(_find_split(tree, s)) for s in ("train", "test")}
        fd, tmp_file = tempfile.mkstemp(dir=cache, prefix=".cifar10-jpeg-q75.", suffix=".tmp")
        os.close(fd)
        torch.save(split, tmp_file)
        os.replace(tmp_file, tensors)
    split = torch.load(tensors)
    return ImageData("cifar10", *split["train"], *split["test"], 10, SOURCES["jpeg"])


def _find_split(tree: Path, split: str) -> Path:
    """The ``train``/``test`` folder inside the unpacked tree (the archive may add one top folder)."""
    found = sorted(p for p in tree.rglob(split) if p.is_dir())
    if not found:
        raise DataNotFoundError(f"no '{split}' folder inside {tree}: delete it and unpack the archive again")
    return found[0]


def _read_image_folder(folder: Path) -> tuple[Tensor, Tensor]:
    from torchvision.datasets import ImageFolder

    ds = ImageFolder(str(folder))
    xs = np.stack([np.asarray(ds.loader(p).convert("RGB"), dtype=np.uint8) for p, _ in ds.samples])
    return torch.from_numpy(xs).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets, dtype=torch.long)


def to_float(x: Tensor) -> Tensor:
    """uint8 images ``(N, C, H, W)`` as float32 in ``[0, 1]``."""
    return x.float() / 255.0


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:] or DATASETS:
        d = load(arg)
        print(f"{arg}: {len(d.y_train)} train, {len(d.y_test)} test, source: {d.source}")
