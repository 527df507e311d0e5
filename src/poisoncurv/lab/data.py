"""Image data sets for the poisoning lab: MNIST, CIFAR-10 and CIFAR-100 as uint8 tensors.

Where the files come from, in order of preference (the first that is present is used):

1. a canonical copy already in the cache (``<cache>/<name>-download``, torchvision's layout);
2. the offline copy in the shared data folder (``<repo>/../shared/data``; exact MNIST IDX files,
   CIFAR-10 as a JPEG tree re-encoded at quality 75), unpacked once into the cache;
3. a torchvision download into the cache (``download=True``; needs internet).

The cache is ``$POISONCURV_DATA`` or ``<repo>/data`` (git-ignored); the shared folder is
``$POISONCURV_SHARED_DATA`` or ``<repo>/../shared/data``. Nothing is ever written into the shared
folder. Every :class:`ImageData` carries its :data:`SOURCES` label, which results record.

Integrity (``verify=True``, the default): archives are checked when first read against their
published hashes (torchvision's MD5 of the canonical MNIST ``.gz`` and CIFAR pickles,
:data:`OFFLINE_SHA256` for the offline copies, from ``../shared/data/README.md``); IDX files are
checked for their magic number and length on every read. A bad file raises
:class:`CorruptDataError` naming it and saying what to do.

Unpacked caches are built in a private temporary folder, marked complete by a file
(:data:`MARKER`: the source archives' sha256 and every unpacked file with its size) written last, and renamed into
place; a second
process that finds a complete copy already there keeps it and drops its own. A cache without a
matching marker (half-written, unpacked from a since-replaced archive, or with a file deleted or cut short since)
is rebuilt.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from poisoncurv.core.digests import file_digest
from poisoncurv.core.paths import DATA_DIR, SHARED_DATA_DIR
from poisoncurv.core.results import atomic_target, ordinary_mode

DATASETS = ("mnist", "cifar10", "cifar100")
NUM_CLASSES = {"mnist": 10, "cifar10": 10, "cifar100": 100}
SOURCES = {
    "download": "canonical download (torchvision)",
    "offline": "exact offline copy (../shared/data)",
    "jpeg": "JPEG copy (q75), not canonical (../shared/data)",
}
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_JPEG_TAR = "cifar10-jpeg/cifar10-jpeg-q75.tar.gz"
# Published MD5 of the canonical MNIST archives (torchvision.datasets.MNIST.resources).
MNIST_MD5 = {"train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873", "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
             "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3", "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c"}
# sha256 of the offline copies, as listed in ../shared/data/README.md.
OFFLINE_SHA256 = {
    "mnist/t10k-images-idx3-ubyte.gz": "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
    "mnist/t10k-labels-idx1-ubyte.gz": "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
    "mnist/train-images-idx3-ubyte.gz": "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
    "mnist/train-labels-idx1-ubyte.gz": "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
    CIFAR_JPEG_TAR: "d877bdec11f54282b92da36e9f045bd305d663b1223e3822baff39ca9ff6690a",
}
MARKER = ".complete"


class DataNotFoundError(FileNotFoundError):
    """No copy of a data set could be found or downloaded; the message says where and how."""


class CorruptDataError(DataNotFoundError):
    """A data file is truncated, has the wrong format or fails its checksum; the message names it and the fix."""


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
        """The first ``n_train`` / ``n_test`` images of a seeded permutation (``None``: all); raises
        ``ValueError`` naming the field when the data set has fewer images than asked for."""
        for name, n, have in (("n_train", n_train, len(self.y_train)), ("n_test", n_test, len(self.y_test))):
            if n is not None and n > have:
                raise ValueError(f"{name}: got {n}; allowed: at most {have} (the {self.name} copy read has {have}; "
                                 f"source: {self.source})")
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

    ``verify`` checks the published hashes (module docstring; tests that write tiny files switch
    it off). Raises :class:`DataNotFoundError` naming the folders searched and how to obtain the
    files, or :class:`CorruptDataError` naming a bad file.
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
        if name == "mnist":
            return _read_mnist(_verified_download(folder / "MNIST" / "raw", verify), source, _redownload(folder))
        return _read_cifar_pickles(folder, name, source, verify)
    if source == "offline":
        shared_dir = shared_root(shared)
        raw = _unpack_mnist(shared_dir, cache, verify)
        try:
            return _read_mnist(raw, source, "")
        except CorruptDataError:  # damaged after it was unpacked: unpack it again, once
            shutil.rmtree(raw, ignore_errors=True)
            raw = _unpack_mnist(shared_dir, cache, verify)
            return _read_mnist(raw, source, f"delete {raw.parent.parent} to unpack it again from {shared_dir / 'mnist'}")
    return _read_cifar_jpeg(shared_root(shared), cache, verify)


def _missing_message(name: str, cache: Path, shared: Path) -> str:
    offline = {"mnist": f"an offline copy at {shared / 'mnist'}/<the four *-ubyte.gz files>",
               "cifar10": f"an offline copy at {shared / CIFAR_JPEG_TAR}",
               "cifar100": "no offline copy (none exists for CIFAR-100)"}[name]
    if name == "mnist":
        expected = f"{cache / 'mnist-download' / 'MNIST' / 'raw'}/<the four *-ubyte files>"
    else:
        cls = _cifar_class(name)
        files = ", ".join([f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]])
        expected = f"{cache / (name + '-download') / cls.base_folder}/{{{files}}} (from {cls.url})"
    return (f"dataset {name!r} not found. Looked for a canonical copy at {expected} (torchvision layout) and "
            f"{offline}. Get it with `python -m poisoncurv.lab.data {name}` on a machine with internet (torchvision "
            f"download into {cache}), or unpack the archive there yourself, or set POISONCURV_DATA / "
            f"POISONCURV_SHARED_DATA to where the files are.")


def ensure(name: str, root: str | os.PathLike | None = None, shared: str | os.PathLike | None = None,
           download: bool = True) -> str:
    """The :data:`SOURCES` key :func:`load` will read ``name`` from, downloading it first (``download``) when
    no copy is present; raises :class:`DataNotFoundError` (where the files are expected, how to get them)
    otherwise. Reads nothing: call it before any work, once per data set (e.g. before a sweep starts)."""
    source = locate(name, root, shared)
    if source is None and download:
        _download(name, cache_root(root))
        source = locate(name, root, shared)
    if source is None:
        raise DataNotFoundError(_missing_message(name, cache_root(root), shared_root(shared)))
    return source


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
        raise DataNotFoundError(_missing_message(name, cache, shared_root()) + f" (download failed: "
                                f"{' '.join(str(err).split())[:200]})") from err


def _redownload(folder: Path) -> str:
    return f"delete {folder} and download again (`python -m poisoncurv.lab.data`, needs internet)"


def _check_offline(shared: Path, rel: str, verify: bool) -> str:
    """sha256 of the offline file ``shared/rel``; with ``verify``, raise :class:`CorruptDataError` unless it
    is the one listed in :data:`OFFLINE_SHA256`."""
    path = shared / rel
    digest = file_digest(path, "sha256")
    if verify and digest != OFFLINE_SHA256[rel]:
        raise CorruptDataError(f"{path} is corrupt ({path.stat().st_size} bytes, sha256 {digest[:12]}…, expected "
                               f"{OFFLINE_SHA256[rel][:12]}… as listed in {shared / 'README.md'}): restore it from the "
                               f"source that README names, or remove it and download the canonical copy instead")
    return digest


def _verified_download(raw: Path, verify: bool) -> Path:
    """``raw`` (torchvision's ``MNIST/raw``) after checking the downloaded ``.gz`` archives against
    :data:`MNIST_MD5` once (a marker records it); archives torchvision did not keep are skipped."""
    marker = raw / MARKER
    if not verify or marker.exists():
        return raw
    for f, md5 in MNIST_MD5.items():
        gz = raw / f"{f}.gz"
        if gz.exists() and file_digest(gz, "md5") != md5:
            raise CorruptDataError(f"{gz} fails its published MD5 ({md5}): {_redownload(raw.parent.parent)}")
    with atomic_target(marker) as tmp:
        tmp.write_text(json.dumps(MNIST_MD5))
    return raw


def _listing(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` but the marker, as ``{relative path: size in bytes}``."""
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MARKER}


def _complete(folder: Path, stamp: dict[str, str]) -> bool:
    """Whether ``folder`` holds a complete unpacked copy made from the sources ``stamp`` describes: its marker names
    those sources and every file it lists is there with its size (a file deleted or cut short since is caught)."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        if not isinstance(marker, dict) or marker.get("sources") != stamp or not isinstance(marker.get("files"), dict):
            return False
        return all((folder / rel).stat().st_size == size for rel, size in marker["files"].items())
    except (OSError, ValueError):
        return False


def _build_dir(final: Path, stamp: dict[str, str], fill) -> Path:
    """``final`` if complete for ``stamp``; else ``fill(tmp)`` into a private temporary folder, mark it
    complete (the marker is written last) and move it into place. If another process published a
    complete copy meanwhile, keep that one; an incomplete or stale ``final`` is replaced."""
    if _complete(final, stamp):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}."))
    try:
        fill(tmp)
        (tmp / MARKER).write_text(json.dumps({"sources": stamp, "files": _listing(tmp)}))
        os.chmod(tmp, ordinary_mode(directory=True))  # mkdtemp's 0o700 otherwise
        for _ in range(5):
            try:
                os.rename(tmp, final)  # fails if final is a non-empty folder
                return final
            except OSError:
                if _complete(final, stamp):
                    return final
                trash = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.old."))
                try:
                    os.rename(final, trash / final.name)
                except FileNotFoundError:
                    pass
                shutil.rmtree(trash, ignore_errors=True)
        raise OSError(f"could not move the unpacked copy into {final}: delete it and try again")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _unpack_mnist(shared: Path, cache: Path, verify: bool) -> Path:
    """Decompress the offline IDX ``.gz`` files of ``shared/mnist`` into ``<cache>/mnist-offline/MNIST/raw``
    (returned), checking them first (:func:`_check_offline`)."""
    stamp = {f: _check_offline(shared, f"mnist/{f}.gz", verify) for f in MNIST_FILES}

    def fill(tmp: Path) -> None:
        for f in MNIST_FILES:
            src = shared / "mnist" / f"{f}.gz"
            try:
                with gzip.open(src, "rb") as fin, open(tmp / f, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            except (OSError, EOFError, zlib.error) as err:
                raise CorruptDataError(f"{src} is not a complete gzip file ({err}): restore it from the source "
                                       f"{shared / 'README.md'} names, or remove it and download instead") from None
            _read_idx(tmp / f, f"restore {src}")  # the payload itself is a valid IDX file

    return _build_dir(cache / "mnist-offline" / "MNIST" / "raw", stamp, fill)


def _read_idx(path: Path, fix: str) -> np.ndarray:
    """An IDX file of unsigned bytes (magic ``0 0 8 ndim``, big-endian sizes, payload) as an array;
    raises :class:`CorruptDataError` naming ``path`` and ``fix`` on a wrong magic number or length."""
    raw = path.read_bytes()
    ndim = raw[3] if len(raw) >= 4 else 0
    if len(raw) < 4 or raw[:3] != b"\0\0\x08" or ndim not in (1, 3) or len(raw) < 4 + 4 * ndim:
        raise CorruptDataError(f"{path} is not an MNIST IDX file ({len(raw)} bytes, magic {raw[:4].hex() or 'none'}, "
                               f"expected 00000801 or 00000803): {fix}")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + math.prod(dims)
    if len(raw) != expected:
        raise CorruptDataError(f"{path} has {len(raw)} bytes, expected {expected} for shape {dims} (truncated?): {fix}")
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _read_mnist(raw: Path, source: str, fix: str) -> ImageData:
    """The four IDX files in ``raw`` as :class:`ImageData` (``fix``: what to do about a bad file)."""
    arr = {f: _read_idx(raw / f, fix) for f in MNIST_FILES}
    for split in ("train", "t10k"):
        images, labels = arr[f"{split}-images-idx3-ubyte"], arr[f"{split}-labels-idx1-ubyte"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or labels.max(initial=0) > 9:
            raise CorruptDataError(f"{raw}: {split} images {images.shape} and labels {labels.shape} do not match "
                                   f"(or a label exceeds 9): {fix}")
    x = {k: torch.from_numpy(v.copy()) for k, v in arr.items()}
    return ImageData("mnist", x["train-images-idx3-ubyte"][:, None].contiguous(), x["train-labels-idx1-ubyte"].long(),
                     x["t10k-images-idx3-ubyte"][:, None].contiguous(), x["t10k-labels-idx1-ubyte"].long(), 10, SOURCES[source])


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
                raise CorruptDataError(f"{path} is corrupted (MD5 mismatch, expected {md5}): {_redownload(root)}")
            try:
                with open(path, "rb") as fh:
                    entry = pickle.load(fh, encoding="latin1")
                xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
            except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError) as err:
                raise CorruptDataError(f"{path} is not a CIFAR batch ({type(err).__name__}: {err}): {_redownload(root)}") from None
        return torch.from_numpy(np.concatenate(xs)), torch.tensor(ys, dtype=torch.long)

    x_tr, y_tr = read(cls.train_list)
    x_te, y_te = read(cls.test_list)
    return ImageData(name, x_tr, y_tr, x_te, y_te, 10 if name == "cifar10" else 100, SOURCES[source])


def _read_cifar_jpeg(shared: Path, cache: Path, verify: bool) -> ImageData:
    """Unpack the offline JPEG tree once into ``<cache>/cifar10-jpeg-q75`` (:func:`_build_dir`), read it
    with ``ImageFolder`` and cache the decoded tensors, stamped with the archive's sha256, in
    ``<cache>/cifar10-jpeg-q75.pt``; an unreadable or stale tensor file is rebuilt."""
    tar_path = shared / CIFAR_JPEG_TAR
    stamp = {CIFAR_JPEG_TAR: _check_offline(shared, CIFAR_JPEG_TAR, verify)}
    tensors = cache / "cifar10-jpeg-q75.pt"
    try:
        split = torch.load(tensors, weights_only=True)
        if split.get("stamp") != stamp:
            raise ValueError("made from another archive")
    except Exception:  # absent, truncated, or stale: rebuild it (torch.load raises many types)
        def fill(tmp: Path) -> None:
            try:
                with tarfile.open(tar_path) as tar:
                    tar.extractall(tmp, filter="data")
            except (OSError, EOFError, tarfile.TarError, zlib.error) as err:
                raise CorruptDataError(f"{tar_path} is not a complete tar.gz archive ({err}): restore it from the "
                                       f"source {shared / 'README.md'} names") from None

        tree = _build_dir(cache / "cifar10-jpeg-q75", stamp, fill)
        split = {"stamp": stamp, **{s: _read_image_folder(_find_split(tree, s)) for s in ("train", "test")}}
        with atomic_target(tensors) as tmp:
            torch.save(split, tmp)
    (x_tr, y_tr), (x_te, y_te) = split["train"], split["test"]
    return ImageData("cifar10", x_tr, y_tr, x_te, y_te, 10, SOURCES["jpeg"])


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


def main(argv: list[str] | None = None) -> int:
    """``python -m poisoncurv.lab.data [NAME ...]``: load each data set (all by default), downloading it when no copy
    is present, and print its sizes and source. An unknown name, or a data set that can be neither found nor
    downloaded, is one line on stderr and exit status 2 (names are checked before anything is read)."""
    names = (sys.argv[1:] if argv is None else argv) or list(DATASETS)
    try:
        for name in names:
            check_dataset(name)
        for name in names:
            d = load(name)
            print(f"{name}: {len(d.y_train)} train, {len(d.y_test)} test, source: {d.source}")
    except (ValueError, DataNotFoundError) as err:
        print(f"poisoncurv.lab.data: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
