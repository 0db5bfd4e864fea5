import keras
import numpy as np
import pytest

from coursekit import features, models


def tiny_stack():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, name="conv3")(inputs)                         # valid, stride 1
    x = keras.layers.MaxPooling2D(2, name="pool")(x)                             # stride 2
    x = keras.layers.Conv2D(4, 3, dilation_rate=2, padding="same", name="dilated")(x)
    x = keras.layers.Conv2D(5, 3, strides=2, padding="same", name="strided")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="out")(x))


def test_receptive_fields_of_a_small_stack_by_hand():
    model = tiny_stack()
    rf = {name: features.receptive_field(model, name) for name in ("conv3", "pool", "dilated", "strided")}
    assert rf["conv3"] == features.ReceptiveField(size=3, jump=1, start=0)
    assert rf["pool"] == features.ReceptiveField(size=4, jump=2, start=0)
    # dilation 2 makes the 3x3 kernel span 5 pooled units = 4 * jump 2 more pixels; 'same' pads 2 units
    assert rf["dilated"] == features.ReceptiveField(size=4 + 4 * 2, jump=2, start=0 - 2 * 2)
    # stride 2, 'same': TensorFlow pads 0 before and 1 after on an even input
    assert rf["strided"] == features.ReceptiveField(size=12 + 2 * 2, jump=4, start=-4)


def test_receptive_field_refuses_a_flat_layer():
    with pytest.raises(ValueError, match="not \\(N, H, W, C\\)"):
        features.receptive_field(tiny_stack(), "gap")


def test_vgg16_receptive_fields():
    vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(224, 224, 3))
    conv = features.receptive_field(vgg, "block5_conv3")
    pool = features.receptive_field(vgg, "block5_pool")
    assert (conv.size, conv.jump) == (196, 16)
    assert (pool.size, pool.jump) == (212, 32)


def test_receptive_field_grows_with_depth_on_mobilenet(mobilenet):
    sizes = [features.receptive_field(mobilenet.model, name).size for name in mobilenet.feature_layers]
    assert sizes == sorted(sizes) and sizes[0] == 3 and sizes[-1] > 128


def test_tile_channels_puts_channel_k_at_its_row_and_column():
    height, width, channels, per_row = 5, 7, 37, 8  # 37 is not a multiple of 8
    for k in (0, 9, 36):
        fmap = np.zeros((height, width, channels), dtype="float32")
        fmap[2, 3, k] = 1.0  # a marker pixel in channel k only
        grid = features.tile_channels(fmap, per_row=per_row, gap=1, normalize=False, gap_value=-1)
        row, col = divmod(k, per_row)
        assert grid.shape == (5 * (height + 1) - 1, per_row * (width + 1) - 1)
        assert grid[row * (height + 1) + 2, col * (width + 1) + 3] == 1.0
        assert (grid == 1.0).sum() == 1


def test_tile_channels_keeps_every_channel_when_not_a_multiple_of_per_row():
    fmap = np.random.default_rng(0).uniform(1, 2, (4, 4, 20)).astype("float32")
    grid = features.tile_channels(fmap, per_row=16, gap=0, normalize=False)
    assert grid.shape == (8, 64)
    assert np.count_nonzero(grid) == 20 * 16  # 20 filled tiles, 12 blank ones


def test_tile_channels_draws_zero_darkest_and_each_channel_up_to_its_own_maximum():
    rng = np.random.default_rng(1)
    relu_like = np.maximum(rng.normal(size=(6, 6, 4)), 0).astype("float32") * [1.0, 100.0, 0.0, 1.0]
    relu_like[..., 3] = 0.0
    relu_like[2, 3, 3] = 0.5                       # zero everywhere but one pixel
    grid = features.tile_channels(relu_like, per_row=4, gap=0)
    tiles = [grid[:, 6 * c:6 * (c + 1)] for c in range(4)]
    assert 0 <= grid.min() and grid.max() <= 1
    for c in (0, 1, 3):                            # zero is 0 (darkest), the channel's maximum is 1
        assert np.all(tiles[c][relu_like[..., c] == 0] == 0) and tiles[c].max() == 1
    assert np.allclose(features.normalize_channels(relu_like[..., :1] * 100),   # a channel's scale
                       features.normalize_channels(relu_like[..., :1]))           # does not matter
    assert np.all(tiles[2] == 0)                   # a blank channel stays dark
    assert np.count_nonzero(tiles[3]) == 1         # one lit pixel, not a lit tile


def test_normalize_channels_keeps_the_order_of_signed_values_and_lights_a_constant_channel():
    signed = np.stack([np.linspace(-2, 1, 9).reshape(3, 3), np.full((3, 3), 0.3)], axis=-1).astype("float32")
    scaled = features.normalize_channels(signed)
    assert scaled[..., 0].min() == 0 and scaled[..., 0].max() == 1        # lowest value to highest
    assert np.all(np.diff(scaled[..., 0].ravel()) > 0)
    assert np.all(scaled[..., 1] == 1)             # constant above zero: a bright tile, not a blank one


def test_tile_channels_refuses_a_dense_output():
    with pytest.raises(ValueError, match="Dense or pooling"):
        features.tile_channels(np.zeros((1, 128)))


def test_feature_maps_equal_running_the_sub_model_by_hand(mobilenet, cat_batch):
    names = ["conv1_relu", "conv_pw_5_relu"]
    maps = features.feature_maps(mobilenet.model, cat_batch, layers=names)
    for name in names:
        by_hand = keras.Model(mobilenet.model.input, mobilenet.model.get_layer(name).output)(cat_batch)
        np.testing.assert_allclose(maps[name], np.asarray(by_hand), rtol=1e-4, atol=1e-4)
    assert list(maps) == names and maps["conv1_relu"].shape == (1, 64, 64, 8)


def test_default_feature_layers_are_convolutions_and_pooling():
    model = models.mnist_cnn()
    assert features.default_feature_layers(model) == ["conv1", "pool1", "conv2", "pool2"]
    maps = features.feature_maps(model, np.zeros((2, 28, 28, 1)))
    assert [m.shape for m in maps.values()] == [(2, 28, 28, 16), (2, 14, 14, 16), (2, 14, 14, 32), (2, 7, 7, 32)]


def test_feature_maps_bad_input(mobilenet, cat_batch):
    with pytest.raises(ValueError, match="conv_pw_1_relu"):
        features.feature_maps(mobilenet.model, cat_batch, layers=["conv_pw1_relu"])
    with pytest.raises(ValueError, match=r"\(N, 128, 128, 3\).*Resize"):
        features.feature_maps(mobilenet.model, np.zeros((1, 100, 100, 3)))


# ----------------------------------------------------------------------------- top_activating

def unit_model():
    """Dense units that copy their input, and 1x1 conv channels that copy theirs."""
    flat_in = keras.Input((4,))
    flat = keras.Model(flat_in, keras.layers.Dense(4, use_bias=False, name="units",
                                                   kernel_initializer="identity")(flat_in))
    map_in = keras.Input((5, 5, 2))
    conv = keras.layers.Conv2D(2, 1, use_bias=False, name="channels",
                               kernel_initializer=keras.initializers.Constant(np.eye(2)[None, None]))
    return flat, keras.Model(map_in, conv(map_in))


def test_top_activating_orders_images_per_dense_unit():
    flat, _ = unit_model()
    images = np.random.default_rng(0).normal(size=(20, 4)).astype("float32")
    top = features.top_activating(flat, "units", images, k=3)
    assert top.shape == (4, 3)
    for unit in range(4):
        assert top[unit].tolist() == np.argsort(-images[:, unit])[:3].tolist()


def test_top_activating_uses_a_channels_strongest_pixel():
    _, conv = unit_model()
    images = np.zeros((6, 5, 5, 2), "float32")
    images[4, 2, 3, 0] = 9.0   # one bright pixel beats ...
    images[1, :, :, 0] = 1.0   # ... a whole map of weak ones
    images[2, 0, 0, 1] = 5.0
    top = features.top_activating(conv, "channels", images, k=2)
    assert top[0].tolist() == [4, 1] and top[1, 0] == 2


def test_top_activating_refuses_k_beyond_the_images():
    flat, _ = unit_model()
    with pytest.raises(ValueError, match="more than the 5 images"):
        features.top_activating(flat, "units", np.zeros((5, 4)), k=6)
    with pytest.raises(ValueError, match="k must be"):
        features.top_activating(flat, "units", np.zeros((5, 4)), k=0)


def test_feature_maps_of_many_layer_sets_do_not_warn_about_retracing(caplog):
    # Lesson 01 asks for the maps of several layer sets in turn; each set is a model of its own,
    # traced once. TensorFlow warned "triggered tf.function retracing" when those traces shared
    # one Python function.
    model = tiny_stack()
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    layer_sets = [["conv3"], ["pool"], ["dilated"], ["strided"], ["conv3", "pool"], ["pool", "dilated"],
                  ["dilated", "strided"], ["conv3", "strided"]]
    with caplog.at_level("WARNING", logger="tensorflow"):
        for layers in layer_sets:
            maps = features.feature_maps(model, images, layers=layers)
            assert list(maps) == layers
    assert not [record for record in caplog.records if "retracing" in record.getMessage()]
