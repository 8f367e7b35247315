"""Train stage: one architecture, one recipe, one dataset version -> a self-describing model artifact."""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from tasks import artifact, recipes
from tasks.config import Settings
from tasks.dataset import Dataset, load

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    architecture: str = "vgg16"
    dataset: str = "cifar10"
    dataset_version: str | None = None  # None: the latest prepared version
    recipe: str = "fast"
    epochs: int = 10
    # Stop after this many minutes even if epochs remain (the schedule is planned for `epochs`).
    budget_minutes: float | None = None
    train_limit: int | None = None  # use only the first N training images (smoke tests); None: all
    seed: int = 0
    recipe_overrides: tuple[tuple[str, object], ...] = ()  # e.g. (("batch_size", 64),)
    model_overrides: tuple[tuple[str, object], ...] = ()  # architecture Config fields


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype="float32")[np.asarray(labels, dtype=np.int64)]


def make_optimizer(recipe: recipes.Recipe, learning_rate):
    import keras

    common = {"learning_rate": learning_rate}
    if recipe.weight_decay:
        common["weight_decay"] = recipe.weight_decay
    if recipe.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(momentum=recipe.momentum, nesterov=True, **common)
    elif recipe.optimizer == "adam":
        optimizer = keras.optimizers.AdamW(**common) if recipe.weight_decay else keras.optimizers.Adam(**common)
    elif recipe.optimizer == "rmsprop":
        optimizer = keras.optimizers.RMSprop(**common)
    else:
        raise ValueError(f"unknown optimizer {recipe.optimizer!r}")
    if recipe.weight_decay:
        # decay kernels only: shrinking batch-norm scales and biases only hurts
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "pixel_mean"])
    return optimizer


class _Budget:
    """Keras callback factory: stop training when the wall-clock budget is spent."""

    @staticmethod
    def callback(minutes: float):
        import keras

        class StopAtBudget(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.started = time.monotonic()

            def on_epoch_end(self, epoch, logs=None):
                if time.monotonic() - self.started > minutes * 60:
                    log.info("budget of %.1f min spent after epoch %d", minutes, epoch + 1)
                    self.model.stop_training = True

        return StopAtBudget()


def train(config: TrainConfig, settings: Settings | None = None, dataset: Dataset | None = None) -> dict:
    """Train, evaluate on the test split, save the artifact; returns the artifact's metadata."""
    import keras

    import models
    from models.layers import preprocessing_layer
    from tasks import augment, evaluate, schedules

    settings = settings or Settings.from_env()
    dataset = dataset or load(config.dataset, config.dataset_version, settings)
    recipe = recipes.recipe_for(config.recipe, config.architecture, dict(config.recipe_overrides))
    keras.utils.set_random_seed(config.seed)
    num_classes = len(dataset.class_names)

    x_train, y_train = dataset["x_train"], dataset["y_train"]
    if config.train_limit:
        x_train, y_train = x_train[: config.train_limit], y_train[: config.train_limit]
    x_train, y_train = np.ascontiguousarray(x_train), np.asarray(y_train)

    model = models.build(config.architecture, dataset.manifest["image_shape"], num_classes,
                         dict(config.model_overrides))
    preprocessing_layer(model).set_mean_from(x_train)
    trainer = augment.training_model(model, recipe.augment, config.seed)
    steps_per_epoch = int(np.ceil(len(x_train) / recipe.batch_size))
    trainer.compile(
        optimizer=make_optimizer(recipe, schedules.build(recipe, steps_per_epoch, config.epochs)),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    callbacks = []
    if recipe.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", factor=0.5,
                                                           patience=recipe.plateau_patience))
    if config.budget_minutes:
        callbacks.append(_Budget.callback(config.budget_minutes))

    started = time.monotonic()
    history = trainer.fit(
        x_train, one_hot(y_train, num_classes), batch_size=recipe.batch_size, epochs=config.epochs,
        validation_data=(np.asarray(dataset["x_val"]), one_hot(dataset["y_val"], num_classes)),
        callbacks=callbacks, shuffle=True, verbose=2)
    training_seconds = time.monotonic() - started

    metrics = evaluate.accuracy_metrics(model, dataset["x_test"], dataset["y_test"], flip_tta=recipe.flip_tta)
    history_lists = {key: [float(v) for v in values] for key, values in history.history.items()
                     if key != "learning_rate"}
    metadata = artifact.describe(
        model=model, config=config, recipe=recipe, dataset=dataset, metrics=metrics,
        history=history_lists, epochs_done=len(history.epoch), training_seconds=training_seconds,
        train_images=len(x_train))
    return artifact.save(model, metadata, settings)
