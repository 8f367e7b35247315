"""Export a model artifact to ONNX (`model.onnx` beside `model.keras`) for the serving path.

Keras exports ONNX through tf2onnx, so it needs the TensorFlow backend; from a process on another
backend (JAX) the export runs in a child process with KERAS_BACKEND=tensorflow.
Run as `python -m tasks.registry.export ARTIFACT_DIR`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

from tasks.registry import artifact

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """The ONNX export failed; the message carries the exporter's reason."""


def onnx_path(artifact_dir: str | Path) -> Path:
    return Path(artifact.read_metadata(artifact_dir)["path"]) / artifact.ONNX_FILE


def export_onnx(artifact_dir: str | Path, overwrite: bool = False) -> Path:
    """Write `model.onnx` into the artifact folder (atomically) and return its path."""
    target = onnx_path(artifact_dir)
    if target.exists() and not overwrite:
        return target
    import keras

    if keras.backend.backend() != "tensorflow":
        return _export_in_child(target.parent, overwrite)
    import numpy as np

    staging = target.with_name(f".staging-{os.getpid()}-{target.name}")
    try:
        from models.layers import exportable

        model, metadata = artifact.load_keras(target.parent)
        model = exportable(model)
        # a loaded model has not been called yet, and the exporter traces only called models
        model.predict_on_batch(np.zeros((1, *metadata["input"]["shape"]), dtype="float32"))
        with warnings.catch_warnings():
            # Keras' tf2onnx patch probes `hasattr(np, "object")`, which NumPy 2 answers with this
            # FutureWarning on every promotion; nothing for a user to do about it
            warnings.filterwarnings("ignore", message=r"In the future `np\.object` will be defined",
                                    category=FutureWarning, module=r"keras\.src\.export\.tf2onnx_lib")
            model.export(str(staging), format="onnx", verbose=False)
        check_onnx(staging, model, metadata)
        os.replace(staging, target)
    except Exception as error:  # tf2onnx raises many kinds; the caller needs one
        staging.unlink(missing_ok=True)
        raise ExportError(f"ONNX export of {target.parent} failed: {error}") from error
    log.info("exported %s", target)
    return target


ONNX_TOLERANCE = 1e-5  # largest difference from Keras' probabilities the export may show


def check_onnx(onnx_file: Path, model, metadata: dict) -> float:
    """Run the exported file on ONNX Runtime against Keras on the same images (the artifact's
    fingerprint images, else random ones); raises ExportError beyond ONNX_TOLERANCE (tf2onnx writes a
    file that does not load when it meets an op it cannot convert). Returns the largest difference."""
    import numpy as np
    import onnxruntime

    fingerprint = Path(metadata["path"]) / artifact.FINGERPRINT_FILE
    if fingerprint.exists():
        with np.load(fingerprint) as saved:
            images = saved["images"].astype("float32")
    else:
        images = np.random.default_rng(0).integers(0, 256, (8, *metadata["input"]["shape"])).astype("float32")
    try:
        session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        exported = session.run(None, {name: images})[0]
    except Exception as error:  # noqa: BLE001  onnxruntime raises its own kinds for invalid graphs
        raise ExportError(f"the exported model does not run on ONNX Runtime: {error}") from error
    difference = float(np.max(np.abs(exported - np.asarray(model.predict_on_batch(images)))))
    if difference > ONNX_TOLERANCE:
        raise ExportError(f"ONNX and Keras differ by {difference:.2e} (more than {ONNX_TOLERANCE:.0e})")
    return difference


def _export_in_child(folder: Path, overwrite: bool) -> Path:
    command = [sys.executable, "-m", "tasks.registry.export", str(folder)] + (["--overwrite"] if overwrite else [])
    done = subprocess.run(command, env={**os.environ, "KERAS_BACKEND": "tensorflow"},
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise ExportError(f"ONNX export of {folder} (TensorFlow backend, in a child process) failed: "
                          f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return folder / artifact.ONNX_FILE


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tasks.registry.export", description=__doc__.splitlines()[0])
    parser.add_argument("artifact_dir")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        print(export_onnx(args.artifact_dir, args.overwrite))
    except (ExportError, artifact.ArtifactError) as error:
        print(f"export: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
