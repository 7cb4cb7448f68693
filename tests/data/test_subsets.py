"""Capped data keeps a class-balanced seeded subset (fisherlab.data.subsets), everywhere.

The splits are sorted by class, so "the first n samples" would hold only the
first classes: these tests fail on such a truncation.
"""

from __future__ import annotations

import importlib

import pytest
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from fisherlab.attacks.train_gan import GANConfig, public_pixels
from fisherlab.data import InputSpec, capped_rows, load_dataset, stratified_indices
from fisherlab.errors import FisherlabError
from fisherlab.fisher import profile
from fisherlab.fisher.reference import reference_profile
from fisherlab.models import build_model
from fisherlab.training import TrainConfig, train

train_module = importlib.import_module("fisherlab.training.train")  # the package's name is train()
SORTED = torch.arange(5).repeat_interleave(400)  # 5 classes of 400, sorted like a split


def test_class_sorted_labels_give_equal_counts_per_class():
    for n in (5, 100, 1000, 1999):
        counts = torch.bincount(SORTED[stratified_indices(SORTED, n)], minlength=5)
        assert counts.sum() == n and counts.max() - counts.min() <= 1, (n, counts)
    picked = stratified_indices(SORTED, 1000)
    assert len(set(picked.tolist())) == 1000 and torch.equal(picked, picked.sort().values)


def test_small_classes_give_all_and_the_rest_is_shared_equally():
    labels = torch.tensor([0] * 3 + [1] * 50 + [2] * 50 + [3] * 10)
    counts = torch.bincount(labels[stratified_indices(labels, 40)]).tolist()
    assert counts == [3, 14, 13, 10] or counts == [3, 13, 14, 10]
    assert stratified_indices(labels, 500).tolist() == list(range(len(labels)))


def test_the_choice_is_seeded_and_does_not_depend_on_how_classes_are_interleaved():
    assert torch.equal(stratified_indices(SORTED, 50, seed=1), stratified_indices(SORTED, 50, 1))
    assert not torch.equal(stratified_indices(SORTED, 50, seed=1), stratified_indices(SORTED, 50))
    # interleave the classes (each class keeps its rows' relative order)
    interleaved = torch.arange(2000).view(5, 400).t().reshape(-1)  # row k of class c at 5k + c
    labels = SORTED[interleaved]
    picked = interleaved[stratified_indices(labels, 50, seed=1)]
    assert sorted(picked.tolist()) == stratified_indices(SORTED, 50, seed=1).tolist()


def test_bad_requests_name_the_problem():
    with pytest.raises(FisherlabError, match="n >= 1"):
        stratified_indices(SORTED, 0)
    with pytest.raises(FisherlabError, match="1-d integer labels"):
        stratified_indices(SORTED.float(), 3)


def test_capped_rows_knows_labels_of_datasets_not_of_loaders():
    data = TensorDataset(torch.zeros(2000, 1), SORTED)
    assert torch.equal(capped_rows(data, 10, seed=2), stratified_indices(SORTED, 10, seed=2))
    assert capped_rows(data, None) is None and capped_rows(data, 5000) is None
    assert capped_rows(DataLoader(data, batch_size=8), 10) is None  # first 10, documented


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("target_cnn", 5, in_channels=1, image_size=28).eval()


def test_profile_of_capped_data_is_the_reference_on_the_stratified_rows():
    model, n = _model(), 10
    train_split = load_dataset("mnist5k:0-4").train
    rows = stratified_indices(train_split.labels, n, seed=0)
    assert torch.bincount(train_split.labels[rows]).tolist() == [2] * 5
    capped = profile(model, "mnist5k:0-4", max_samples=n)
    explicit = reference_profile(model, Subset(train_split, rows.tolist()))
    assert (capped["n_samples"] == n).all()
    assert capped["trace"].to_numpy() == pytest.approx(explicit["trace"].to_numpy(), rel=1e-4)
    # the reference applies the same cap itself, and the first n (all digit 0) differ
    same = reference_profile(model, "mnist5k:0-4", max_samples=n)
    assert same["trace"].to_numpy() == pytest.approx(explicit["trace"].to_numpy(), rel=1e-6)
    first = reference_profile(model, Subset(train_split, list(range(n))))
    assert set(train_split.labels[:n].tolist()) == {0}
    assert capped["trace"].to_numpy() != pytest.approx(first["trace"].to_numpy(), rel=1e-2)


def test_gan_training_with_a_cap_sees_every_public_class():
    config = GANConfig(data="mnist5k:5-9", max_train_samples=100)
    pixels, labels = public_pixels(config, InputSpec(1, 28, None, None))
    assert pixels.shape == (100, 1, 28, 28) and float(pixels.min()) >= 0
    assert torch.bincount(labels).tolist() == [20] * 5


def test_training_with_a_cap_trains_on_a_balanced_subset(monkeypatch):
    seen = []
    original = train_module.iterate_batches

    def spy(dataset, indices, *args, **kwargs):
        seen.append(dataset.labels[indices])
        return original(dataset, indices, *args, **kwargs)

    monkeypatch.setattr(train_module, "iterate_batches", spy)
    config = TrainConfig(data="mnist5k:0-4", arch="target_cnn", epochs=1, max_train_samples=50)
    train(config, progress=False)
    assert torch.bincount(seen[0]).tolist() == [10] * 5
