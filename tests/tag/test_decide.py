"""Serving-side confidence: the fitted temperature applied, abstention below the model's threshold,
and two models' decisions merged (tasks/tag/predictor.py, tasks/tag/decide.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.evaluate import calibration
from tasks.registry import artifact
from tasks.tag import decide
from tasks.tag.predictor import Predictor


def predictor(probabilities: np.ndarray, temperature: float | None, threshold: float | None,
              class_names=("cat", "dog", "ship"), dataset="cifar10", coarse=None) -> Predictor:
    metrics = {}
    if temperature is not None:
        metrics["calibration"] = {"temperature": temperature}
    if threshold is not None:
        metrics["ood"] = {"threshold": threshold}
    metadata = {"model_id": f"m-{dataset}", "dataset": dataset, "class_names": list(class_names),
                "metrics": metrics, **(coarse or {})}
    return Predictor(artifact.ModelMetadata.from_dict(metadata), "onnx", lambda batch: probabilities[: len(batch)])


def test_serving_applies_the_fitted_temperature():
    raw = calibration.softmax(np.array([[3.0, 1.0, 0.0], [0.2, 0.1, 0.0]]))
    served = predictor(raw, 2.0, None).predict(np.zeros((2, 32, 32, 3), np.uint8))
    np.testing.assert_allclose(served, calibration.softmax(np.log(raw) / 2.0), rtol=1e-5)
    assert served[0].max() < raw[0].max()  # an overconfident model (T > 1) says less
    untouched = predictor(raw, None, None).predict(np.zeros((2, 32, 32, 3), np.uint8))
    np.testing.assert_array_equal(untouched, raw)


def test_serving_applies_top_label_scaling_after_the_temperature():
    raw = calibration.softmax(np.array([[3.0, 1.0, 0.0], [0.2, 0.1, 0.0]]))
    model = predictor(raw, 2.0, None)
    model.metadata.metrics["calibration"]["top_label"] = {"method": "platt", "slope": 0.8, "intercept": 0.1}
    served = model.predict(np.zeros((2, 32, 32, 3), np.uint8))
    expected = calibration.top_label_scale(calibration.scale(raw, 2.0), 0.8, 0.1)
    np.testing.assert_allclose(served, expected, rtol=1e-6)
    confidence = calibration.scale(raw, 2.0).max(axis=1)
    np.testing.assert_allclose(served.max(axis=1), 1 / (1 + np.exp(-(0.8 * np.log(confidence / (1 - confidence))
                                                                      + 0.1))), rtol=1e-6)
    assert served.dtype == np.float32 and (served.argmax(axis=1) == raw.argmax(axis=1)).all()
    np.testing.assert_allclose(served.sum(axis=1), 1.0, rtol=1e-6)
    scaled = calibration.scale(raw, 2.0)  # the others keep the temperature's proportions
    np.testing.assert_allclose(served[:, 1] / served[:, 2], scaled[:, 1] / scaled[:, 2], rtol=1e-5)
    assert model.predict(np.zeros((0, 32, 32, 3), np.uint8)).shape == (0, 3)


def test_below_the_threshold_the_model_abstains_but_keeps_its_candidates():
    probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25]])
    model = predictor(probs, None, 0.5)
    sure, unsure = decide.decide(model, probs)
    assert (sure.abstained, sure.label, sure.score) == (False, "cat", pytest.approx(0.9))
    assert unsure.abstained and unsure.label is None and unsure.score == pytest.approx(0.4)
    assert [name for name, _ in unsure.labels] == ["cat", "dog", "ship"]
    assert "no confident label" in unsure.reason and "cat at 40%" in unsure.reason
    assert not any(d.abstained for d in decide.decide(model, probs, min_confidence=0.0))
    assert all(d.abstained for d in decide.decide(model, probs, min_confidence=0.95))
    # a threshold the user gave is theirs, not the model's; figures that round alike print apart
    certain = np.array([[0.998, 0.001, 0.001]])
    (asked,) = decide.decide(predictor(certain, None, 0.5), certain, min_confidence=0.999)
    assert asked.reason == "no confident label: best guess cat at 99.8% is below the 99.9% asked for"


def test_a_score_equal_to_the_threshold_keeps_its_label_after_float32_rounding():
    """The threshold is a float64 validation score; serving's probabilities are float32. An image scoring
    exactly the threshold, rounded to float32 on its way out of the predictor, still meets it."""
    threshold = 0.45  # float32 rounds it down, to 0.44999998807907104
    assert float(np.float32(threshold)) < threshold
    probs = np.array([[threshold, 1 - threshold - 0.1, 0.1]]).astype(np.float32)
    (decision,) = decide.decide(predictor(probs, None, threshold), probs)
    assert not decision.abstained and decision.min_confidence == threshold  # the record keeps the threshold
    below = np.array([[np.nextafter(np.float32(threshold), np.float32(0)), 0.35, 0.2]], np.float32)  # one step less
    assert decide.decide(predictor(below, None, threshold), below)[0].abstained


def test_a_stored_map_outside_the_served_bounds_serves_the_temperature_alone(caplog):
    """A hand-edited (or corrupted) metadata slope <= 0 would reverse the confidence ranking: it is not served."""
    raw = calibration.softmax(np.array([[3.0, 1.0, 0.0], [0.2, 0.1, 0.0]]))
    model = predictor(raw, 2.0, None)
    model.metadata.metrics["calibration"]["top_label"] = {"method": "platt", "slope": -1.0, "intercept": 0.0}
    served = model.predict(np.zeros((2, 32, 32, 3), np.uint8))
    np.testing.assert_allclose(served, calibration.scale(raw, 2.0), rtol=1e-6)
    assert "outside what is served" in caplog.text


def test_two_models_merge_only_what_each_is_sure_of():
    cifar10 = predictor(np.array([[0.3, 0.3, 0.4]]), None, 0.5)
    cifar100 = predictor(np.array([[0.1, 0.8, 0.1]]), None, 0.5, class_names=("cup", "plate", "bowl"),
                         dataset="cifar100",
                         coarse={"fine_to_coarse": [0, 0, 0], "coarse_class_names": ["food_containers"]})
    decisions = decide.decide(cifar10, np.array([[0.3, 0.3, 0.4]])) + \
        decide.decide(cifar100, np.array([[0.1, 0.8, 0.1]]))
    assert [d.abstained for d in decisions] == [True, False]  # a plate is not a CIFAR-10 thing
    labels, coarse = decide.merged_labels(decisions)
    assert labels[0] == ("plate", pytest.approx(0.8)) and {name for name, _ in labels} == {"cup", "plate", "bowl"}
    assert coarse == [("food_containers", pytest.approx(1.0))]


def test_hashtag_abstains_on_text_grey_and_noise_and_labels_the_samples(tmp_path, bin_dir):
    """The bundled CIFAR-10 model, as a user runs it: a page of printed text, a flat grey picture and
    noise get no confident label; the sample photos get theirs."""
    import json
    import subprocess
    from pathlib import Path

    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(0)
    page = Image.new("RGB", (800, 1000), "white")
    draw = ImageDraw.Draw(page)
    words = "the quick brown fox jumps over the lazy dog invoice total amount due page".split()
    for line in range(30):
        draw.text((40, 30 + line * 31), " ".join(rng.choice(words, 8)), fill="black",
                  font=ImageFont.load_default(size=22))
    page.save(tmp_path / "text.jpg", quality=90)
    Image.new("RGB", (300, 300), (128, 128, 128)).save(tmp_path / "grey.png")
    Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    samples = sorted((Path(__file__).resolve().parents[2] / "samples").glob("*.jpg"))
    unknown = [tmp_path / name for name in ("text.jpg", "grey.png", "noise.png")]
    answered = subprocess.run([bin_dir / "hashtag", "--json", *map(str, unknown + samples)],
                              capture_output=True, text=True, timeout=120)
    assert answered.returncode == 0, answered.stderr
    results = {Path(result["image"]).name: result for result in json.loads(answered.stdout)["results"]}
    for name in ("text.jpg", "grey.png", "noise.png"):
        assert results[name]["abstained"] and results[name]["hashtags"] == [], results[name]
        assert "no confident label" in results[name]["reason"] and results[name]["labels"]  # candidates kept
    # a blank picture: the tag stage's one rule, candidates kept at probability 0 as `tag` stores them
    assert results["grey.png"]["labels"] and all(label["probability"] == 0 for label in results["grey.png"]["labels"])
    assert results["grey.png"]["models"][0]["score"] == 0 and "blank" in results["grey.png"]["reason"]
    for sample in samples:
        result = results[sample.name]
        assert not result["abstained"] and result["labels"][0]["label"] == sample.stem, result
        assert result["hashtags"]


def test_hashtag_with_both_models_merges_their_labels(bin_dir):
    import json
    import subprocess
    from pathlib import Path

    horse = Path(__file__).resolve().parents[2] / "samples" / "horse.jpg"
    answered = subprocess.run([bin_dir / "hashtag", "--json", "--dataset", "both", str(horse)],
                              capture_output=True, text=True, timeout=120)
    assert answered.returncode == 0, answered.stderr
    document = json.loads(answered.stdout)
    result = document["results"][0]
    assert {model["dataset"] for model in result["models"]} == {"cifar10", "cifar100"}
    assert "+" in document["model"]
    assert {label["dataset"] for label in result["labels"]} == {"cifar10", "cifar100"}
    assert result["labels"][0]["label"] == "horse" and not result["abstained"]
    assert result["coarse_labels"]  # CIFAR-100's superclass rides along
    # ranked by the confidence of the label each hashtag came from: horse (99%) before cattle (73%)
    confidence = {label["label"]: label["probability"] for label in result["labels"]}
    order = [confidence.get(tag["label"], 0) for tag in result["hashtags"]]
    assert order == sorted(order, reverse=True) and result["hashtags"][0]["label"] == "horse", result["hashtags"]
    labels = [tag["label"] for tag in result["hashtags"]]
    assert labels == sorted(labels, key=lambda label: -confidence[label]), "one label's hashtags, then the next's"


def test_a_merged_hashtag_list_leaves_out_what_an_abstaining_model_offered():
    """bird.jpg: the CIFAR-100 model is not confident (below its threshold), the CIFAR-10 one is; only
    the confident model's labels give hashtags, and each model's candidates stay in `labels`."""
    from pathlib import Path

    from tasks import pipeline

    bird = Path(__file__).resolve().parents[2] / "samples" / "bird.jpg"
    _, (result,) = pipeline.hashtag_images([str(bird)], dataset="both")
    abstained = {model["dataset"]: model["abstained"] for model in result["models"]}
    assert abstained == {"cifar10": False, "cifar100": True}
    offered = {label["label"] for label in result["labels"] if label["dataset"] == "cifar100"}
    assert offered and not offered & {tag["label"] for tag in result["hashtags"]}
    assert result["hashtags"] and {tag["label"] for tag in result["hashtags"]} <= {
        label["label"] for label in result["labels"] if label["dataset"] == "cifar10"}


def test_tag_lists_an_abstention_and_a_lower_threshold_never_labels_a_blank(tmp_path, bin_dir):
    import shutil
    import subprocess
    from pathlib import Path

    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "samples" / "cat.jpg", folder)
    Image.new("RGB", (300, 300), (128, 128, 128)).save(folder / "grey.png")
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(
        folder / "noise.png")
    first = subprocess.run([bin_dir / "hashtagger", "tag", str(folder)], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0 and "Traceback" not in first.stderr, first.stderr
    assert "2 with no confident label" in first.stdout and "(no label)" in first.stdout
    # a threshold low enough for the noise relabels it from its stored score; the blank stays unlabelled
    again = subprocess.run([bin_dir / "hashtagger", "tag", str(folder), "--min-confidence", "0.01"],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "1 earlier result decided again" in again.stdout
    # and back: the model's own threshold decides the stored results again
    back = subprocess.run([bin_dir / "hashtagger", "tag", str(folder), "--min-confidence", "model"],
                          capture_output=True, text=True, timeout=120)
    assert back.returncode == 0, back.stderr
    assert "1 earlier result decided again" in back.stdout and "2 with no confident label" not in back.stdout
