"""Datasets ready for a model: class selection, seeded splits and batches.

:func:`load_dataset` reads a source named by a dataset string (the forms are
in :mod:`fisherlab.data.sources`), keeps the selected classes relabelled
``0..k-1`` in increasing id order (their names travel with the data), and
prepares the images with an :class:`~fisherlab.data.specs.InputSpec`: pass
``input_spec=`` to resize, convert channels and normalise another dataset the
way a model was trained. Sources with an official test set (``fashion``,
``mnist``, ``npz`` with ``x_test``) use it; the others are split per class
with a seeded permutation (``test_fraction`` of each class goes to the test
split). :func:`load_all` returns every selected sample unsplit, and
:func:`iterate_batches` yields batches of any dataset in a given order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from fisherlab.data.sources import SOURCES, DataSpec, RawData
from fisherlab.data.specs import InputSpec
from fisherlab.errors import FisherlabError, preview


# --------------------------------------------------------------------------- datasets
class ImageDataset(Dataset):
    """Model-ready images and labels.

    Holds either a tensor of prepared images (in-memory sources) or a list of
    image files loaded and prepared on access (``imagefolder``).

    Attributes:
        input_spec: How the images were prepared.
        labels: Int64 labels ``0..k-1``.
        class_names: The class of each label, when the source names its
            classes (``None`` for ``npz`` arrays).
    """

    def __init__(
        self,
        labels: Tensor,
        input_spec: InputSpec,
        images: Tensor | None = None,
        files: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.labels = labels
        self.input_spec = input_spec
        self.images = images
        self.files = list(files) if files is not None else None
        self.class_names = list(class_names) if class_names is not None else None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if self.images is not None:
            return self.images[index], self.labels[index]
        assert self.files is not None
        return _load_image_file(self.files[index], self.input_spec), self.labels[index]

    def tensors(self, workers: int = 0) -> tuple[Tensor, Tensor]:
        """All images and labels as two tensors (loads files if needed).

        Args:
            workers: Processes that read image files (0: this one).
        """
        if self.images is not None:
            return self.images, self.labels
        shape = (0, self.input_spec.channels, self.input_spec.size, self.input_spec.size)
        if not len(self):
            return torch.empty(shape), self.labels
        batches = iterate_batches(self, torch.arange(len(self)), 256, workers=workers)
        return torch.cat([x for x, _ in batches]), self.labels


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
    """Read, convert and resize one image; a damaged file is a :class:`FisherlabError`."""
    try:
        with Image.open(file) as img:
            img = img.convert("L" if spec.channels == 1 else "RGB")
            img = img.resize((spec.size, spec.size), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        text = str(exc).strip()
        first = text.splitlines()[0][:200] if text else "no details"
        raise FisherlabError(
            f"cannot read image {file} ({type(exc).__name__}: {first}); remove or replace it"
        ) from None
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


def stratified_split(labels: Tensor, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Split indices per class: ``round(n_c * test_fraction)`` of each class ``c`` held out.

    Each class's indices are shuffled by one seeded generator (classes in
    ascending order), so the split is a function of ``(labels, test_fraction,
    seed)`` alone.

    Args:
        labels: ``(n,)`` integer labels.
        test_fraction: Fraction of each class held out, in ``[0, 1]``.
        seed: Seed of the shuffles.

    Returns:
        ``(kept, held_out)``: disjoint sorted int64 indices covering ``0..n-1``.

    Example:
        >>> kept, held = stratified_split(torch.tensor([0, 0, 0, 0, 1, 1]), 0.5, seed=0)
        >>> len(kept), len(held), sorted(torch.tensor([0, 0, 0, 0, 1, 1])[held].tolist())
        (3, 3, [0, 0, 1])
    """
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
    parsed: DataSpec, raw: RawData
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
            f"dataset {parsed.short()}: classes {preview(bad)} do not exist; {parsed.source} "
            f"has classes 0-{n_source - 1}"
        )
    lookup = torch.full((n_source,), -1, dtype=torch.int64)
    lookup[torch.tensor(ids, dtype=torch.int64)] = torch.arange(len(ids))

    def select(y: Tensor) -> tuple[Tensor, Tensor]:
        keep = torch.nonzero(lookup[y] >= 0).flatten()
        return keep, lookup[y[keep]]

    return ids, select


def _output_spec(raw: RawData, input_spec: InputSpec | None) -> InputSpec:
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
    class_ids, select = _class_selector(parsed, raw)
    names = None if raw.as_stored else [raw.class_names[c] for c in class_ids]
    spec_out = _output_spec(raw, input_spec)
    assert raw.y is not None
    ys = [raw.y] + ([raw.y_test] if raw.y_test is not None else [])
    keep, labels = select(torch.cat(ys))
    if raw.files is not None:
        files = [raw.files[i] for i in keep.tolist()]
        return ImageDataset(labels, spec_out, files=files, class_names=names)
    assert raw.x is not None
    x_all = torch.cat([raw.x] + ([raw.x_test] if raw.x_test is not None else []))[keep]
    images = x_all if raw.as_stored else _convert(x_all, spec_out)
    return ImageDataset(labels, spec_out, images=images, class_names=names)


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
        tr, te = stratified_split(y_sel, test_fraction, split_seed)
        tr_idx, te_idx, tr_y, te_y = keep[tr], keep[te], y_sel[tr], y_sel[te]
        x_tr = raw.x[tr_idx] if raw.x is not None else None
        x_te = raw.x[te_idx] if raw.x is not None else None
    if tr_y.numel() == 0:
        raise FisherlabError(f"dataset {parsed.short()} is empty after class selection")

    names = None if raw.as_stored else [raw.class_names[c] for c in class_ids]

    def build(x: Tensor | None, idx: Tensor, y: Tensor) -> ImageDataset:
        if raw.files is not None:
            files = [raw.files[i] for i in idx.tolist()]
            return ImageDataset(y, spec_out, files=files, class_names=names)
        assert x is not None
        images = x if raw.as_stored else _convert(x, spec_out)
        return ImageDataset(y, spec_out, images=images, class_names=names)

    return DatasetSplits(
        spec=parsed,
        train=build(x_tr, tr_idx, tr_y),
        test=build(x_te, te_idx, te_y),
        class_names=[raw.class_names[c] for c in class_ids],
        class_ids=class_ids,
        input_spec=spec_out,
        split_seed=split_seed,
    )


def iterate_batches(
    dataset: Dataset,
    indices: Tensor,
    batch_size: int,
    *,
    workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(x, y)`` batches of ``dataset`` in the order of ``indices``.

    In-memory :class:`~fisherlab.data.ImageDataset` objects are sliced as
    tensors (no worker would be faster); other datasets (image folders) are
    stacked item by item, by ``workers`` processes of a
    :class:`~torch.utils.data.DataLoader` when ``workers > 0``. The batches
    are the same either way.

    Args:
        dataset: A dataset of ``(image, label)`` pairs.
        indices: Int64 indices into ``dataset``.
        batch_size: Maximum batch size.
        workers: Data-loading processes for datasets that are not in memory.
        pin_memory: Pin the workers' batches (faster copies to a GPU).

    Yields:
        ``(x, y)`` tensor pairs.
    """
    images = dataset.images if isinstance(dataset, ImageDataset) else None
    if images is None and workers > 0:
        loader = DataLoader(
            dataset,  # type: ignore[arg-type]
            batch_size=batch_size,
            sampler=indices.tolist(),
            num_workers=workers,
            pin_memory=pin_memory,
        )
        for x, y in loader:
            yield x, torch.as_tensor(y)
        return
    for start in range(0, len(indices), batch_size):
        idx = indices[start : start + batch_size]
        if images is not None:
            yield images[idx], dataset.labels[idx]
        else:
            items = [dataset[i] for i in idx.tolist()]
            yield (
                torch.stack([x for x, _ in items]),
                torch.stack([torch.as_tensor(y) for _, y in items]),
            )
