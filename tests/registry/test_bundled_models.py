"""The bundled models ship whole: ONNX and Keras files, metadata that says how they were made, size limits."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest

from tasks.registry import artifact
from tasks.tag import predictor

MAX_BYTES = 15 * 1024 * 1024  # per model file


@pytest.mark.parametrize("dataset, classes", [("cifar10", 10), ("cifar100", 100)])
def test_bundled_model_is_complete_and_small(dataset, classes):
    path = predictor.bundled_model(dataset)
    metadata = artifact.read_metadata(path)
    assert metadata["dataset"] == dataset
    assert len(metadata["class_names"]) == classes
    assert metadata["reproduce"].count("hashtagger train") == 1
    assert metadata["epochs_done"] >= 10
    assert 0.0 < metadata["metrics"]["test_top1"] <= 1.0
    assert metadata["metrics"]["test_images"] == 10_000
    for name in (artifact.MODEL_FILE, artifact.ONNX_FILE):
        assert 0 < (path / name).stat().st_size <= MAX_BYTES
    if dataset == "cifar100":
        assert len(metadata["fine_to_coarse"]) == 100 and len(metadata["coarse_class_names"]) == 20


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_bundled_models_answer_as_they_did_when_saved(dataset):
    """Saved with their probabilities for a few test images (fingerprint.npz): reloaded here under
    TensorFlow on a CPU they agree exactly when trained here, and to float rounding when trained under
    JAX on a GPU (GPU convolutions may round through TF32: 7.3e-4 at most was measured)."""
    path = predictor.bundled_model(dataset)
    backend = artifact.read_metadata(path)["backend"]
    assert artifact.verify(path) < (2e-3 if backend == "jax" else 1e-5)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_bundled_onnx_and_keras_agree(dataset):
    from tasks.registry import export

    path = predictor.bundled_model(dataset)
    model, metadata = artifact.load_keras(path)
    assert export.check_onnx(path / artifact.ONNX_FILE, model, metadata) <= 1e-5


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_bundled_model_serves_on_onnx_runtime(dataset):
    model = predictor.load(predictor.bundled_model(dataset))
    assert model.runtime == "onnx"
    probabilities = model.predict(np.full((2, 32, 32, 3), 128, dtype=np.uint8))
    assert probabilities.shape == (2, len(model.class_names))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_hashtag_answers_with_the_cifar100_model(bin_dir):
    from pathlib import Path

    image = Path(__file__).resolve().parents[2] / "samples" / "horse.jpg"
    answer = subprocess.run([bin_dir / "hashtag", "--dataset", "cifar100", "--json", str(image)],
                            capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    result = json.loads(answer.stdout)["results"][0]
    fine_names = artifact.read_metadata(predictor.bundled_model("cifar100"))["class_names"]
    assert all(item["label"] in fine_names for item in result["labels"])
    assert 1 <= len(result["hashtags"]) <= 10


@pytest.mark.slow
def test_bundled_cifar10_model_scores_90_percent_by_evaluate(bin_dir, prepared_cifar10, tmp_path):
    """The acceptance figure, measured as a user would: prepare the JPEG test set, `hashtagger evaluate`."""
    env, _ = prepared_cifar10
    bundled = predictor.bundled_model("cifar10")
    evaluated = subprocess.run(
        [bin_dir / "hashtagger", "evaluate", str(bundled), "--no-figures", "--no-record",
         "--output", str(tmp_path / "reports")], env=env, capture_output=True, text=True, timeout=900)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "(10,000 test images)" in evaluated.stdout
    # abstention has its own line, apart from the accuracy figures it is not part of
    assert re.search(r"^  abstention: no label for \d+\.\d% of test images \(calibrated confidence below 0\.\d{3}, "
                     r"the threshold that keeps 95% of the validation split\); top-1 \d+\.\d\d% on the rest$",
                     evaluated.stdout, re.M), evaluated.stdout
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert metrics["test_images"] == 10_000
    assert metrics["test_top1"] >= 0.90
    # the figure the metadata (and README) states is the one measured here, to the image
    assert metrics["test_top1"] == pytest.approx(artifact.read_metadata(bundled)["metrics"]["test_top1"], abs=1e-4)


@pytest.mark.parametrize("parts", ["1", "3"])
def test_a_batch_cut_into_parallel_calls_answers_as_one_image_at_a_time(monkeypatch, parts):
    """Serving cuts a batch into one single-threaded ONNX Runtime call per core (HASHTAGGER_ONNX_THREADS
    parts here): the parts come back in order, each image's answer the one it gets alone."""
    monkeypatch.setenv("HASHTAGGER_ONNX_THREADS", parts)
    model = predictor.load(predictor.bundled_model("cifar10"), runtime="onnx")
    images = np.random.default_rng(3).integers(0, 256, (101, 32, 32, 3), dtype=np.uint8)
    batch = model.predict(images)
    alone = np.concatenate([model.predict(images[index:index + 1]) for index in range(len(images))])
    assert batch.shape == (101, 10)
    np.testing.assert_allclose(batch, alone, atol=1e-6)
    # a small night's lone batch is cut too (parts of predictor.MIN_PART and more)
    np.testing.assert_allclose(model.predict(images[:9]), alone[:9], atol=1e-6)
    assert len(set(batch.argmax(axis=1).tolist())) > 1, "random images, not one answer repeated"
