"""The airbench recipe's parts: host-side batches (alternating flip, translation, outlier exposure) and
its optimizer (coupled L2, batch-norm bias rate, timed whitening bias, lookahead), on tiny inputs."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from tasks.train import batches  # noqa: E402
from tasks.train.optimizers import AirbenchSGD  # noqa: E402


def numbered_images(count: int) -> np.ndarray:
    """Image i has pixel value i at its left column and 0 elsewhere, so a mirror is visible."""
    images = np.zeros((count, 8, 8, 1), dtype=np.uint8)
    images[:, :, 0, 0] = np.arange(count)[:, None]
    return images


def test_alternating_flip_mirrors_the_other_images_every_other_epoch():
    images = numbered_images(64)
    loader = batches.AugmentedBatches(images, np.zeros(64), 2, batch_size=64, translate_pixels=0, seed=1)

    def mirrored_ids():
        batch, _ = loader[0]
        ids = np.maximum(batch[:, 0, 0, 0], batch[:, 0, -1, 0]).astype(int)
        return set(ids[batch[:, 0, -1, 0] > 0].tolist()) | ({0} if batch[0, 0, -1, 0] else set())

    first = {index for index in range(1, 64) if index in mirrored_ids()}
    loader.on_epoch_end()
    second = {index for index in range(1, 64) if index in mirrored_ids()}
    assert 10 < len(first) < 54  # about half, at random
    assert first.isdisjoint(second) and first | second == set(range(1, 64))  # exactly the others


def test_translation_moves_whole_pixels_with_reflected_borders():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    moved = batches.translate(images, 2, rng)
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    for index in range(40):
        assert any(np.array_equal(padded[index, row:row + 8, col:col + 8], moved[index])
                   for row in range(5) for col in range(5))


def test_cutout_sets_one_square_inside_each_image_to_the_fill():
    rng = np.random.default_rng(0)
    images = np.full((200, 32, 32, 3), 200, dtype=np.uint8)
    cut = batches.cutout(images, 12, rng, fill=np.array([125, 123, 114], dtype=np.uint8))
    for image in cut:
        rows, cols = np.nonzero((image != 200).any(axis=-1))
        assert len(rows) == 144 and rows.max() - rows.min() == 11 and cols.max() - cols.min() == 11
        np.testing.assert_array_equal(image[rows, cols], [[125, 123, 114]] * 144)
    tops = [np.nonzero((image != 200).any(axis=-1))[0].min() for image in cut]
    assert min(tops) == 0 and max(tops) == 20  # every placement wholly inside, corners included
    assert batches.cutout(images, 0, rng, fill=0) is images


def batches_digest(loader, epochs: int = 2) -> str:
    digest = hashlib.sha256()
    for _ in range(epochs):
        for index in range(len(loader)):
            for part in loader[index]:
                digest.update(np.ascontiguousarray(part).tobytes())
        loader.on_epoch_end()
    return digest.hexdigest()[:16]


def test_cutout_batches_cover_outliers_too_and_leave_the_stream_of_runs_without_it():
    """The outliers get the same squares (or the model could tell them by the lack of one); a recipe without
    cutout draws the same batches as before cutout existed, so a run checkpointed then resumes the same stream."""
    images, labels = numbered_images(32) + 1, np.arange(32) % 4
    outliers = np.full((10, 8, 8, 1), 7, dtype=np.uint8)
    common = dict(translate_pixels=1, seed=0, outliers=outliers, outlier_batch=4, batch_size=16)
    cut = batches.AugmentedBatches(images, labels, 4, cutout_pixels=3, **common)
    x, _, _ = cut[0]
    assert cut.fill.tolist() == [round(images.mean())]
    assert all((image == cut.fill[0]).sum() >= 9 for image in x[16:])  # every outlier has its 3 x 3 square
    assert all((image == cut.fill[0]).sum() >= 9 for image in x[:16])
    # two epochs of batches (images, targets, weights) as tasks/train/batches.py made them at fb1fd24,
    # before cutout existed (NumPy's PCG64 streams)
    assert batches_digest(batches.AugmentedBatches(images, labels, 4, **common)) == "aedc4ea961f83fe9"


def test_the_airbench96_recipe_reaches_the_batches_and_a_typo_is_refused(tiny_cifar):
    from tasks.config import Settings
    from tasks.train import recipes, train

    x, y = tiny_cifar["x_train"], tiny_cifar["y_train"]
    config = train.TrainConfig(architecture="airbench", recipe="airbench96")
    loader = train.training_batches(recipes.recipe_for("airbench96", "airbench"), x, y, 10, config,
                                    Settings.from_env())
    assert (loader.translate_pixels, loader.cutout_pixels, loader.alternating_flip) == (4, 12, True)
    typo = recipes.recipe_for("airbench96", "airbench", {"augment": ["alternating_flip", "cutuot12"]})
    with pytest.raises(ValueError, match="unknown host augmentation cutuot12"):
        train.training_batches(typo, x, y, 10, config, Settings.from_env())
    with pytest.raises(ValueError, match="cutout of 40 pixels does not fit 32x32"):
        batches.cutout(np.zeros((2, 32, 32, 3), np.uint8), 40, np.random.default_rng(0), 0)


def test_outlier_exposure_appends_uniform_targets_weighted_by_lambda():
    images, labels = numbered_images(32), np.arange(32) % 4
    outliers = np.full((10, 8, 8, 1), 7, dtype=np.uint8)
    loader = batches.AugmentedBatches(images, labels, 4, batch_size=16, translate_pixels=1, seed=0,
                                      outliers=outliers, outlier_batch=4, outlier_weight=0.5)
    x, y, weights = loader[1]
    assert x.shape == (20, 8, 8, 1) and len(loader) == 2
    np.testing.assert_allclose(y[16:], 0.25)  # uniform over the 4 classes
    assert set(y[:16].max(axis=1)) == {1.0}
    # mean over the 20 rows of weight * loss = mean over labelled + 0.5 * mean over outliers
    assert weights[:16].sum() / 20 == pytest.approx(1.0) and weights[16:].sum() / 20 == pytest.approx(0.5)


def one_layer_model():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(3, use_bias=False, name="dense")(inputs)
    outputs = keras.layers.BatchNormalization(scale=False, name="norm")(hidden)
    return keras.Model(inputs, outputs)


def test_airbench_sgd_scales_bias_rate_decays_coupled_and_lookahead_syncs():
    model = one_layer_model()
    kernel, beta = model.get_layer("dense").kernel, model.get_layer("norm").beta
    kernel.assign(np.eye(3, dtype="float32"))
    optimizer = AirbenchSGD(0.1, momentum=0.5, l2=0.01, bias_lr_scale=64.0, lookahead_every=2,
                            total_steps=4)
    optimizer.build([kernel, beta])
    zero = [np.zeros((3, 3), "float32"), np.ones(3, "float32")]
    optimizer.apply(zero, [kernel, beta])
    # step 1 (Nesterov, momentum 0.5): kernel moves by -(1 + 0.5) * 0.1 * 0.01 * w; beta at 64 x the rate
    np.testing.assert_allclose(np.diag(np.asarray(kernel)), 1 - 1.5 * 0.1 * 0.01, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(beta), -1.5 * 0.1 * 64 * 1.0, rtol=1e-5)
    optimizer.apply(zero, [kernel, beta])  # step 2: lookahead is due (every 2 steps)
    # beta by hand: rate 6.4, coupled decay 0.01 / 64, Keras' Nesterov (m = 0.5 m - lr g; w += 0.5 m - lr g)
    momentum, beta_hand = -6.4, -9.6
    gradient = 1 + 0.01 / 64 * beta_hand
    momentum = 0.5 * momentum - 6.4 * gradient
    beta_hand += 0.5 * momentum - 6.4 * gradient
    decay = 0.95 ** 5 * (2 / 4) ** 3  # airbench's lookahead decay at step 2 of 4
    expected = 0.0 + (1 - decay) * (beta_hand - 0.0)  # the slow weights started at beta's initial 0
    slow = np.asarray(optimizer.slow[optimizer._get_variable_index(beta)])
    np.testing.assert_allclose(slow, expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(beta), expected, rtol=1e-5)  # the fast weights restart there


def test_lookahead_starts_from_the_weights_fit_starts_from():
    """Built by fit (Keras builds the optimizer in a stateless scope, where build()'s copy was lost), the
    slow weights still start from the model's weights: a run shorter than one lookahead period ends on
    its starting weights, as airbench's (a fine-tune from a saved model had ended on zeros)."""
    model = one_layer_model()
    kernel = model.get_layer("dense").kernel
    kernel.assign(np.eye(3, dtype="float32") * 2.0)
    model.compile(optimizer=AirbenchSGD(0.1, momentum=0.5, lookahead_every=5, total_steps=3), loss="mse")
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(4, 3)).astype("float32"), rng.normal(size=(4, 3)).astype("float32"), batch_size=4,
              epochs=2, verbose=0)
    assert not np.allclose(np.asarray(kernel), np.eye(3) * 2.0)  # the fast weights moved
    model.optimizer.finish(model.trainable_variables)
    np.testing.assert_allclose(np.asarray(kernel), np.eye(3) * 2.0, rtol=1e-6)


def test_the_airbench96_recipe_on_another_network_says_how_to_get_its_own(caplog):
    from tasks.train import train

    train.warn_if_not_the_recipes_network(train.TrainConfig(architecture="airbench", recipe="airbench96"))
    [record] = caplog.records
    assert "differs in batch_norm_momentum, residual, widths" in record.getMessage()
    assert ("--model-set 'widths=[128,512,512]' --model-set residual=true --model-set batch_norm_momentum=0.9"
            in record.getMessage())
    caplog.clear()
    train.warn_if_not_the_recipes_network(train.TrainConfig(
        architecture="airbench", recipe="airbench96",
        model_overrides=(("widths", [128, 512, 512]), ("residual", True), ("batch_norm_momentum", 0.9))))
    train.warn_if_not_the_recipes_network(train.TrainConfig(architecture="airbench", recipe="airbench"))
    assert not caplog.records
