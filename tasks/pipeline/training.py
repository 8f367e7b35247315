"""Datasets and training: prepare a dataset version, plan and run trainings, evaluate a saved model.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from typing import TYPE_CHECKING

from tasks.config import Settings
from tasks.pipeline.common import results_engine, settings
from tasks.pipeline.models import register_model, register_saved_model

if TYPE_CHECKING:
    from tasks.evaluate.result import EvaluationResult

log = logging.getLogger(__name__)


def prepare_dataset(dataset: str, source: str | None = None, md5: str | None = None,
                    validation_size: int = 5000, seed: int = 0, progress: bool = False):
    """Build (or find) the dataset version for `source` (None: the official archive); its DatasetManifest."""
    from tasks.data import prepare

    config = prepare.PrepareConfig(validation_size=validation_size, seed=seed)
    manifest = prepare.prepare(dataset, source, settings(), config, md5=md5, progress=progress)
    stored_at = _push_dataset(manifest.name, manifest.version)
    if stored_at:
        log.info("dataset %s %s uploaded to %s", manifest.name, manifest.version, stored_at)
    return manifest


def prepare_reviewed_dataset(name: str, base: str = "cifar10", base_version: str | None = None,
                             slice_fraction: float | None = None, repeat: int = 1, db_url: str | None = None):
    """Build (or find) a version of `name` from the base version plus the reviewed images of the results
    database (tasks/data/reviewed.py); (its DatasetManifest, the reviews.json entries)."""
    from tasks.data import reviewed

    defaults = reviewed.ReviewedConfig()
    config = reviewed.ReviewedConfig(base=base, base_version=base_version, repeat=repeat,
                                     slice_fraction=defaults.slice_fraction if slice_fraction is None
                                     else slice_fraction)
    manifest, entries = reviewed.prepare_from_reviews(name, results_engine(db_url), settings(db_url), config)
    stored_at = _push_dataset(manifest.name, manifest.version)
    if stored_at:
        log.info("dataset %s %s uploaded to %s", manifest.name, manifest.version, stored_at)
    return manifest, entries


def new_reviews(name: str, db_url: str | None = None) -> int:
    """Answers given in `hashtagger review` that the latest version of the reviewed dataset `name` does not
    hold yet (all of them when it is not prepared); what the reviewed_dataset DAG compares to its threshold."""
    from tasks.data import reviewed

    return reviewed.new_answers(results_engine(db_url), name, settings(db_url))


def _push_dataset(name: str, version: str) -> str | None:
    """Upload the prepared version to the artifact store (HASHTAGGER_ARTIFACTS), for workers elsewhere."""
    from tasks.registry import artifact_store

    return artifact_store.push_dataset(name, version, settings())


def architectures() -> tuple[str, ...]:
    """Names of the model architectures (models/)."""
    import models

    return models.ARCHITECTURES


def recipe_names() -> tuple[str, ...]:
    """Names of the training recipes (tasks/train/recipes.py)."""
    from tasks.train import recipes

    return tuple(recipes.RECIPES)


def training_spec(**fields) -> dict:
    """A training spec: TrainConfig's fields (tasks/train/train.py), checked, as the JSON-friendly dict that
    `train` and `train_model` take (and a DAG passes through XCom); ValueError naming an unknown field."""
    from tasks.train import train as training

    return training.TrainConfig.from_dict(fields).as_dict()


def check_training_settings(spec: dict, dataset_folder: Path) -> None:
    """ValueError, before training starts, for recipe and network settings in `spec` (`training_spec`'s
    dict) that cannot train on the images of the prepared dataset version in `dataset_folder`
    (tasks/train/train.py check_settings)."""
    import json

    from tasks.train import train as training

    image_shape = json.loads((Path(dataset_folder) / "manifest.json").read_text())["image_shape"]
    training.check_settings(training.TrainConfig.from_dict(spec), image_shape)


def training_plan(architectures: list[str], dataset: str, recipe: str, epochs: int,
                  dataset_version: str | None = None, train_limit: int | None = None,
                  budget_minutes: float | None = None) -> list[dict]:
    """One training spec (`training_spec`) per distinct architecture; bad names fail before any training."""
    import models  # architectures() is shadowed by the parameter here

    known = models.ARCHITECTURES
    unknown = [name for name in architectures if name not in known]
    if unknown or not architectures:
        raise ValueError(f"unknown or no architectures {unknown or architectures}; choose from {', '.join(known)}")
    if recipe not in recipe_names():
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(recipe_names())}")
    if int(epochs) < 1:
        raise ValueError(f"epochs must be at least 1, not {epochs}")
    return [training_spec(architecture=name, dataset=dataset, dataset_version=dataset_version, recipe=recipe,
                          epochs=int(epochs), train_limit=train_limit, budget_minutes=budget_minutes)
            for name in dict.fromkeys(architectures)]


def train(spec: dict, register: bool = False, db_url: str | None = None, callbacks: tuple = ()):
    """Train one model as `spec` (`training_spec`'s dict) says; its ModelMetadata.

    With `register`, it is recorded as a candidate in the results database; a database that cannot take
    it is logged, never fatal: the saved model stays, and `hashtagger models register PATH` records it later.
    A dataset version prepared on another host comes from the artifact store first (HASHTAGGER_ARTIFACTS).
    """
    from tasks.registry import artifact
    from tasks.train import train as training

    config = training.TrainConfig.from_dict(spec)
    config = dataclasses.replace(config, dataset_version=_pull_dataset(config.dataset, config.dataset_version))
    metadata = artifact.ModelMetadata.from_dict(training.train(config, settings(), callbacks=tuple(callbacks)))
    if register:
        register_saved_model(metadata, db_url)
    return metadata


def train_model(spec: dict) -> dict:
    """Train one model (the DAG's task: the evaluate task registers it in the DAG's database); its summary,
    with `artifact_uri`, the model's reference in the artifact store (its folder when none is set)."""
    from tasks.registry import artifact_store

    trained = train(spec)  # uploaded to the artifact store when one is set, so that any worker can evaluate it
    return model_summary(trained, artifact_store.publish(trained.path, trained.model_id, settings()))


def find_dataset(name: str, version: str | None = None, where: Settings | None = None) -> Path:
    """The folder of the dataset version `train` would use, found the way it finds it: pulled from the
    artifact store first when one is set (HASHTAGGER_ARTIFACTS), then looked up on this disk as
    tasks.data.dataset.load does (`where`: the settings naming this disk's datasets folder). DatasetNotFound
    (or StoreError) saying what to run otherwise."""
    from tasks.data import dataset

    return dataset.find(name, _pull_dataset(name, version), where or settings())


def _pull_dataset(name: str, version: str | None) -> str | None:
    """A dataset version prepared on another host comes from the artifact store, when one is set
    (version None: the store's latest); returns the version to train on (None: the local latest)."""
    from tasks.registry import artifact_store

    return artifact_store.pull_dataset(name, version, settings())[0]


def model_summary(metadata, artifact_uri: str | None = None) -> dict:
    """What the train task passes on about a trained model (ModelMetadata), JSON-friendly: its id, what it
    is, its test top-1 (a fraction of the JPEG test set) and where it is: `path` on this host, `artifact_uri`
    for every host (the artifact store's reference; the folder when none is set). The evaluate task reads
    the rest from the artifact."""
    return {"model_id": metadata.model_id, "architecture": metadata.architecture, "dataset": metadata.dataset,
            "dataset_version": metadata.dataset_version, "test_top1": (metadata.metrics or {}).get("test_top1"),
            "path": metadata.path, "artifact_uri": artifact_uri or metadata.path}


def evaluate(model_path: str, dataset_version: str | None = None, tta: str = "none", output_dir: str | None = None,
             figures: bool = True, record: bool = True, reuse: bool = False, db_url: str | None = None) -> EvaluationResult:
    """Evaluate a saved model on a dataset version's test split, write its reports, record the result.

    tta: none, flip, flip_translate, or recipe (the model recipe's own, at least flip). `reuse`: when the
    artifact already has its reports (training evaluates at its end), take those instead of evaluating
    again. `record`: register the model if needed and store the evaluation in the registry.
    Returns the EvaluationResult (tasks/evaluate/result.py: test_top1, test_top5 as fractions, ...) naming
    the model (model_id, path, architecture) and its reports_dir; `.as_dict()` is its JSON (the DAG's XCom).
    """
    from tasks.evaluate import evaluate as evaluation
    from tasks.evaluate.result import EvaluationResult
    from tasks.registry import artifact, artifact_store, registry

    engine = results_engine(db_url) if record else None  # an unready database fails before the work
    reference = str(model_path)
    model_path = artifact_store.resolve(reference, settings())  # an s3:// model trained on another host
    metadata = artifact.read(model_path)
    reports_dir = Path(metadata.path) / artifact.REPORTS_DIR
    reused = reuse and dataset_version is None and output_dir is None and (reports_dir / "metrics.json").exists()
    if reused:
        result = EvaluationResult.from_dict(metadata.metrics).identified(model_id=metadata.model_id,
                                                                          reports_dir=str(reports_dir))
    else:
        if tta == "recipe":  # the recipe's own, and at least the mirror image
            tta = evaluation.recipe_tta(metadata.as_dict()).replace("none", "flip")
        result = evaluation.evaluate_artifact(
            model_path, dataset_version, tta, settings(), Path(output_dir) if output_dir else None,
            evaluation.EvaluateConfig(tta=tta, figures=figures))
        metadata = artifact.read(model_path)
    if engine is not None:
        if reused or registry.get(engine, metadata.model_id) is None:
            # with its evaluation on its own dataset version; an s3:// model keeps its store reference
            register_model(metadata, engine=engine,
                           artifact_uri=reference if reference.startswith(artifact_store.S3) else None)
        if not reused:
            registry.record_evaluation(engine, metadata.model_id, result)
    # metrics written by hand may not name the dataset: then the model's own
    # and an evaluation saved before `family` on a reviewed dataset: the model's own dataset is its family
    family = result.family or (metadata.dataset if result.dataset not in (None, metadata.dataset) else None)
    result = dataclasses.replace(result, dataset=result.dataset or metadata.dataset, family=family,
                                 dataset_version=result.dataset_version or metadata.dataset_version)
    return result.identified(path=metadata.path, architecture=metadata.architecture)
