"""Figures: labelled axes, titles, legends off the text, formats, deep models, the grid."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # tests draw to files (the library itself never picks a backend)

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fisherlab import plots
from fisherlab.attacks.grid import MAX_ROWS, MIN_PIXELS, reconstruction_grid
from fisherlab.errors import FisherlabError


def _texts(fig: plt.Figure) -> list:
    """Every visible text artist of ``fig`` that is not inside a legend."""
    legends = [a.get_legend() for a in fig.axes] + list(fig.legends)
    inside = {id(t) for leg in legends if leg is not None for t in leg.get_texts()}
    inside |= {id(leg.get_title()) for leg in legends if leg is not None}
    found = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text()]
    return [t for t in found if id(t) not in inside]


def _number(text: str) -> bool:
    try:
        float(text.replace("\u2212", "-"))
    except ValueError:
        return False
    return True


def check_figure(fig: plt.Figure) -> None:
    """Axes labelled, a title, and no text of the figure under a legend."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    titled = bool(fig._suptitle and fig._suptitle.get_text()) or any(
        a.get_title() for a in fig.axes
    )
    assert titled, "no title"
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        for axis in ("x", "y"):
            shared = getattr(ax, f"get_shared_{axis}_axes")().get_siblings(ax)
            named = any(getattr(a, f"get_{axis}label")().strip() for a in shared)
            categorical = any(  # a heatmap's rows name themselves (shared axes: on one)
                t.get_text() and not _number(t.get_text())
                for a in shared
                for t in getattr(a, f"get_{axis}ticklabels")()
            )
            assert named or categorical, f"unlabelled {axis} axis in {ax.get_title()!r}"
    legends = [a.get_legend() for a in fig.axes if a.get_legend()] + list(fig.legends)
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for text in _texts(fig):
            other = text.get_window_extent(renderer)
            overlap = box.overlaps(other) and other.width > 0
            assert not overlap, f"legend over the text {text.get_text()!r}"


@pytest.fixture(scope="module")
def drawn(reproduced, tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    paths = plots.draw_all(reproduced, out)
    plots.draw_figure("fig2_tradeoff", reproduced, out, formats=("pdf", "svg"))
    return reproduced, out, paths


def test_every_figure_is_labelled_and_keeps_legends_off_the_text(drawn):
    results, _, paths = drawn
    names = sorted({p.stem for p in paths})
    assert "fig2_tradeoff" in names and "fig1iv_defenses" in names
    for name in names:
        fig = plots.draw_figure(name, results)
        check_figure(fig)
        plt.close(fig)


def test_formats_on_request_and_300_dpi(drawn):
    _, out, _ = drawn
    png = out / "fig2_tradeoff.png"
    assert (out / "fig2_tradeoff.pdf").read_bytes()[:4] == b"%PDF"
    assert b"<svg" in (out / "fig2_tradeoff.svg").read_bytes()[:400]
    with Image.open(png) as image:
        assert round(image.info["dpi"][0]) == plots.DPI
    with pytest.raises(FisherlabError, match=r"cannot save a figure as \.jpg"):
        plots.save(plt.figure(), out / "x.jpg")


def test_fig2_draws_chance_as_a_line(reproduced):
    fig = plots.draw_figure("fig2_tradeoff", reproduced)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert any(label.startswith("chance") for label in labels)
    plt.close(fig)


def _profile(n_layers: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    trace = rng.random(n_layers)
    return pd.DataFrame(
        {
            "index": range(n_layers),
            "name": [f"blocks.{i}.conv" for i in range(n_layers)],
            "share": trace / trace.sum(),
            "mean": rng.random(n_layers) + 0.01,
            "objective": "classification",
            "fisher": "empirical",
            "n_samples": 64,
        }
    )


def test_a_deep_profile_turns_horizontal_and_stays_readable():
    shallow = plots.plot_profile(_profile(6), about="m on d")
    deep = plots.plot_profile(_profile(60), about="m on d")
    assert len(shallow.axes[0].get_xticklabels()) == 6
    assert len(deep.axes[0].get_yticklabels()) == 60  # layers down the page
    width, height = deep.get_size_inches()
    assert width <= 2 * plots.COLUMN_WIDTH + 1e-9 and height <= 30
    for fig in (shallow, deep):
        check_figure(fig)
        assert "m on d" in fig._suptitle.get_text()
        plt.close(fig)


def test_reconstruction_grid_is_labelled_and_large_enough():
    recon = torch.rand(3, 12, 1, 28, 28)
    private = torch.rand(3, 4, 1, 28, 28)
    image = reconstruction_grid(recon, ["cat", "dog", "a very long class name"], private)
    side = 28 * 3  # integer zoom to at least MIN_PIXELS
    assert side >= MIN_PIXELS
    width, height = image.size
    assert width >= 3 * side and height >= (MAX_ROWS + 4) * side
    # the first reconstruction sits unscaled-in-content at its cell: nearest-neighbour blocks
    pixels = np.asarray(image)
    assert pixels.shape[2] == 3
    alone = reconstruction_grid(recon[:, :2], ["a", "b", "c"], None)
    assert alone.size[1] < image.size[1]


def test_defense_names_have_one_spelling():
    assert plots.pretty("bido") == "BiDO" and plots.pretty("mid") == "MID"
    assert plots.pretty_setting("b=4 + bido hsic_a1=0.05") == "b=4 + BiDO hsic_a1=0.05"
    assert plots.pretty_setting("mid beta=0.01") == "MID beta=0.01"
