"""The five architectures, the FLOP counter, the recipes and the augmentation layers (no training)."""

from __future__ import annotations

import re

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import models  # noqa: E402
from models import flops  # noqa: E402
from tasks.train import augment  # noqa: E402
from tasks.train import recipes
from tasks.train import schedules

DOCUMENTED = re.compile(r"10 classes: ([\d,]+) parameters \(([\d,]+) for 100 classes\).*?(\d+) MFLOPs", re.S)


def layers_of(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


@pytest.mark.parametrize("name", models.ARCHITECTURES)
def test_documented_parameters_and_flops_are_the_measured_ones(name):
    """Each module's docstring states its size; building the model must give the same numbers."""
    params_10, params_100, mflops = DOCUMENTED.search(models.module(name).__doc__).groups()
    ten, hundred = models.build(name, num_classes=10), models.build(name, num_classes=100)
    assert ten.count_params() == int(params_10.replace(",", ""))
    assert hundred.count_params() == int(params_100.replace(",", ""))
    assert round(flops.forward_flops(ten) / 1e6) == int(mflops)
    assert ten.output_shape == (None, 10) and hundred.output_shape == (None, 100)


def test_flops_are_twice_the_multiply_adds_of_convs_and_dense_layers():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)  # 8*8*4 outputs x 3*3*3 = 6,912 MACs
    x = keras.layers.Conv2D(2, 1, strides=2)(x)  # 4*4*2 outputs x 4 = 128 MACs
    x = keras.layers.BatchNormalization()(x)  # not counted
    outputs = keras.layers.Dense(5)(keras.layers.Flatten()(x))  # 32 x 5 = 160 MACs
    model = keras.Model(inputs, outputs)
    assert flops.forward_flops(model) == 2 * (6912 + 128 + 160)
    wrapper = keras.Model(inputs, model(inputs))  # nested models are walked into
    assert flops.forward_flops(wrapper) == flops.forward_flops(model)


def test_shallow_is_the_keras_example_cnn():
    model = models.build("shallow")
    convs = layers_of(model, keras.layers.Conv2D)
    assert [conv.filters for conv in convs] == [64, 64, 128, 128]
    assert all(conv.kernel_size == (3, 3) for conv in convs)
    assert len(layers_of(model, keras.layers.MaxPooling2D)) == 2
    assert [dense.units for dense in layers_of(model, keras.layers.Dense)] == [512, 10]


def test_allconv_downsamples_with_strided_convs_and_ends_in_a_1x1_class_conv():
    model = models.build("allconv", num_classes=7)
    convs = layers_of(model, keras.layers.Conv2D)
    assert not layers_of(model, keras.layers.MaxPooling2D) and not layers_of(model, keras.layers.Dense)
    assert [(conv.filters, conv.strides[0]) for conv in convs[:6]] == [
        (96, 1), (96, 1), (96, 2), (192, 1), (192, 1), (192, 2)]
    assert [(conv.filters, conv.kernel_size) for conv in convs[6:]] == [(192, (3, 3)), (192, (1, 1)), (7, (1, 1))]
    assert convs[-1].kernel_size == (1, 1) and convs[-1].filters == 7
    assert not layers_of(model, keras.layers.Dropout)  # the report describes none


def test_resnet_stacks_two_identity_blocks_then_a_projection_block():
    model = models.build("resnet")
    adds = layers_of(model, keras.layers.Add)
    projections = [conv for conv in layers_of(model, keras.layers.Conv2D) if conv.kernel_size == (1, 1)]
    assert len(adds) == 8  # (identity, identity, projection) x 2, then identity, identity
    assert [conv.strides[0] for conv in projections] == [2, 2]
    convs = layers_of(model, keras.layers.Conv2D)
    three_by_three = [conv.filters for conv in convs if conv.kernel_size == (3, 3)]
    # stem, then per stage 2 identity blocks (2 convs each) and the projection block's 2 convs
    assert three_by_three == [32] + [32] * 4 + [64] * 2 + [64] * 4 + [128] * 2 + [128] * 4
    assert [dense.units for dense in layers_of(model, keras.layers.Dense)] == [10]  # no hidden head
    assert not layers_of(model, keras.layers.Dropout)  # the report describes none


def test_vgg16_has_13_batch_normed_convs_dropout_after_every_pool_and_one_dense_512():
    model = models.build("vgg16")
    convs = layers_of(model, keras.layers.Conv2D)
    assert [conv.filters for conv in convs] == [16] * 2 + [32] * 2 + [64] * 3 + [128] * 3 + [128] * 3
    names = [type(layer).__name__ for layer in model.layers]
    for index, name in enumerate(names):
        if name == "Conv2D":
            assert names[index + 1] == "BatchNormalization"
        if name == "MaxPooling2D":
            assert names[index + 1] == "Dropout"
    assert [dense.units for dense in layers_of(model, keras.layers.Dense)] == [512, 10]


def test_resnet9_is_the_myrtle_network():
    model = models.build("resnet9")
    assert [conv.filters for conv in layers_of(model, keras.layers.Conv2D)] == [64, 128, 128, 128, 256, 512, 512, 512]
    assert len(layers_of(model, keras.layers.Add)) == 2
    assert all(bn.momentum == pytest.approx(0.9) for bn in layers_of(model, keras.layers.BatchNormalization))


def test_airbench_is_whitening_then_three_conv_groups():
    model = models.build("airbench")
    convs = layers_of(model, keras.layers.Conv2D)
    whiten = model.get_layer("whiten")
    assert (whiten.kernel_size, whiten.filters, whiten.padding) == ((2, 2), 24, "valid")
    assert not whiten.kernel.trainable and whiten.bias.trainable  # only its bias learns
    assert [conv.filters for conv in convs[1:]] == [64, 64, 256, 256, 256, 256]
    norms = layers_of(model, keras.layers.BatchNormalization)
    assert len(norms) == 6 and all(not bn.scale and bn.center and bn.momentum == pytest.approx(0.6) for bn in norms)
    assert len(layers_of(model, keras.layers.MaxPooling2D)) == 3
    # partial identity: the first in_channels filters of each 3x3 conv pass their channel through
    kernel = np.asarray(model.get_layer("group2_conv1").kernel)
    identity = np.zeros((3, 3, 64, 64), dtype="float32")
    identity[1, 1, np.arange(64), np.arange(64)] = 1
    np.testing.assert_array_equal(kernel[:, :, :, :64], identity)


AIRBENCH96 = {"widths": [128, 512, 512], "residual": True, "batch_norm_momentum": 0.9}


def test_airbench96_groups_add_their_first_activation_to_a_third_conv():
    model = models.build("airbench", overrides=AIRBENCH96)
    convs = layers_of(model, keras.layers.Conv2D)
    assert [conv.filters for conv in convs[1:]] == [128] * 3 + [512] * 3 + [512] * 3
    norms = layers_of(model, keras.layers.BatchNormalization)
    assert len(norms) == 9 and all(not bn.scale and bn.momentum == pytest.approx(0.9) for bn in norms)
    adds = layers_of(model, keras.layers.Add)
    assert len(adds) == 3

    def source(tensor):
        return tensor._keras_history.operation

    for index, add in enumerate(adds, start=1):
        # GELU(norm1) feeds conv2 and the sum; GELU(norm2) feeds conv3; norm3 + shortcut goes through a GELU
        norm3, shortcut = sorted(add.input, key=lambda tensor: source(tensor).name != f"group{index}_norm3")
        assert source(norm3).name == f"group{index}_norm3"
        assert model.get_layer(f"group{index}_conv2").input is shortcut
        assert source(shortcut).activation.__name__ == "gelu"
        assert source(source(shortcut).input).name == f"group{index}_norm1"
        conv3_input = source(model.get_layer(f"group{index}_conv3").input)
        assert conv3_input.activation.__name__ == "gelu" and source(conv3_input.input).name == f"group{index}_norm2"
        after = [layer for layer in model.layers if getattr(layer, "input", None) is add.output]
        assert len(after) == 1 and after[0].activation.__name__ == "gelu"
    # the documented size of airbench96's network (models/airbench.py)
    assert model.count_params() == 12_724_670 and round(flops.forward_flops(model) / 1e6) == 1230
    assert models.build("airbench", overrides={"widths": [128, 384, 384]}).count_params() == 4_608_318


def test_airbench_whitening_decorrelates_training_patches():
    from models import airbench
    from models.layers import preprocessing_layer

    rng = np.random.default_rng(0)
    smooth = rng.integers(0, 256, (600, 8, 8, 3)).astype("float32")
    images = np.kron(smooth, np.ones((1, 4, 4, 1), dtype="float32")).astype("uint8")  # correlated neighbours
    model = models.build("airbench")
    preprocessing_layer(model).fit_statistics(images)
    airbench.init_whitening(model, images)
    standardised = np.asarray(model.get_layer("preprocess")(images.astype("float32")))
    kernel = np.asarray(model.get_layer("whiten").kernel)[:, :, :, :12].reshape(12, 12)
    patches = np.lib.stride_tricks.sliding_window_view(standardised, (2, 2), axis=(1, 2))
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12)
    whitened = patches @ kernel
    covariance = whitened.T @ whitened / len(whitened)
    np.testing.assert_allclose(covariance, np.eye(12), atol=0.05)


def test_unknown_architecture_and_config_field_are_refused_with_the_choices():
    with pytest.raises(models.UnknownArchitecture, match="resnet9"):
        models.build("resnet50")
    with pytest.raises(ValueError, match="block_filters"):
        models.build("vgg16", overrides={"widths": [1]})
    assert models.config_for("vgg16", {"block_filters": [8, 8, 8, 8, 8]}).block_filters == (8,) * 5
    assert models.config_for("shallow", {"block_filters": [32]}).block_filters == (32,)  # tuple[int, ...]
    # a value of another kind than the field's is refused, not trained on
    for overrides, problem in (({"residual": "maybe"}, "expected true or false"),
                               ({"widths": [16, 32]}, "expected 3 items, as tuple[int, int, int] declares"),
                               ({"widths": ["a", 2, 3]}, "expected a list like [64, 256, 256]"),
                               ({"whiten_kernel": 2.5}, "expected int"),
                               ({"batch_norm_momentum": True}, "expected float")):
        with pytest.raises(ValueError, match=re.escape(problem)):
            models.config_for("airbench", overrides)
    assert models.config_for("airbench", {"logit_scale": 1}).logit_scale == 1  # int for float


def test_models_take_raw_pixels_and_give_probabilities():
    model = models.build("vgg16")
    probabilities = np.asarray(model.predict_on_batch(np.full((2, 32, 32, 3), 200, dtype="float32")))
    assert probabilities.shape == (2, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_the_seed_recipe_is_the_reports():
    shallow, resnet, vgg16 = (recipes.recipe_for("seed", name) for name in ("shallow", "resnet", "vgg16"))
    assert (shallow.learning_rate, shallow.schedule, shallow.weight_decay) == (1e-4, "constant", 0.0)
    assert recipes.recipe_for("seed", "allconv").learning_rate == 1e-4
    assert resnet.learning_rate == 1e-3 and resnet.schedule == "epoch_steps"
    assert resnet.step_rates == ((7, 1e-4), (16, 7e-5), (30, 7e-6))  # epochs 1-7 / 8-16 / 17-30 / after
    # VGG16: Keras L2(5e-4) on kernels is a coupled gradient term of 1e-3 * w, not AdamW's decay
    assert (vgg16.learning_rate, vgg16.schedule, vgg16.weight_decay, vgg16.l2) == (1e-3, "plateau", 0.0, 1e-3)
    assert (shallow.epochs, vgg16.epochs) == (250, 250)
    assert set(shallow.augment) == {"flip", "rotate", "hue", "saturation", "noise"}
    assert shallow.tta == "none" and shallow.label_smoothing == 0


def test_the_fast_recipe_is_crop_flip_smoothing_nesterov_one_cycle_and_tta():
    fast = recipes.recipe_for("fast", "resnet9")
    assert set(fast.augment) == {"crop", "flip"} and fast.label_smoothing > 0
    assert (fast.optimizer, fast.schedule, fast.tta) == ("sgd", "one_cycle", "flip")
    assert recipes.recipe_for("fast", "vgg16", {"batch_size": 32, "augment": ["flip"]}).augment == ("flip",)
    with pytest.raises(ValueError, match="no field batch"):
        recipes.recipe_for("fast", "vgg16", {"batch": 32})
    with pytest.raises(ValueError, match="unknown recipe"):
        recipes.recipe_for("slow", "vgg16")


def test_epoch_steps_change_the_rate_at_the_reports_epochs():
    schedule = schedules.build(recipes.recipe_for("seed", "resnet"), steps_per_epoch=10, epochs=40)
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 69, 71, 159, 161, 299, 301)]
    assert rates == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 7e-5, 7e-5, 7e-6])


def test_triangle_is_airbenchs_schedule():
    schedule = schedules.Triangle(peak=1.5, total_steps=100, warmup_fraction=0.23)
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 23, 100)]
    assert rates == pytest.approx([0.3, 1.5, 0.105], rel=1e-5)


def test_airbench96_recipe_is_its_reference_in_this_projects_units():
    """airbench96.py (2024-06-13): rate 9.0 and decay 0.012 per 1,024 images of summed loss, warm-up over
    10% of the steps from 0.2 x the peak, warm-down to 0, translate 4, cutout 12, 31 epochs."""
    recipe = recipes.recipe_for("airbench96", "airbench")
    airbench94 = recipes.recipe_for("airbench", "airbench")
    assert recipe.learning_rate / airbench94.learning_rate == pytest.approx(9.0 / 11.5)
    assert recipe.l2 == pytest.approx(0.012 / 9.0) and airbench94.l2 == pytest.approx(0.0153 / 11.5)
    assert recipe.augment == ("alternating_flip", "translate4", "cutout12") and recipe.epochs == 31
    assert (recipe.momentum, recipe.batch_size, recipe.label_smoothing, recipe.tta) == (
        0.85, 1024, 0.2, "flip_translate")
    schedule = schedules.build(recipe, steps_per_epoch=10, epochs=10)
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 5, 10, 55, 100)]
    peak = recipe.learning_rate
    assert rates == pytest.approx([0.2 * peak, 0.6 * peak, peak, 0.5 * peak, 0.0], abs=1e-6)
    # airbench94's triangle is unchanged: 0.2 -> 1 -> 0.07 of the peak
    assert float(keras.ops.convert_to_numpy(schedules.build(airbench94, 10, 10)(100))) == pytest.approx(
        0.07 * airbench94.learning_rate)


def test_one_cycle_rises_to_the_peak_then_falls_to_zero():
    schedule = schedules.OneCycle(peak=0.4, total_steps=100, warmup_fraction=0.2)
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 10, 20, 60, 100)]
    assert rates == pytest.approx([0.04, 0.22, 0.4, 0.2, 0.0], abs=1e-6)


def test_random_pad_crop_shifts_whole_pixels_in_training_only():
    images = np.arange(2 * 32 * 32 * 3, dtype="float32").reshape(2, 32, 32, 3)
    layer = augment.RandomPadCrop(4, seed=3)
    np.testing.assert_array_equal(np.asarray(layer(images, training=False)), images)
    cropped = np.asarray(layer(images, training=True))
    padded = np.pad(images, [[0, 0], [4, 4], [4, 4], [0, 0]], mode="reflect")
    for index in range(2):
        windows = [(top, left) for top in range(9) for left in range(9)
                   if np.array_equal(padded[index, top:top + 32, left:left + 32], cropped[index])]
        assert windows, "every crop is a window of the reflected padding"


def test_pixel_noise_is_in_pixel_units_and_off_at_inference():
    images = np.full((4, 32, 32, 3), 128.0, dtype="float32")
    layer = augment.PixelNoise(4.0, seed=1)
    np.testing.assert_array_equal(np.asarray(layer(images, training=False)), images)
    assert np.std(np.asarray(layer(images, training=True)) - images) == pytest.approx(4.0, rel=0.1)


def test_every_augmentation_builds_and_keeps_the_pixel_range():
    inputs = keras.Input((32, 32, 3))
    identity = keras.Model(inputs, keras.layers.Identity()(inputs))  # shows what a model would receive
    augmenting = augment.training_model(identity, augment.AUGMENTATIONS)
    out = np.asarray(augmenting(np.full((2, 32, 32, 3), 250, dtype="float32"), training=True))
    assert out.shape == (2, 32, 32, 3) and out.min() >= 0 and out.max() <= 255
    with pytest.raises(ValueError, match="choose from"):
        augment.layers_for(("zoom",))
