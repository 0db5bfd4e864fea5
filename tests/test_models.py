import keras
import numpy as np
import pytest

from coursekit import env, models

CAT_CLASSES = {"tabby", "tiger_cat", "Egyptian_cat", "Persian_cat", "Siamese_cat", "lynx"}


def test_mobilenet_sees_a_cat_in_the_cat(mobilenet, cat_batch):
    preds = mobilenet.model.predict(cat_batch, verbose=0)
    top3 = [label for _, label, _ in mobilenet.decode(preds, top=3)[0]]
    assert set(top3) <= CAT_CLASSES, top3
    assert mobilenet.input_size == (128, 128)
    assert mobilenet.class_index(top3[0]) == int(preds[0].argmax())


def test_smoke_profile_uses_mobilenet_v2_which_names_the_bundled_photos(mobilenet_v2):
    """The offline cache's MobileNetV2: cat 0.71 / espresso 0.96 / military uniform 0.82 were
    measured when the weights were made; each top-1 must hold with a probability above 0.5."""
    assert env.PROFILES["smoke"].imagenet_model == "mobilenet_v2"
    assert mobilenet_v2.input_size == (224, 224)
    expected = {"cat": "Egyptian_cat", "coffee": "espresso", "grace_hopper": "military_uniform"}
    photos = mobilenet_v2.preprocess(np.stack([mobilenet_v2.load_image(name) for name in expected]))
    for name, (top,) in zip(expected, mobilenet_v2.decode(mobilenet_v2.model.predict(photos, verbose=0), top=1)):
        assert top[1] == expected[name] and top[2] > 0.5, (name, top)


def test_mobilenet_v2_grad_cam_layer_is_what_the_classifier_reads(mobilenet_v2):
    """out_relu, 7x7x1280, feeds global average pooling then the Dense layer: Grad-CAM there is CAM."""
    model = mobilenet_v2.model
    assert mobilenet_v2.last_conv_layer == "out_relu" == models.last_spatial_layer(model)
    assert tuple(model.get_layer("out_relu").output.shape[1:]) == (7, 7, 1280)
    after = [layer.name for layer in model.layers[[layer.name for layer in model.layers].index("out_relu") + 1:]]
    assert [type(model.get_layer(name)).__name__ for name in after] == \
        ["GlobalAveragePooling2D", "Dense"], after


def test_profile_model_sees_a_cat_and_names_real_layers(profile_model):
    """In smoke this is mobilenet_v2; `COURSEKIT_PROFILE=full make test` checks Xception."""
    cat = profile_model.preprocess(profile_model.load_image("cat"))
    top3 = [label for _, label, _ in profile_model.decode(profile_model.model.predict(cat, verbose=0), top=3)[0]]
    assert set(top3) & CAT_CLASSES and top3[0] in CAT_CLASSES, top3
    model = profile_model.model
    for name in (profile_model.last_conv_layer, *profile_model.feature_layers, *profile_model.pattern_layers):
        assert len(models.require_spatial(model, name).output.shape) == 4
    assert profile_model.last_conv_layer == models.last_spatial_layer(model)


def test_every_spec_names_layers_in_order():
    for name, spec in models.SPECS.items():
        assert spec.last_conv_layer and spec.feature_layers and spec.pattern_layers, name


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="xception, vgg16, mobilenet_025, mobilenet_v2"):
        models.pretrained("resnet50")


def test_missing_weights_offline_give_advice_not_a_url(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(env, "is_online", lambda: False)
    monkeypatch.setenv("COURSEKIT_PROFILE", "quick")
    models._load.cache_clear()
    with pytest.raises(models.WeightsUnavailableError, match="smoke profile") as error:
        models.pretrained("xception")
    assert "http" not in str(error.value) and "cache build keras-cache --profile quick" in str(error.value)
    monkeypatch.setenv("COURSEKIT_PROFILE", "smoke")   # never advise what the student already does
    with pytest.raises(models.WeightsUnavailableError) as error:
        models.pretrained("xception")
    assert "smoke profile" not in str(error.value) and "--profile smoke" in str(error.value)
    models._load.cache_clear()


def test_misspelt_layer_lists_close_names(mobilenet):
    with pytest.raises(ValueError, match="conv_pw_13_relu"):
        models.get_layer(mobilenet.model, "conv_pw13_relu")


def test_two_dimensional_layer_refused_where_a_feature_map_is_needed(mobilenet):
    with pytest.raises(ValueError, match=r"not \(N, H, W, C\).*conv_pw_13_relu"):
        models.require_spatial(mobilenet.model, "predictions")


def test_pre_softmax_gives_the_logits_of_both_endings(mobilenet, cat_batch):
    # MobileNet ends in an Activation("softmax") layer
    logits = models.pre_softmax(mobilenet.model).predict(cat_batch, verbose=0)
    probs = mobilenet.model.predict(cat_batch, verbose=0)
    np.testing.assert_allclose(keras.ops.softmax(logits).numpy(), probs, atol=1e-5)
    # a Dense(..., activation="softmax") ending
    cnn = models.mnist_cnn()
    digits = np.random.default_rng(0).uniform(0, 255, (3, 28, 28, 1)).astype("float32")
    cnn_logits = models.pre_softmax(cnn).predict(digits, verbose=0)
    np.testing.assert_allclose(keras.ops.softmax(cnn_logits).numpy(), cnn.predict(digits, verbose=0), atol=1e-5)
    assert not np.allclose(cnn_logits, cnn.predict(digits, verbose=0))


def test_pre_softmax_shares_weights_and_follows_training():
    cnn = models.mnist_cnn()
    logits_model = models.pre_softmax(cnn)
    assert models.pre_softmax(cnn) is logits_model  # built once per model
    digits = np.random.default_rng(1).uniform(0, 255, (4, 28, 28, 1)).astype("float32")
    before = logits_model.predict(digits, verbose=0)
    kernel, bias = cnn.get_layer("predictions").get_weights()
    cnn.get_layer("predictions").set_weights([kernel * 2, bias + 1])
    after = logits_model.predict(digits, verbose=0)
    np.testing.assert_allclose(keras.ops.softmax(after).numpy(), cnn.predict(digits, verbose=0), atol=1e-5)
    assert not np.allclose(before, after)


def test_last_spatial_layer_skips_global_1x1_maps(mobilenet):
    # MobileNet's pooled (N, 1, 1, C) outputs are 4-D but have no spatial extent left
    assert models.last_spatial_layer(mobilenet.model) == "conv_pw_13_relu"
    assert models.last_spatial_layer(models.mnist_cnn()) == "pool2"


def test_preprocess_refuses_non_rgb(mobilenet):
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        mobilenet.preprocess(np.zeros((2, 128, 128)))


def test_training_the_small_cnn_learns_digits(digits):
    (x_train, y_train), (x_test, y_test) = digits
    env.seed_everything(0)
    model = models.mnist_cnn()
    models.train(model, x_train, y_train, epochs=2)
    assert models.accuracy(model, x_test, y_test) > 0.85
