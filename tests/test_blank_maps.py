"""Blank maps (no positive evidence) are labelled in figures and left out of correlation plots."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from coursekit import plotting  # noqa: E402


def texts(ax):
    return [text.get_text() for text in ax.texts]


def test_only_a_blank_map_is_labelled():
    fig, axes = plt.subplots(1, 3)
    rng = np.random.default_rng(0)
    assert plotting.label_blank(axes[0], np.zeros((7, 7)))
    assert not plotting.label_blank(axes[1], rng.random((7, 7)))
    assert not plotting.label_blank(axes[2], rng.random((7, 7, 3)))     # a photo is not a map
    assert texts(axes[0]) == [plotting.NO_EVIDENCE] and texts(axes[1]) == texts(axes[2]) == []
    plt.close(fig)


def test_the_cascade_plot_leaves_blank_maps_out_and_says_how_many():
    correlations = {"Grad-CAM": [[1, 1, 1], [0.5, np.nan, 0.7], [np.nan] * 3],
                    "Gradient": [[1, 1, 1], [0.2, 0.4, 0.0], [0.1, 0.1, 0.1]]}
    fig = plotting.plot_cascade_without_blanks(["trained", "top", "all"], correlations)
    ax = fig.axes[0]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == ["Grad-CAM (4 blank maps left out)", "Gradient"]
    y = ax.containers[0].lines[0].get_ydata()          # Grad-CAM's error-bar line
    assert np.isclose(y[1], 0.6) and np.isnan(y[2])   # the mean of the maps that are there; no point at all
    hollow = [line for line in ax.lines if line.get_markerfacecolor() == "white"]
    assert [list(line.get_xdata()) for line in hollow] == [[1], []]
    plt.close(fig)
