"""Stage 1, data: named image datasets, their splits and how a model sees them.

A dataset is named by a string ``SOURCE[:PATH][:CLASSES]`` (:class:`DataSpec`,
the sources are in :mod:`fisherlab.data.sources`), loaded into seeded
train/test splits (:func:`load_dataset`, :mod:`fisherlab.data.datasets`) and
prepared for a model by an :class:`InputSpec` (:mod:`fisherlab.data.specs`).
Every cap on the number of samples keeps a class-balanced seeded subset
(:func:`stratified_indices`, :mod:`fisherlab.data.subsets`).
Sizes read from user input and files are capped before anything is allocated
(:mod:`fisherlab.data.limits`).
"""

from fisherlab.data.datasets import (
    DatasetSplits,
    ImageDataset,
    iterate_batches,
    load_all,
    load_dataset,
    stratified_split,
)
from fisherlab.data.limits import MAX_CLASSES, MAX_IMAGE_SIZE, MAX_LAYERS, parse_ranges
from fisherlab.data.sources import (
    FASHION_CLASSES,
    FASHION_DIR,
    FORMS,
    IMAGEFOLDER_DEFAULT_SIZE,
    SOURCES,
    DataSpec,
    available,
)
from fisherlab.data.specs import InputSpec
from fisherlab.data.subsets import capped_rows, dataset_labels, stratified_indices

__all__ = [
    # how a model sees images
    "InputSpec",
    # caps on sizes from user input and files
    "MAX_CLASSES",
    "MAX_IMAGE_SIZE",
    "MAX_LAYERS",
    "parse_ranges",
    # where images come from
    "DataSpec",
    "SOURCES",
    "FORMS",
    "FASHION_CLASSES",
    "FASHION_DIR",
    "IMAGEFOLDER_DEFAULT_SIZE",
    "available",
    # splits and batches
    "DatasetSplits",
    "ImageDataset",
    "iterate_batches",
    "load_all",
    "load_dataset",
    "stratified_split",
    # class-balanced caps
    "stratified_indices",
    "capped_rows",
    "dataset_labels",
]
