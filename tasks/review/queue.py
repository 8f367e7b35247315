"""What the review page asks about: cards in the order that teaches the most, and each model's classes.

The order itself is the database's (tasks/store/reviews_sql.py, view image_review_queue); this module
turns rows into the JSON the page reads and finds the classes a person may choose for each model.
"""

from __future__ import annotations

import dataclasses
import functools
import urllib.parse

import sqlalchemy as sa

from tasks.store import reviews_sql


@functools.cache
def class_names(dataset: str) -> tuple[str, ...]:
    """The classes of a CIFAR dataset ('cifar10': 10, 'cifar100': 100 fine labels), in index order.

    ValueError for another dataset.
    """
    from tasks.data import prepare

    if dataset == "cifar10":
        return tuple(prepare.CIFAR10_CLASSES)
    if dataset == "cifar100":
        return tuple(prepare.cifar100_labels()["fine_names"])
    raise ValueError(f"no class list for dataset {dataset!r} (cifar10 or cifar100)")


def guess_dataset(candidates: list[tuple[str, float]]) -> str:
    """A model's dataset from its candidate labels, for a model the registry does not list: CIFAR-10
    when every candidate is one of its classes, else CIFAR-100."""
    known = set(class_names("cifar10"))
    return "cifar10" if all(name in known for name, _ in candidates) else "cifar100"


def model_classes(engine: sa.Engine, items: list[reviews_sql.QueueItem]) -> dict[str, list[str]]:
    """{model version: its class names} for the models of `items` (the registry's dataset, else a guess)."""
    datasets = reviews_sql.model_datasets(engine, [item.model_version for item in items])
    classes = {}
    for item in items:
        if item.model_version not in classes:
            dataset = datasets.get(item.model_version) or guess_dataset(item.candidates)
            classes[item.model_version] = list(class_names(dataset))
    return classes


def picture_url(item: reviews_sql.QueueItem) -> str:
    """The app's address of an image's picture: its key and content hash, looked up in the database."""
    return "/picture?" + urllib.parse.urlencode({"uri": item.image_uri, "hash": item.content_hash})


def card(item: reviews_sql.QueueItem, candidates_shown: int = 9) -> dict:
    """The JSON of one card: the image's identity, the model's verdict and up to 9 candidates (keys 1-9)."""
    # QueueItem's fields as they are, but the candidates shown as objects and the picture's address
    return dataclasses.asdict(item) | {
        "picture": picture_url(item),
        "candidates": [{"label": name, "probability": probability}
                       for name, probability in item.candidates[:candidates_shown]]}


def load(engine: sa.Engine, where: reviews_sql.QueueFilter, limit: int) -> dict:
    """{"cards": [card, ...], "classes": {model version: [class, ...]}} of the next `limit` images."""
    items = reviews_sql.queue(engine, where, limit)
    return {"cards": [card(item) for item in items], "classes": model_classes(engine, items)}


def allowed_label(engine: sa.Engine, model_version: str, label: str | None) -> bool:
    """Whether `label` may be the answer for an image `model_version` tagged: None ("none of these
    classes") or one of the model's classes."""
    if label is None:
        return True
    dataset = reviews_sql.model_datasets(engine, [model_version]).get(model_version)
    names = class_names(dataset) if dataset else class_names("cifar10") + class_names("cifar100")
    return label in names

