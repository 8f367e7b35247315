"""The `hashtag` command's use case: image files in, labels and ranked hashtags out, nothing stored;
its decisions are the tag stage's (tasks/tag/decide.py).
"""

from __future__ import annotations

import logging

from tasks.pipeline.common import DATASETS

log = logging.getLogger(__name__)


def hashtag_images(paths: list[str], model_path: str | None = None, dataset: str = "cifar10",
                   platform: str = "generic", label_count: int = 3,
                   min_confidence: float | None = None) -> tuple[str, list[dict]]:
    """Labels and ranked hashtags for each image file, in the given order; writes nothing.

    dataset: cifar10, cifar100, or both (both bundled models on the same tile, their labels merged).
    Each answer has `image` and either `error` (why the file failed) or: `abstained` (True when no model
    was confident; `reason` then says why), `labels` (every model's candidates, [{label, probability,
    dataset}], probabilities calibrated), `coarse_labels` (CIFAR-100 superclasses), `hashtags`
    ([{hashtag, source, label, score}], none when abstained) and `models` ([{model, dataset, score,
    min_confidence, abstained}]). `min_confidence` overrides the models' own thresholds.
    Returns (the model id, or ids joined by '+', answers). ModelNotFound / OSError / ValueError when a
    model cannot be loaded.
    """
    import numpy as np

    from tasks.data import images
    from tasks.hashtags import providers
    from tasks.hashtags.rank import RankConfig
    from tasks.tag import decide, predictor

    names = DATASETS if dataset == "both" else (dataset,)
    # serving is ONNX only, as for `hashtagger tag --model`: one rule, one message for a folder without it
    served = [predictor.load(model_path or predictor.bundled_model(name), runtime="onnx") for name in names]
    # several models' labels merged: each hashtag ranks by its label's confidence (no interleaving)
    engine = providers.engine_for(None, RankConfig(platform=platform, by_label=len(served) > 1))
    answers: list[dict] = [{"image": path} for path in paths]
    tiles = []
    for answer in answers:
        try:
            tiles.append((answer, image_tile(answer["image"])))
        except images.ImageError as error:
            answer["error"] = str(error)
    if tiles:
        stacked = np.stack([tile for _, tile in tiles])
        per_model = [decide.decide(model, model.predict(stacked), min_confidence, max(label_count, 1))
                     for model in served]
        for index, (answer, tile) in enumerate(tiles):
            answer.update(_answer([decisions[index] for decisions in per_model], images.is_flat(tile), engine))
    return "+".join(model.model_id for model in served), answers


def _answer(decisions: list, flat: bool, engine) -> dict:
    """One image's answer from each model's Decision (tasks/tag/decide.py)."""
    from tasks.data import images
    from tasks.tag import decide

    if flat:  # a blank picture: nothing to recognise, whatever a model says (the tag stage's rule)
        decisions = [decide.blank(d, images.FLAT_REASON) for d in decisions]
    labels, coarse = decide.merged_labels(decisions)
    abstained = all(d.abstained for d in decisions)
    answer = {"abstained": abstained,
              "labels": [{"label": name, "probability": round(p, 4), "dataset": d.dataset}
                         for d in decisions for name, p in d.labels],
              "coarse_labels": [{"label": name, "probability": round(p, 4)}
                                for d in decisions for name, p in d.coarse[:1]],
              "hashtags": [] if abstained else [
                  {"hashtag": tag.hashtag, "source": tag.source, "label": tag.label, "score": round(tag.score, 4)}
                  for tag in engine.hashtags(labels, coarse)],
              "models": [{"model": d.model_id, "dataset": d.dataset, "score": round(d.score, 4),
                          "min_confidence": round(d.min_confidence, 4), "abstained": d.abstained}
                         for d in decisions]}
    if abstained:
        answer["reason"] = "; ".join(d.reason for d in decisions)
    return answer


def shown_name(name: str) -> str:
    """A file name or URI safe to print: control characters and non-UTF-8 bytes escaped."""
    from tasks.tag import sources

    return sources.shown(name)


def escaped_name(name: str) -> str:
    """A name as the results database stores it: non-UTF-8 bytes and NUL escaped (reversibly)."""
    from tasks.tag import refs

    return refs.escaped(name)


def image_tile(path: str):
    """The 32x32 RGB uint8 tile of one image file, as tagging makes it; ImageError with a reason people read."""
    from tasks.data import images
    from tasks.tag import sources

    try:
        data = sources.read_file(path)
    except sources.UnreadableImage as error:
        raise images.ImageError(str(error)) from None
    try:
        return images.decode(data)
    except images.ImageError:
        raise
    except Exception as error:  # noqa: BLE001  a decoder bug on one file: still answer the others
        raise images.ImageError(f"unreadable image ({type(error).__name__}: {error})") from None
