"""Train stage: one architecture, one recipe, one dataset version -> a self-describing model artifact.

The end of every run evaluates the model on the test split (tasks/evaluate/evaluate.py: accuracy, per-class
accuracy, calibration, plots under the artifact's reports/) and saves the artifact; the caller records it
in the registry (tasks/pipeline/models.py `register_model`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shlex
import tempfile
import time
from pathlib import Path

import numpy as np

from tasks.registry import artifact
from tasks.train import checkpoint, recipes
from tasks.config import Settings
from tasks.data.dataset import Dataset, load

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    architecture: str = "vgg16"
    dataset: str = "cifar10"
    dataset_version: str | None = None  # None: the latest prepared version
    recipe: str = "fast"
    epochs: int | None = None  # None: the recipe's own (Recipe.epochs)
    # Stop when another epoch would overrun this many minutes (the schedule is planned for `epochs`,
    # so a one-cycle run stopped early ends at a high learning rate: cap `epochs` to fit the budget).
    budget_minutes: float | None = None
    train_limit: int | None = None  # use only the first N training images (smoke tests); None: all
    seed: int = 0
    recipe_overrides: tuple[tuple[str, object], ...] = ()  # e.g. (("batch_size", 64),)
    model_overrides: tuple[tuple[str, object], ...] = ()  # architecture Config fields
    reports: bool = True  # plots and calibration under the artifact's reports/ (needs matplotlib for PNGs)
    # fine-tune: a saved model folder whose weights (preprocessing statistics included) the run starts from,
    # of the same architecture and settings; None: random weights, statistics fitted on this train split
    init_from: str | None = None
    verbose: int = 2  # Keras fit verbosity: 0 silent, 2 one line per epoch

    @classmethod
    def from_dict(cls, fields: dict) -> "TrainConfig":
        """From a training spec as JSON carries it (the DAG's XCom, the CLI): lists of pairs back to tuples;
        ValueError naming any key that is not a field."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - names)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {', '.join(sorted(names))}")
        pairs = {name: tuple(tuple(pair) for pair in fields[name])
                 for name in ("recipe_overrides", "model_overrides") if fields.get(name)}
        return cls(**{**fields, **pairs})

    def as_dict(self) -> dict:
        """The spec as a JSON-friendly dict (what `from_dict` reads back)."""
        return dataclasses.asdict(self)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype="float32")[np.asarray(labels, dtype=np.int64)]


def make_optimizer(recipe: recipes.Recipe, learning_rate, airbench_options: dict | None = None):
    import keras

    from tasks.train.optimizers import with_l2

    common = {"learning_rate": learning_rate}
    if recipe.weight_decay:
        common["weight_decay"] = recipe.weight_decay
    if recipe.l2 and recipe.optimizer != "airbench_sgd":
        common["l2"] = recipe.l2
    if recipe.optimizer == "airbench_sgd":
        from tasks.train.optimizers import AirbenchSGD

        return AirbenchSGD(learning_rate, momentum=recipe.momentum, l2=recipe.l2,
                           bias_lr_scale=recipe.bias_lr_scale, **(airbench_options or {}))
    if recipe.optimizer == "sgd":
        optimizer = with_l2(keras.optimizers.SGD)(momentum=recipe.momentum, nesterov=True, **common)
    elif recipe.optimizer == "adam":
        adam = keras.optimizers.AdamW if recipe.weight_decay else keras.optimizers.Adam
        optimizer = with_l2(adam)(**common)
    elif recipe.optimizer == "rmsprop":
        optimizer = with_l2(keras.optimizers.RMSprop)(**common)
    else:
        raise ValueError(f"unknown optimizer {recipe.optimizer!r}; choose sgd, adam, rmsprop or airbench_sgd")
    if recipe.weight_decay:
        # decay kernels only: shrinking batch-norm scales and biases only hurts
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias", "pixel_mean"])
    return optimizer


def host_augmented(recipe: recipes.Recipe) -> bool:
    """Whether the recipe's augmentation runs on the host, per epoch (tasks/train/batches.py)."""
    return "alternating_flip" in recipe.augment


def compile_trainer(model, recipe: recipes.Recipe, steps_per_epoch: int, epochs: int, seed: int = 0):
    """`model` behind the recipe's augmentation, compiled with its optimizer, schedule and loss.

    Host-augmented recipes (airbench) get their batches augmented already, so no augmentation layers.
    `model` itself is never compiled: the saved model then carries no optimizer state.
    """
    import keras

    from models.airbench import WHITEN_LAYER
    from tasks.train import augment
    from tasks.train import schedules

    host = host_augmented(recipe)
    trainer = augment.training_model(model, () if host else recipe.augment, seed)
    airbench_options = {}
    if host:
        airbench_options = {"lookahead_every": recipe.lookahead_every, "total_steps": steps_per_epoch * epochs,
                            "frozen_bias_after": steps_per_epoch * recipe.whiten_bias_epochs,
                            "frozen_bias_layer": WHITEN_LAYER}
    trainer.compile(
        optimizer=make_optimizer(recipe, schedules.build(recipe, steps_per_epoch, epochs), airbench_options),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=[LabelledAccuracy(name="accuracy")])
    return trainer


def labelled_accuracy_metric():
    """Top-1 accuracy over labelled images only: outliers (uniform targets) are not counted."""
    import keras
    from keras import ops

    class LabelledAccuracyMetric(keras.metrics.Metric):
        def __init__(self, name="accuracy", **kwargs):
            super().__init__(name=name, **kwargs)
            self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
            self.count = self.add_variable(shape=(), initializer="zeros", name="count")

        def update_state(self, y_true, y_pred, sample_weight=None):
            labelled = ops.cast(ops.max(y_true, axis=-1) > 0.5, "float32")
            hits = ops.cast(ops.argmax(y_true, axis=-1) == ops.argmax(y_pred, axis=-1), "float32")
            self.correct.assign_add(ops.sum(hits * labelled))
            self.count.assign_add(ops.sum(labelled))

        def result(self):
            return self.correct / ops.maximum(self.count, 1.0)

    return LabelledAccuracyMetric


def LabelledAccuracy(name: str = "accuracy"):  # noqa: N802  reads as the metric class it builds
    return labelled_accuracy_metric()(name=name)


def epoch_callbacks(budget_minutes: float | None, seconds_before: float = 0.0):
    """Keras callbacks: cumulative wall-clock `seconds` in the history (counting `seconds_before`, the
    time a resumed run spent before its checkpoint), and the budget stop (this process's time only)."""
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
                logs["seconds"] = seconds_before + now - self.started  # History (added after us) records it
            if budget_minutes and now - self.started + epoch_seconds > budget_minutes * 60:
                log.info("stopping after epoch %d: another would overrun the %.1f min budget",
                         epoch + 1, budget_minutes)
                self.model.stop_training = True

    return [EpochClock()]


def train(config: TrainConfig, settings: Settings | None = None, dataset: Dataset | None = None,
          callbacks: tuple = ()) -> dict:
    """Train, evaluate on the test split, save the artifact; returns its metadata (a dict).

    Registering it is the caller's (tasks/pipeline/models.py `register_model`, the one path into the registry).

    callbacks: extra Keras callbacks for fit (the CLI's progress bar, tasks/cli/progress.py).
    """
    import keras

    settings = settings or Settings.from_env()
    dataset = dataset or load(config.dataset, config.dataset_version, settings)
    recipe = recipes.recipe_for(config.recipe, config.architecture, dict(config.recipe_overrides))
    config = dataclasses.replace(config, epochs=config.epochs or recipe.epochs)
    if config.epochs < 1:
        raise ValueError(f"epochs must be at least 1, not {config.epochs}")
    check_settings(config, dataset.manifest["image_shape"])
    warn_if_not_the_recipes_network(config)
    keras.utils.set_random_seed(config.seed)
    x_train, y_train = dataset["x_train"], dataset["y_train"]
    if config.train_limit:
        x_train, y_train = x_train[: config.train_limit], y_train[: config.train_limit]
    x_train, y_train = np.ascontiguousarray(x_train), np.asarray(y_train)

    model = _built(config, dataset, x_train)
    fitted = _fit(model, recipe, config, dataset, x_train, y_train, settings, callbacks)
    metadata = _evaluated_and_saved(model, config, recipe, dataset, settings, fitted, len(x_train))
    checkpoint.remove(fitted.saved_at)
    return metadata


def check_settings(config: TrainConfig, image_shape) -> None:
    """ValueError, before anything trains, for a recipe or network override that cannot train on images
    of `image_shape` (H, W, C): an unknown recipe field, a network field of the wrong kind, an unknown
    augmentation, a host-side shift or cutout as large as the image."""
    import models
    from tasks.train import augment

    recipe = recipes.recipe_for(config.recipe, config.architecture, dict(config.recipe_overrides))
    models.config_for(config.architecture, dict(config.model_overrides))
    if recipe.outlier_dataset and recipe.outlier_dataset == config.dataset:
        raise ValueError(f"outlier_dataset={recipe.outlier_dataset} is the dataset being trained: outlier exposure "
                         "needs another dataset's classes (cifar100 for a CIFAR-10 model, cifar10 for a CIFAR-100 one)")
    if not host_augmented(recipe):
        augment.layers_for(recipe.augment)
        return
    side = min(image_shape[:2])
    translate, cut = host_pixels(recipe, "translate"), host_pixels(recipe, "cutout")
    if translate >= side or cut > side:
        raise ValueError(f"augment {list(recipe.augment)}: a shift must stay below and a cutout within the "
                         f"images' {side} pixels")


def warn_if_not_the_recipes_network(config: TrainConfig) -> None:
    """A recipe made for one network (airbench96's) trains any other, but a user who names the recipe
    expects its network: say which settings give it when the run's differ."""
    import models

    if config.recipe != "airbench96" or config.architecture != "airbench":
        return
    network = models.config_for("airbench", dict(config.model_overrides))
    differ = {key: value for key, value in recipes.AIRBENCH96_NETWORK.items() if getattr(network, key) != value}
    if differ:
        flags = " ".join("--model-set " + shlex.quote(f"{key}={json.dumps(value, separators=(',', ':'))}")
                         for key, value in recipes.AIRBENCH96_NETWORK.items())
        log.warning("recipe airbench96 is tuned for airbench96's network, and this run's differs in %s; for "
                    "that network pass %s", ", ".join(sorted(differ)), flags)


@dataclasses.dataclass(frozen=True)
class _Fitted:
    """What fitting produced beside the weights: per-epoch history, seconds, and the checkpoint used."""

    history: dict
    seconds: float
    epochs_done: int
    resumed_from: int
    saved_at: Path


def _built(config: TrainConfig, dataset: Dataset, x_train: np.ndarray):
    """The architecture, its preprocessing fitted on `x_train` (and airbench's whitening initialised)."""
    import models
    from models.layers import preprocessing_layer

    model = models.build(config.architecture, dataset.manifest["image_shape"], len(dataset.class_names),
                         dict(config.model_overrides))
    if config.init_from:
        return _initialised(model, config, dataset)
    preprocessing_layer(model).fit_statistics(x_train)
    if config.architecture == "airbench":
        from models import airbench

        airbench.init_whitening(model, x_train, models.config_for("airbench", dict(config.model_overrides)))
    return model


def _initialised(model, config: TrainConfig, dataset: Dataset):
    """`model` with the weights of the saved model `config.init_from`; ArtifactError when they do not fit."""
    source, metadata = artifact.load_keras(config.init_from)
    if metadata.get("architecture") != config.architecture or list(metadata["class_names"]) != dataset.class_names:
        raise artifact.ArtifactError(f"--init-from {config.init_from}: a {metadata.get('architecture')} model of "
                         f"{len(metadata['class_names'])} classes, not a {config.architecture} of {dataset.name}'s")
    try:
        model.set_weights(source.get_weights())
    except ValueError as error:
        raise artifact.ArtifactError(f"--init-from {config.init_from}: its weights do not fit this {config.architecture} "
                         f"(pass its --model-set settings: {metadata.get('architecture_config')}): {error}") from None
    log.info("starting from the weights of %s", metadata["model_id"])
    return model


def _fit(model, recipe: recipes.Recipe, config: TrainConfig, dataset: Dataset, x_train, y_train,
         settings: Settings, callbacks: tuple) -> _Fitted:
    """Fit `model` for config.epochs, from the run's checkpoint when one exists (a checkpoint every epoch)."""
    import keras

    num_classes, epochs = len(dataset.class_names), config.epochs
    if host_augmented(recipe):
        reviewed = dataset.arrays.get("x_outliers")  # "none of these" reviewed images, from reviews
        batches = training_batches(recipe, x_train, y_train, num_classes, config, settings,
                                   None if reviewed is None else np.asarray(reviewed))
        steps_per_epoch, fit_data = len(batches), {"x": batches}
    else:
        if len(dataset.arrays.get("x_outliers", ())):
            log.warning("the reviewed 'none of these' images are used by host-augmented recipes (airbench) "
                        "only: recipe %s trains without them", recipe.name)
        steps_per_epoch = int(np.ceil(len(x_train) / recipe.batch_size))
        fit_data = {"x": x_train, "y": one_hot(y_train, num_classes), "batch_size": recipe.batch_size,
                    "shuffle": True}
    trainer = compile_trainer(model, recipe, steps_per_epoch, epochs, config.seed)
    saved_at = checkpoint.folder(settings.home / "checkpoints", config, dataset.version)
    resumed = checkpoint.load(saved_at, trainer)
    if resumed.epochs_done:
        log.warning("resuming from epoch %d of %d (checkpoint %s)", resumed.epochs_done, epochs, saved_at)
        if host_augmented(recipe):
            fit_data["x"].start_at(resumed.epochs_done)
    saver = checkpoint.callback(saved_at, resumed)
    callbacks = epoch_callbacks(config.budget_minutes, resumed.seconds) + [saver] + list(callbacks)
    if recipe.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy", mode="max", factor=0.5,
                                                           patience=recipe.plateau_patience))
    started = time.monotonic()
    trainer.fit(
        **fit_data, epochs=epochs, initial_epoch=min(resumed.epochs_done, epochs),
        validation_data=(np.asarray(dataset["x_val"]), one_hot(dataset["y_val"], num_classes)),
        callbacks=callbacks, verbose=config.verbose)
    if hasattr(trainer.optimizer, "finish"):
        trainer.optimizer.finish(model.trainable_variables)  # lookahead ends on its slow weights
    history = saver.history if saver.history else resumed.history
    return _Fitted(history, resumed.seconds + time.monotonic() - started,
                   len(next(iter(history.values()), [])), resumed.epochs_done, saved_at)


def _evaluated_and_saved(model, config: TrainConfig, recipe: recipes.Recipe, dataset: Dataset,
                         settings: Settings, fitted: _Fitted, train_images: int) -> dict:
    """Evaluate on the test split (and the held-out outliers), then save the artifact; its metadata."""
    from tasks.data import outliers
    from tasks.evaluate import evaluate

    with tempfile.TemporaryDirectory(prefix="hashtagger-") as scratch:
        # a subfolder: the scratch folder itself is private (0700), and save() copies modes
        reports_dir = Path(scratch) / artifact.REPORTS_DIR if config.reports else None
        metrics = evaluate.evaluate_model(
            model, dataset, tta=recipe.tta, history=fitted.history, output_dir=reports_dir,
            title=f"{config.architecture} / {config.recipe} on {dataset.name}",
            outlier_sets=outliers.held_out_sets(dataset.name, dataset.class_names, settings))
        metadata = artifact.describe(
            model=model, config=config, recipe=recipe, dataset=dataset, metrics=metrics.as_dict(),
            history=fitted.history, epochs_done=fitted.epochs_done, training_seconds=fitted.seconds,
            train_images=train_images, resumed_from=fitted.resumed_from)
        return artifact.save(model, metadata, settings, reports_dir=reports_dir,
                             fingerprint_images=dataset["x_test"][:artifact.FINGERPRINT_IMAGES])


def training_batches(recipe: recipes.Recipe, x_train, y_train, num_classes: int, config: TrainConfig,
                     settings: Settings, reviewed_outliers: np.ndarray | None = None):
    """Host-augmented batches (tasks/train/batches.py), with outlier exposure when the recipe asks for it
    or `reviewed_outliers` (uint8 (N, 32, 32, 3): reviewed images of none of the classes) has images."""
    from tasks.train import batches
    from tasks.data import outliers

    translate_pixels, cutout_pixels = (host_pixels(recipe, name) for name in ("translate", "cutout"))
    outlier_images, outlier_batch = None, 0
    parts = [outliers.images(load(recipe.outlier_dataset, None, settings), "exposure", "train")] \
        if recipe.outlier_dataset else []
    if reviewed_outliers is not None and len(reviewed_outliers):
        parts.append(reviewed_outliers)
    if parts:
        outlier_images = np.concatenate(parts)
        outlier_batch = max(1, round(recipe.batch_size * recipe.outlier_batch_fraction))
        log.info("outlier exposure: %d images (%s%d reviewed as none of these), %d per batch", len(outlier_images),
                 f"{recipe.outlier_dataset}'s, " if recipe.outlier_dataset else "",
                 0 if reviewed_outliers is None else len(reviewed_outliers), outlier_batch)
    return batches.AugmentedBatches(
        x_train, y_train, num_classes, min(recipe.batch_size, len(x_train)),
        translate_pixels=translate_pixels, seed=config.seed, outliers=outlier_images,
        outlier_batch=outlier_batch, outlier_weight=recipe.outlier_weight, cutout_pixels=cutout_pixels)


HOST_AUGMENTATIONS = ("alternating_flip", "translateN", "cutoutN")  # tasks/train/batches.py; N in pixels


def host_pixels(recipe: recipes.Recipe, augmentation: str) -> int:
    """N of the recipe's host-side `augmentationN` (translate2 -> 2), 0 when it has none; ValueError for
    a name that is none of HOST_AUGMENTATIONS (a typo would otherwise train without it)."""
    unknown = [name for name in recipe.augment if name != "alternating_flip"
               and not any(name.startswith(kind) and name[len(kind):].isdigit() for kind in ("translate", "cutout"))]
    if unknown:
        raise ValueError(f"unknown host augmentation {', '.join(unknown)}; with alternating_flip the batches are "
                         f"augmented on the host: choose from {', '.join(HOST_AUGMENTATIONS)}")
    return int(next((name[len(augmentation):] for name in recipe.augment if name.startswith(augmentation)), 0))
