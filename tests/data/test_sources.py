"""The dataset sources and their names (fisherlab.data.sources): files as stored, errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from fisherlab.data import DataSpec, InputSpec, load_dataset
from fisherlab.errors import FisherlabError


def test_fashion_subset_uses_official_split():
    s = load_dataset("fashion:0,2,4-5")
    assert s.class_names == ["T-shirt/top", "Pullover", "Coat", "Sandal"]
    assert (len(s.train), len(s.test)) == (24000, 4000)
    assert torch.bincount(s.test.labels).tolist() == [1000] * 4


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
