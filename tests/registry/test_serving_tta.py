"""Serving TTA (`hashtagger models tta`): the wrapped model gives evaluate's flip-TTA probabilities, its
ONNX export the same within 1e-5, its fingerprint verifies, and evaluate measures it like any model."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tasks.registry import artifact
from tasks.tag import predictor

pytest.importorskip("onnxruntime")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "tensorflow":
    pytest.skip("ONNX export needs the TensorFlow backend", allow_module_level=True)

TOLERANCE = 1e-5
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.fixture(scope="module")
def sample_images() -> np.ndarray:
    """The photos in samples/ (RGB), resized to 32x32: uint8 (N, 32, 32, 3)."""
    from PIL import Image

    images = []
    for path in sorted(SAMPLES.glob("*.jpg")):
        with Image.open(path) as image:
            images.append(np.asarray(image.convert("RGB").resize((32, 32), Image.BICUBIC), dtype=np.uint8))
    return np.stack(images)


def test_the_bundled_model_with_flip_tta_inside_serves_evaluate_s_flip_probabilities(sample_images, hashtagger_home):
    """The airbench network (GELUs inside the nested model) wrapped, saved, reloaded, exported."""
    from tasks.evaluate.evaluate import tta_probabilities
    from tasks.registry import export, tta

    source = predictor.bundled_model("cifar10")
    metadata = tta.with_tta(source)
    assert Path(metadata.path) == hashtagger_home / "models" / f"{artifact.read(source).model_id}-flip"
    assert metadata.serving_tta == "flip" and metadata.metrics == {}
    assert metadata.derived_from["model_id"] == artifact.read(source).model_id
    assert metadata.derived_from["command"].startswith("hashtagger models tta ")
    assert metadata.reproduce == artifact.read(source).reproduce  # still the train command
    assert artifact.verify(metadata.path) < 1e-6

    plain, _ = artifact.load_keras(source)
    wrapped, _ = artifact.load_keras(metadata.path)
    images = sample_images.astype("float32")
    expected = tta_probabilities(plain.predict_on_batch, images, "flip")
    served = np.asarray(wrapped.predict_on_batch(images))
    assert np.max(np.abs(served - expected)) < TOLERANCE
    assert np.max(np.abs(served - np.asarray(plain.predict_on_batch(images)))) > 1e-3  # not the plain model

    export.export_onnx(metadata.path)
    onnx_model = predictor.load(metadata.path)
    assert onnx_model.runtime == "onnx"
    assert np.max(np.abs(onnx_model.predict(sample_images) - expected)) < TOLERANCE

    with pytest.raises(artifact.ArtifactError, match="already serves with flip"):
        tta.with_tta(metadata.path, hashtagger_home / "twice")
    with pytest.raises(artifact.ArtifactError, match="exists already"):
        tta.with_tta(source)


def test_evaluate_measures_the_wrapped_model_as_the_flip_figure_of_the_plain_one(tiny_cifar, hashtagger_home):
    from tasks.evaluate import evaluate
    from tasks.registry import tta
    from tasks.train import train

    trained = train.train(train.TrainConfig(
        architecture="shallow", recipe="seed", epochs=1, train_limit=64, recipe_overrides=(("batch_size", 32),),
        reports=False, verbose=0))
    config = evaluate.EvaluateConfig(figures=False)
    plain = evaluate.evaluate_artifact(trained["path"], tta="flip", config=config)
    wrapped = tta.with_tta(trained["path"], hashtagger_home / "served-flip")
    served = evaluate.evaluate_artifact(wrapped.path, config=config)
    assert served.serving_tta == "flip" and plain.serving_tta == "none"
    assert served.test_top1 == pytest.approx(plain.test_top1_tta, abs=1.5 / served.test_images)
    assert served.calibration["temperature"] > 0 and "threshold" in served.ood
    assert artifact.read(wrapped.path).test_top1 == served.test_top1  # recorded beside the model
    assert evaluate.recipe_tta(artifact.read_metadata(wrapped.path)) == "none"  # no TTA on top of TTA


def test_the_tta_command_through_the_console_script(bin_dir, hashtagger_home, tmp_path):
    import os

    env = {**os.environ, "HASHTAGGER_HOME": str(hashtagger_home)}
    destination = tmp_path / "cifar10-flip"
    made = subprocess.run([bin_dir / "hashtagger", "models", "tta", str(predictor.bundled_model("cifar10")),
                           str(destination)], env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    assert f"at {destination}" in made.stdout and "hashtagger evaluate" in made.stdout
    assert artifact.read(destination).serving_tta == "flip"

    for source, message in ((destination, "already serves with flip"), (tmp_path, "not a hashtagger model")):
        refused = subprocess.run([bin_dir / "hashtagger", "models", "tta", str(source), str(tmp_path / "other")],
                                 env=env, capture_output=True, text=True)
        assert refused.returncode == 2
        assert message in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
