"""Transfer learning: a pretrained backbone nested in a model of one's own (coursekit.models), and
the layer walking of sanity checks and receptive fields through such nesting."""
import keras
import numpy as np
import pytest

from conftest import load_pretrained
from coursekit import cam, features, models, saliency, sanity


@pytest.fixture(scope="module")
def net() -> models.Pretrained:
    """MobileNetV2 (224 px, real ImageNet weights) without its classifier."""
    return load_pretrained("mobilenet_v2", include_top=False)


@pytest.fixture(scope="module")
def backbone(net) -> keras.Model:
    return net.model


def tiny_backbone(name="tiny_backbone"):
    """A small convolutional 'backbone' (16x16x3 -> 4x4x8) for tests that train."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    x = keras.layers.MaxPooling2D(2, name="pool_a")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv_b")(x)
    return keras.Model(inputs, x, name=name)


def weights_of(model):
    return [w.copy() for w in model.get_weights()]


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


# ----------------------------------------------------------------------------- building the model

@pytest.mark.parametrize("sequential", [False, True])
def test_transfer_model_nests_a_copy_of_the_backbone_and_adds_a_head(net, backbone, sequential):
    model = models.transfer_model(net, 3, sequential=sequential)
    assert isinstance(model, keras.Sequential) == sequential
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    assert len(nested) == 1 and nested[0].name == backbone.name and nested[0] is not backbone
    assert same(nested[0].get_weights(), backbone.get_weights())
    assert tuple(model.outputs[0].shape) == (None, 3) and tuple(model.inputs[0].shape) == (None, 224, 224, 3)
    # the nested copy computes what the backbone does
    images = np.random.default_rng(0).uniform(-1, 1, (2, 224, 224, 3)).astype("float32")
    np.testing.assert_allclose(nested[0].predict(images, verbose=0), backbone.predict(images, verbose=0), atol=1e-5)
    np.testing.assert_allclose(model.predict(images, verbose=0).sum(axis=1), 1.0, atol=1e-5)


def test_frozen_backbone_reports_only_the_head_as_trainable_and_unfreeze_top_opens_its_top(net, backbone):
    model = models.transfer_model(net, 2)
    rows = models.trainable_layers(model)
    assert [row.path for row in rows if row.trainable] == ["predictions"]
    assert len(rows) == 1 + sum(1 for layer in backbone.layers if layer.weights)
    assert all(row.path.startswith(f"{backbone.name}/") for row in rows[:-1])
    assert sum(row.params for row in rows) == model.count_params()

    opened = models.unfreeze_top(model, 3)
    assert opened == [f"{backbone.name}/{name}" for name in ("block_16_depthwise", "block_16_project", "Conv_1")]
    assert [row.path for row in models.trainable_layers(model) if row.trainable] == opened + ["predictions"]
    learnt = sum(np.prod(w.shape) for w in model.trainable_weights)
    assert learnt == sum(row.params for row in models.trainable_layers(model) if row.trainable)
    assert "4 of" in models.describe_trainable(model)
    with pytest.raises(ValueError, match="from 0 to"):
        models.unfreeze_top(model, 10_000)


def test_transfer_model_errors_say_what_came_in(backbone):
    with pytest.raises(ValueError, match="n_classes must be a whole number >= 2"):
        models.transfer_model(backbone, 1)
    classifier = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="include_top=False"):
        models.transfer_model(classifier, 2)
    with pytest.raises(TypeError, match="model name"):
        models.transfer_model(np.zeros(3), 2)
    any_size = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(2, 3)])
    with pytest.raises(ValueError, match="input_size"):
        models.transfer_model(any_size, 2)
    assert models.transfer_model(any_size, 2, input_size=(32, 40)).inputs[0].shape[1:3] == (32, 40)


# ----------------------------------------------------------------------------- training, saving, loading

def toy_data(seed=0, count=64):
    """Class 1 has a bright square in the top-left corner; class 0 does not."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0, 0.3, (count, 16, 16, 3)).astype("float32")
    labels = rng.integers(0, 2, count)
    images[labels == 1, :6, :6] += 2.0
    return images, labels


def validation_loss(model, images, labels):
    probabilities = model.predict(images, verbose=0)
    return float(keras.losses.sparse_categorical_crossentropy(labels, probabilities).numpy().mean())


def test_training_stops_early_keeps_the_best_weights_and_checkpoints_them(tmp_path):
    keras.utils.set_random_seed(0)
    tiny = tiny_backbone()
    before = weights_of(tiny)
    model = models.transfer_model(tiny, 2, trainable=True, dropout=0.0)
    (x, y), (x_val, y_val) = toy_data(0), toy_data(1, 32)
    # a learning rate far too high makes the validation loss jump around: early stopping must act
    run = models.train_with_callbacks(model, x, y, (x_val, y_val), epochs=12, batch_size=16, patience=2,
                                      learning_rate=0.3, checkpoint=tmp_path / "best.keras")
    assert run.epochs_run == len(run.history["val_loss"]) <= 12
    assert run.best_val_loss == min(run.history["val_loss"])
    assert run.epochs_run < 12 and run.epochs_run == run.best_epoch + 2  # stopped `patience` epochs after the best
    assert same(tiny.get_weights(), before)  # the backbone given was copied, never trained
    assert validation_loss(model, x_val, y_val) == pytest.approx(run.best_val_loss, rel=1e-4)  # best restored
    saved = models.load_model(run.checkpoint)
    assert validation_loss(saved, x_val, y_val) == pytest.approx(run.best_val_loss, rel=1e-4)


def test_a_frozen_backbone_does_not_change_while_the_head_learns():
    keras.utils.set_random_seed(1)
    model = models.transfer_model(tiny_backbone(), 2, dropout=0.0)
    inner = model.layers[1]
    before_backbone, before_head = weights_of(inner), weights_of(model.get_layer("predictions"))
    (x, y), validation = toy_data(2), toy_data(3, 16)
    run = models.train_with_callbacks(model, x, y, validation, epochs=3, batch_size=16, patience=5)
    assert run.epochs_run == 3 and run.checkpoint is None
    assert same(inner.get_weights(), before_backbone)  # batch-norm statistics included
    assert not same(model.get_layer("predictions").get_weights(), before_head)


def test_training_input_errors(tmp_path):
    model = models.transfer_model(tiny_backbone(), 2)
    x, y = toy_data(0, 8)
    with pytest.raises(ValueError, match="one label per image"):
        models.train_with_callbacks(model, x, y[:5], (x, y), epochs=1)
    with pytest.raises(ValueError, match=r"\.keras"):
        models.train_with_callbacks(model, x, y, (x, y), epochs=1, checkpoint=tmp_path / "best.h5")
    with pytest.raises(ValueError, match="epochs"):
        models.train_with_callbacks(model, x, y, (x, y), epochs=0)


@pytest.mark.parametrize("sequential", [False, True])
def test_saved_and_reloaded_model_predicts_the_same(net, backbone, tmp_path, sequential):
    keras.utils.set_random_seed(2)
    model = models.transfer_model(net, 2, sequential=sequential)
    images = np.random.default_rng(3).uniform(-1, 1, (3, 224, 224, 3)).astype("float32")
    path = models.save_model(model, tmp_path / "fine_tuned.keras")
    reloaded = models.load_model(path)
    assert type(reloaded) is type(model) and [layer.name for layer in reloaded.layers] == [layer.name for layer in model.layers]
    # tolerance: the same float32 graph with the same weights; only the kernels' summation order may differ
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    assert [row.trainable for row in models.trainable_layers(reloaded)] == \
        [row.trainable for row in models.trainable_layers(model)]
    # Grad-CAM through the nesting, at the default layer and at an earlier one; maps are in [0, 1]
    assert cam.last_spatial_layer(reloaded) == cam.last_spatial_layer(model) == "out_relu"
    for layer in (None, f"{backbone.name}/block_13_expand_relu"):
        original, again = cam.grad_cam(model, images, layer=layer), cam.grad_cam(reloaded, images, layer=layer)
        assert original.shape == (3, 224, 224) and original.max() == pytest.approx(1.0)
        np.testing.assert_allclose(again, original, atol=1e-4)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        models.save_model(model, path)
    with pytest.raises(ValueError, match=r"\.keras"):
        models.save_model(model, tmp_path / "model.h5")
    with pytest.raises(FileNotFoundError, match="No saved model"):
        models.load_model(tmp_path / "missing.keras")


def small_sequential_cnn() -> keras.Model:
    return keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="conv_a"),
                             keras.layers.Conv2D(6, 3, activation="relu", name="conv_b"),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])


@pytest.mark.parametrize("loader", ["coursekit", "keras"])
def test_a_reloaded_sequential_model_explains_as_the_original(tmp_path, loader):
    """Keras rebuilds a Sequential model once per layer when it loads one, which left the first layers'
    ``layer.output`` off the path to the output: Grad-CAM there raised a TensorFlow error."""
    keras.utils.set_random_seed(4)
    model = small_sequential_cnn()
    path = models.save_model(model, tmp_path / "cnn.keras")
    keras_own = vars(keras.Sequential)["from_config"]
    reloaded = models.load_model(path) if loader == "coursekit" else keras.models.load_model(path)
    assert vars(keras.Sequential)["from_config"] is keras_own   # Keras' loading is left as it was
    images = np.random.default_rng(5).normal(size=(2, 16, 16, 3)).astype("float32")
    for layer in ("conv_a", "conv_b"):
        # tolerance: the same float32 graph with the same weights
        np.testing.assert_allclose(cam.grad_cam(reloaded, images, class_index=1, layer=layer, upsample=False),
                                   cam.grad_cam(model, images, class_index=1, layer=layer, upsample=False), atol=1e-5)
        np.testing.assert_allclose(features.feature_maps(reloaded, images, layer)[layer],
                                   features.feature_maps(model, images, layer)[layer], atol=1e-5)
    if loader == "coursekit":   # its layers' own tensors lead to the output too, as in the original
        import tensorflow as tf
        both = keras.Model(reloaded.inputs, [reloaded.get_layer("conv_a").output, reloaded.outputs[0]])
        with tf.GradientTape() as tape:
            maps, probabilities = both(images)
            score = tf.reduce_sum(probabilities[:, 1])
        assert tape.gradient(score, maps) is not None


# ----------------------------------------------------------------------------- walking nested models

@pytest.mark.parametrize("sequential", [False, True])
def test_receptive_fields_through_the_nesting_equal_the_backbones_own(net, backbone, sequential):
    model = models.transfer_model(net, 2, sequential=sequential)
    for name in ("Conv1", "block_2_add", "block_6_depthwise", "block_13_expand", "Conv_1"):
        assert features.receptive_field(model, f"{backbone.name}/{name}") == features.receptive_field(backbone, name)
    assert features.receptive_field(backbone, "Conv_1").jump == 32


def test_receptive_field_two_levels_deep():
    tiny = tiny_backbone()
    middle = keras.Sequential([keras.Input((16, 16, 3)), tiny, keras.layers.Conv2D(2, 3, name="conv_c")], name="middle")
    inputs = keras.Input((16, 16, 3))
    outer = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(middle(inputs)))
    flat = keras.Model(tiny.inputs, keras.layers.Conv2D(2, 3, name="conv_c")(tiny.outputs[0]))
    for path, name in (("middle/tiny_backbone/conv_b", "conv_b"), ("middle/conv_c", "conv_c")):
        assert features.receptive_field(outer, path) == features.receptive_field(flat, name)


@pytest.mark.parametrize("sequential", [False, True])
def test_randomising_layers_inside_a_nested_backbone_changes_the_copy_only(net, backbone, sequential):
    model = models.transfer_model(net, 2, sequential=sequential)
    names = sanity.weighted_layers(model)
    assert names[0] == "predictions" and names[1:] == [f"{backbone.name}/{n}" for n in sanity.weighted_layers(backbone)]
    before, backbone_before = weights_of(model), weights_of(backbone)
    copy = sanity.randomize_layers(model, 4)
    assert same(model.get_weights(), before) and same(backbone.get_weights(), backbone_before)
    changed = [name for name in names if not same(models.get_layer(copy, name).get_weights(),
                                                  models.get_layer(model, name).get_weights())]
    assert changed == names[:4]
    assert sanity.cascade_points(model, 3)[-1] == len(names)
    points = sanity.cascade_points(model, 3)[:2]
    for n, working in sanity.cascade(model, points):
        reference = sanity.randomize_layers(model, n)
        assert all(same(models.get_layer(working, name).get_weights(), models.get_layer(reference, name).get_weights())
                   for name in names[:n + 2])
    assert same(model.get_weights(), before)


@pytest.mark.parametrize("sequential", [False, True])
def test_the_randomisation_cascade_through_the_nesting_equals_the_flat_model(net, backbone, sequential):
    """Same layers (the same objects) run nested and flat: the cascade randomises the same weights
    in the same order, and saliency of every step agrees (Pearson >= 0.999 per map)."""
    keras.utils.set_random_seed(3)
    pooling = keras.layers.GlobalAveragePooling2D(name="pool")
    head = keras.layers.Dense(3, activation="softmax", name="head")
    if sequential:
        nested = keras.Sequential([keras.Input((224, 224, 3)), backbone, pooling, head])
    else:
        inputs = keras.Input((224, 224, 3))
        nested = keras.Model(inputs, head(pooling(backbone(inputs))))
    flat = keras.Model(backbone.input, head(pooling(backbone.output)))
    nested_names, flat_names = sanity.weighted_layers(nested), sanity.weighted_layers(flat)
    assert [name.rsplit("/", 1)[-1] for name in nested_names] == flat_names
    assert all(name.startswith(f"{backbone.name}/") for name in nested_names[1:])
    points = sanity.cascade_points(flat, 2)                    # the output layer alone, then every layer
    assert sanity.cascade_points(nested, 2) == points == [1, len(flat_names)]
    photos = net.preprocess(np.stack([net.load_image(name) for name in ("cat", "coffee")]))
    before = weights_of(backbone)
    for (n, a), (m, b) in zip(sanity.cascade(nested, points), sanity.cascade(flat, points)):
        assert n == m
        assert all(same(models.get_layer(a, p).get_weights(), models.get_layer(b, q).get_weights())
                   for p, q in zip(nested_names, flat_names))
        ours, reference = (saliency.vanilla_saliency(x, photos, class_index=0) for x in (a, b))
        assert all(np.corrcoef(u.ravel(), v.ravel())[0, 1] >= 0.999 for u, v in zip(ours, reference)), n
    assert same(backbone.get_weights(), before)  # the shared backbone itself was never randomised
