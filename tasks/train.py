"""Train stage: one architecture, one recipe, one dataset version -> a self-describing model artifact.

The end of every run evaluates the model on the test split (tasks/evaluate.py: accuracy, per-class
accuracy, calibration, plots under the artifact's reports/), saves the artifact and records it in the
registry as a candidate.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from pathlib import Path

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
    # Stop when another epoch would overrun this many minutes (the schedule is planned for `epochs`,
    # so a one-cycle run stopped early ends at a high learning rate: cap `epochs` to fit the budget).
    budget_minutes: float | None = None
    train_limit: int | None = None  # use only the first N training images (smoke tests); None: all
    seed: int = 0
    recipe_overrides: tuple[tuple[str, object], ...] = ()  # e.g. (("batch_size", 64),)
    model_overrides: tuple[tuple[str, object], ...] = ()  # architecture Config fields
    reports: bool = True  # plots and calibration under the artifact's reports/ (needs matplotlib for PNGs)
    register: bool = True  # record the model in the results database (HASHTAGGER_DB_URL) as a candidate
    verbose: int = 2  # Keras fit verbosity: 0 silent, 2 one line per epoch


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
        raise ValueError(f"unknown optimizer {recipe.optimizer!r}; choose sgd, adam or rmsprop")
    if recipe.weight_decay:
        # decay kernels only: shrinking batch-norm scales and biases only hurts
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "pixel_mean"])
    return optimizer


def compile_trainer(model, recipe: recipes.Recipe, steps_per_epoch: int, epochs: int, seed: int = 0):
    """`model` behind the recipe's augmentation, compiled with its optimizer, schedule and loss."""
    import keras

    from tasks import augment, schedules

    trainer = augment.training_model(model, recipe.augment, seed)
    trainer.compile(
        optimizer=make_optimizer(recipe, schedules.build(recipe, steps_per_epoch, epochs)),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    return trainer


def epoch_callbacks(budget_minutes: float | None):
    """Keras callbacks: cumulative wall-clock `seconds` in the history, and the budget stop."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.started = time.monotonic()
            self.last = self.started

        def on_epoch_end(self, epoch, logs=None):
            now = time.monotonic()
            # the next epoch will take about as long as this one (the first also built the graph)
            epoch_seconds, self.last = now - self.last, now
            if logs is not None:
                logs["seconds"] = now - self.started  # History (added after us) records it
            if budget_minutes and now - self.started + epoch_seconds > budget_minutes * 60:
                log.info("stopping after epoch %d: another would overrun the %.1f min budget",
                         epoch + 1, budget_minutes)
                self.model.stop_training = True

    return [EpochClock()]


def train(config: TrainConfig, settings: Settings | None = None, dataset: Dataset | None = None) -> dict:
    """Train, evaluate on the test split, save the artifact, register it; returns its metadata."""
    import keras

    import models
    from models.layers import preprocessing_layer
    from tasks import evaluate

    settings = settings or Settings.from_env()
    dataset = dataset or load(config.dataset, config.dataset_version, settings)
    recipe = recipes.recipe_for(config.recipe, config.architecture, dict(config.recipe_overrides))
    if config.epochs < 1:
        raise ValueError(f"epochs must be at least 1, not {config.epochs}")
    keras.utils.set_random_seed(config.seed)
    num_classes = len(dataset.class_names)

    x_train, y_train = dataset["x_train"], dataset["y_train"]
    if config.train_limit:
        x_train, y_train = x_train[: config.train_limit], y_train[: config.train_limit]
    x_train, y_train = np.ascontiguousarray(x_train), np.asarray(y_train)

    model = models.build(config.architecture, dataset.manifest["image_shape"], num_classes,
                         dict(config.model_overrides))
    preprocessing_layer(model).set_mean_from(x_train)
    steps_per_epoch = int(np.ceil(len(x_train) / recipe.batch_size))
    trainer = compile_trainer(model, recipe, steps_per_epoch, config.epochs, config.seed)
    callbacks = epoch_callbacks(config.budget_minutes)
    if recipe.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", factor=0.5,
                                                           patience=recipe.plateau_patience))

    started = time.monotonic()
    history = trainer.fit(
        x_train, one_hot(y_train, num_classes), batch_size=recipe.batch_size, epochs=config.epochs,
        validation_data=(np.asarray(dataset["x_val"]), one_hot(dataset["y_val"], num_classes)),
        callbacks=callbacks, shuffle=True, verbose=config.verbose)
    training_seconds = time.monotonic() - started
    history_lists = {key: [float(v) for v in values] for key, values in history.history.items()
                     if key != "learning_rate"}

    with tempfile.TemporaryDirectory(prefix="hashtagger-") as scratch:
        # a subfolder: the scratch folder itself is private (0700), and save() copies modes
        reports_dir = Path(scratch) / artifact.REPORTS_DIR if config.reports else None
        metrics = evaluate.evaluate_model(
            model, dataset, flip_tta=recipe.flip_tta, history=history_lists, output_dir=reports_dir,
            title=f"{config.architecture} / {config.recipe} on {dataset.name}")
        metadata = artifact.describe(
            model=model, config=config, recipe=recipe, dataset=dataset, metrics=metrics,
            history=history_lists, epochs_done=len(history.epoch), training_seconds=training_seconds,
            train_images=len(x_train))
        metadata = artifact.save(model, metadata, settings, reports_dir=reports_dir,
                                 fingerprint_images=dataset["x_test"][:artifact.FINGERPRINT_IMAGES])
    if config.register:
        register(metadata, settings)
    return metadata


def register(metadata: dict, settings: Settings) -> bool:
    """Record a saved model as a candidate; a database error is logged, never fatal to the run."""
    import sqlalchemy as sa

    from tasks import db, registry

    try:
        engine = db.ensure_schema(db.engine(settings.database_url))
        registry.register(engine, metadata)
    except (sa.exc.SQLAlchemyError, db.MigrationError, OSError) as error:
        log.error("model %s saved but not registered (%s): run `hashtagger models register %s`",
                  metadata["model_id"], error, metadata["path"])
        return False
    return True
