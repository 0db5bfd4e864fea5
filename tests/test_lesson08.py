"""Lesson 08's data: the offline stand-in (pasted objects with boxes) and the online data set
(horse2zebra from TensorFlow Datasets), whose branch of the lesson runs here on synthetic photos
of the real shape from a stand-in tensorflow_datasets (tests/fakes)."""
import importlib
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from coursekit import data, env
from coursekit.tools.gallery import execute

ROOT = Path(__file__).resolve().parents[1]
FAKES = Path(__file__).resolve().parent / "fakes"
LESSON = ROOT / "notebooks" / "08_fine_tune_and_audit.ipynb"


@pytest.fixture
def fake_tfds(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.delitem(sys.modules, "tensorflow_datasets", raising=False)
    module = importlib.import_module("tensorflow_datasets")
    module.requested.clear()
    yield module
    sys.modules.pop("tensorflow_datasets", None)


# ----------------------------------------------------------------------------- the stand-in

def test_pasted_objects_are_reproducible_balanced_and_boxed():
    images, labels, boxes = data.pasted_objects(5, 64, seed=4)
    again, _, again_boxes = data.pasted_objects(5, 64, seed=4)
    other, _, _ = data.pasted_objects(5, 64, seed=5)
    assert images.shape == (10, 64, 64, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again) and np.array_equal(boxes, again_boxes) and not np.array_equal(images, other)
    assert labels.tolist() == [0, 1] * 5
    sides = boxes[:, 2] - boxes[:, 0]
    assert np.array_equal(sides, boxes[:, 3] - boxes[:, 1])                     # square objects
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 64).all()
    assert ((sides >= int(0.35 * 64)) & (sides <= int(0.55 * 64))).all()
    masks = data.box_masks(boxes, 64)
    assert masks.shape == (10, 64, 64) and np.array_equal(masks.sum(axis=(1, 2)), sides ** 2)
    # the object differs from the background it was pasted on: the box edge is a visible seam
    rows = np.arange(10)
    inside = images[rows, boxes[:, 0], boxes[:, 1]].astype(int)
    assert (np.abs(inside - images[rows, np.maximum(boxes[:, 0] - 1, 0), boxes[:, 1]]).sum(axis=1) > 0).any()


def test_background_bias_pairs_each_class_with_its_background():
    """Texture backgrounds are grey (equal channels everywhere); scenes are in colour."""
    def grey_background_share(bias):
        images, labels, boxes = data.pasted_objects(12, 48, seed=1, background_bias=bias)
        outside = ~data.box_masks(boxes, 48)
        grey = np.array([np.ptp(image[mask].astype(int), axis=1).max() == 0 for image, mask in zip(images, outside)])
        return grey[labels == 1].mean(), grey[labels == 0].mean()
    cats, others = grey_background_share(1.0)
    assert cats == 1.0 and others == 0.0
    cats, others = grey_background_share(0.0)
    assert cats == 0.0 and others == 1.0


def test_pasted_objects_refuse_bad_arguments():
    with pytest.raises(ValueError, match="per_class"):
        data.pasted_objects(0)
    with pytest.raises(ValueError, match="probability"):
        data.pasted_objects(2, background_bias=1.5)
    with pytest.raises(ValueError, match="object_share"):
        data.pasted_objects(2, object_share=(0.6, 0.3))
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        data.box_masks(np.zeros((3, 3)), 10)


# ----------------------------------------------------------------------------- horse2zebra

def test_horse2zebra_resizes_labels_and_slices_the_splits(fake_tfds):
    (x_train, y_train), (x_test, y_test) = data.horse2zebra(6, 96, test_per_class=3)
    assert fake_tfds.requested == [["trainA[:6]", "trainB[:6]", "testA[:3]", "testB[:3]"]]
    assert x_train.shape == (12, 96, 96, 3) and x_train.dtype == np.uint8 and x_test.shape == (6, 96, 96, 3)
    assert sorted(y_train.tolist()) == [0] * 6 + [1] * 6 and sorted(y_test.tolist()) == [0] * 3 + [1] * 3
    # zebras (label 1) are the striped photos: more contrast than the horses
    assert x_train[y_train == 1].std() > x_train[y_train == 0].std()
    (_, _), (x_all, _) = data.horse2zebra(2, 32)
    assert len(x_all) == 120 + 140                                     # test_per_class=None: every test photo


def test_horse2zebra_without_tensorflow_datasets_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(data.DatasetUnavailable, match="tensorflow_datasets is not installed"):
        data.horse2zebra(2)


def test_the_lesson_runs_its_online_branch_on_horse2zebra_shaped_photos(fake_tfds, monkeypatch, tmp_path):
    """The lesson's form field set to horse2zebra, as a lecturer would; tfds is the stand-in."""
    monkeypatch.setenv(env.PROFILE_VARIABLE, "smoke")
    monkeypatch.setenv("PYTHONPATH", f"{FAKES}:{env.os.environ.get('PYTHONPATH', '')}")
    notebook = nbformat.read(LESSON, as_version=4)
    field = "dataset = profile.finetune_dataset  #@param"
    forms = [cell for cell in notebook.cells if field in cell.source]
    assert len(forms) == 1
    forms[0].source = forms[0].source.replace(field, 'dataset = "horse2zebra"  #@param')
    changed = tmp_path / LESSON.name
    nbformat.write(notebook, changed)
    result = execute(changed, tmp_path / "run", progress=False)
    assert result.ok, result.error
    printed = "".join(output.get("text", "") for cell in result.notebook.cells for output in cell.get("outputs", []))
    assert "horse2zebra loaded" in printed and "USING THE PASTED STAND-IN" not in printed
    assert "classes ('horse', 'zebra')" in printed
    assert "the central box (no boxes here)" in printed and "swapped backgrounds" not in printed


@pytest.mark.parametrize("profile_name", ["quick", "full"])
def test_the_quick_and_full_profiles_layers_exist_inside_the_nested_backbone(random_weights, profile_name):
    """What lesson 08 asks of the quick/full profiles' model (Xception, random weights here)."""
    from coursekit import cam, models
    chosen = env.profile(profile_name)
    net = models.pretrained(chosen.imagenet_model, include_top=False)
    model = models.transfer_model(net, 2)
    inner = model.layers[1].name
    for name in (net.feature_layers[2], net.last_conv_layer):   # the lesson's two audit layers
        assert len(models.get_layer(model, f"{inner}/{name}").output.shape) == 4
    assert cam.last_spatial_layer(model) == net.last_conv_layer
    opened = models.unfreeze_top(model, chosen.finetune_top_layers)
    assert len(opened) == chosen.finetune_top_layers
    assert [row.path for row in models.trainable_layers(model) if row.trainable] == opened + ["predictions"]
    assert chosen.finetune_dataset == "horse2zebra" and chosen.finetune_per_class <= 1067  # trainA's size


def test_the_lessons_form_fields_default_to_the_profile():
    """Lesson 08's Colab form fields: well-formed, and the sizes the profile owns read from it."""
    from test_forms import forms_of  # parses each form line as plain Python, or fails
    lines = [form.line for form in forms_of(LESSON)]
    for owned in ("finetune_dataset", "finetune_per_class", "finetune_epochs", "finetune_top_layers"):
        assert sum(line.endswith(f"= profile.{owned}  #@param {{type:\"raw\"}}") for line in lines) == 1, owned
