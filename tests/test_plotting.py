"""Figures read right: dead kernels named, a blank heatmap labelled, titles clear of each other."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from coursekit import plotting  # noqa: E402


def test_dead_first_layer_kernels_are_named_and_drawn_black():
    kernels = np.random.default_rng(0).normal(size=(3, 3, 3, 6)).astype("float32")
    kernels[..., 2] = 0.0                    # all zero
    kernels[..., 4] *= 1e-5                  # almost: min-max scaling would stretch it into noise
    assert plotting.dead_kernels(kernels).tolist() == [2, 4]
    fig = plotting.show_kernels_rgb(kernels, columns=6)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["0", "1", "2 dead", "3", "4 dead", "5"]
    for k in (2, 4):
        assert np.all(np.asarray(fig.axes[k].images[0].get_array()) == 0)
    assert np.asarray(fig.axes[3].images[0].get_array()).max() == 1
    plt.close(fig)


def test_grey_kernels_on_one_scale_or_each_on_its_own():
    kernels = np.stack([np.full((3, 3), 0.5), np.full((3, 3), -4.0)], axis=-1).astype("float32")
    shared = plotting.show_kernels_grey(kernels, label="filter")
    assert [image.get_clim() for ax in shared.axes for image in ax.images] == [(-4.0, 4.0)] * 2
    assert "filter 1" in [ax.get_title() for ax in shared.axes]
    own = plotting.show_kernels_grey(kernels, label="channel", shared_scale=False)
    assert [image.get_clim() for ax in own.axes for image in ax.images] == [(-0.5, 0.5), (-4.0, 4.0)]
    with pytest.raises(ValueError, match=r"kernels\[:, :, 0, :\]"):
        plotting.show_kernels_grey(np.zeros((3, 3, 1, 16)))
    plt.close("all")


def test_a_blank_heatmap_says_no_positive_evidence_and_only_it():
    image = np.full((8, 8, 3), 0.5, dtype="float32")
    lit, blank = np.eye(8, dtype="float32"), np.zeros((8, 8), dtype="float32")
    fig = plotting.show_heatmaps(image, [lit, blank], titles=["lit", "blank"])
    assert [[text.get_text() for text in ax.texts] for ax in fig.axes] == [[], [], [plotting.BLANK_NOTE]]
    assert "no positive" in plotting.BLANK_NOTE
    plt.close(fig)


def test_a_suptitle_stays_clear_of_two_line_titles():
    fig = plotting.show_images(np.zeros((2, 16, 16, 3)), titles=["flamingo\nnetwork says: flamingo"] * 2,
                               columns=2, size=3.2, suptitle="class patterns")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    top = fig._suptitle.get_window_extent(renderer)
    for ax in fig.axes:
        assert ax.title.get_window_extent(renderer).y1 <= top.y0
    plt.close(fig)
