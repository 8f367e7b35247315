"""ONNX export: every architecture's ONNX model gives Keras' probabilities within 1e-5 on real CIFAR
images, and promotion exports the new champion so that serving runs on ONNX Runtime."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tasks import pipeline
from tasks.registry import artifact
from tasks.store import db
from tasks.tag import predictor
from tasks.registry import promote
from tasks.config import Settings

pytest.importorskip("onnxruntime")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "tensorflow":
    pytest.skip("ONNX export needs the TensorFlow backend", allow_module_level=True)

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def real_images(shared_data) -> tuple[np.ndarray, np.ndarray]:
    """64 test images of the CIFAR-10 JPEG archive in ../shared/data (decoded RGB) and their labels."""
    archive = shared_data / "cifar10-jpeg.tar.gz"
    from PIL import Image

    from tasks.data.prepare import CIFAR10_CLASSES

    images, labels, per_class = [], [], {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if not (member.isfile() and len(parts) >= 3 and parts[-3] == "test" and parts[-2] in CIFAR10_CLASSES):
                continue
            if per_class.get(parts[-2], 0) < 7:  # a few of every class
                per_class[parts[-2]] = per_class.get(parts[-2], 0) + 1
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as image:
                    images.append(np.asarray(image.convert("RGB"), dtype=np.uint8))
                labels.append(CIFAR10_CLASSES.index(parts[-2]))
            if len(images) == 64:
                break
    return np.stack(images), np.asarray(labels)


def saved_sharpened(architecture: str, images: np.ndarray, settings: Settings) -> Path:
    """A freshly initialised model, its class layer scaled up so that its probabilities are far from
    uniform (a fresh all-conv net answers 0.1 +- 0.001 everywhere, which would prove little), saved."""
    import models
    from models.layers import preprocessing_layer

    keras.utils.set_random_seed(0)
    model = models.build(architecture)
    preprocessing_layer(model).fit_statistics(images)
    class_layer = [layer for layer in model.layers if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))][-1]
    # logits are linear in the class kernel (its bias is still zero): stretch them to a spread of about 6
    logit_spread = np.ptp(np.log(np.asarray(model.predict_on_batch(images[:16].astype("float32")))), axis=1).mean()
    class_layer.kernel.assign(class_layer.kernel * (6.0 / logit_spread))
    metadata = {"model_id": f"{architecture}-export-test", "architecture": architecture,
                "class_names": [str(index) for index in range(10)],
                "input": {"shape": [32, 32, 3], "pixels": "raw RGB 0-255"}}
    return Path(artifact.save(model, metadata, settings)["path"])


@pytest.mark.parametrize("architecture", ["shallow", "allconv", "resnet", "vgg16", "resnet9"])
def test_onnx_gives_keras_probabilities_on_real_images(architecture, real_images, hashtagger_home):
    from tasks.registry import export

    real_images, _ = real_images
    folder = saved_sharpened(architecture, real_images, Settings.from_env())
    assert export.export_onnx(folder) == folder / artifact.ONNX_FILE
    keras_probabilities = predictor.load(folder, runtime="keras").predict(real_images)
    onnx_model = predictor.load(folder)  # auto: the ONNX file is there now
    assert onnx_model.runtime == "onnx"
    onnx_probabilities = onnx_model.predict(real_images)
    assert onnx_probabilities.shape == keras_probabilities.shape == (64, 10)
    assert np.max(np.abs(onnx_probabilities - keras_probabilities)) < TOLERANCE
    assert np.ptp(keras_probabilities) > 0.2, "outputs this flat would make the comparison vacuous"
    # any batch size: the exported graph keeps the batch dimension open
    np.testing.assert_allclose(onnx_model.predict(real_images[:3]), keras_probabilities[:3], atol=TOLERANCE)


def test_promotion_exports_the_champion_and_serving_uses_it(tiny_cifar, real_images, hashtagger_home):
    from tasks.train import train

    real_images, _ = real_images
    metadata = train.train(train.TrainConfig(
        architecture="vgg16", recipe="fast", epochs=1, train_limit=64, recipe_overrides=(("batch_size", 32),),
        reports=False, verbose=0))
    pipeline.register_model(metadata)  # the one path into the registry, as `hashtagger train` takes it
    engine = db.engine(Settings.from_env().database_url)
    folder = Path(metadata["path"])
    assert not (folder / artifact.ONNX_FILE).exists()

    # a 1-epoch train_limit run is a smoke run: never promoted automatically, and nothing is exported
    assert "smoke run" in promote.auto_promote(engine, metadata["model_id"]).reason
    assert not (folder / artifact.ONNX_FILE).exists()
    decision = promote.promote_manually(engine, metadata["model_id"], "by hand, to test the export")
    assert decision.promoted and (folder / artifact.ONNX_FILE).exists()
    assert pipeline.champion_path("cifar10") == f"home:models/{folder.name}"
    served = pipeline.serving_model(dataset="cifar10")
    assert served.runtime == "onnx" and served.model_id == metadata["model_id"]
    keras_probabilities = predictor.load(folder, runtime="keras").predict(real_images)
    assert np.max(np.abs(served.predict(real_images) - keras_probabilities)) < TOLERANCE


def test_the_export_prints_no_numpy_future_warning(real_images, hashtagger_home):
    """Keras' tf2onnx patch makes NumPy 2 warn about `np.object` on every promotion; a fresh process (the
    patch runs once a process) shows that the export says nothing of it, and still exports."""
    import subprocess
    import sys

    folder = saved_sharpened("shallow", real_images[0], Settings.from_env())
    done = subprocess.run([sys.executable, "-W", "always::FutureWarning", "-m", "tasks.registry.export", str(folder)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (folder / artifact.ONNX_FILE).exists()
    assert "np.object" not in done.stderr and "FutureWarning" not in done.stderr, done.stderr
