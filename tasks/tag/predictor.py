"""Serving: a trained model behind one `predict(uint8 batch) -> probabilities` call.

ONNX Runtime runs the exported `model.onnx` when the artifact has one (no TensorFlow import); Keras is
the fallback.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from tasks.evaluate import calibration
from tasks.registry import artifact

BUNDLED_DIR = Path(__file__).resolve().parent.parent.parent / "models" / "bundled"


class ModelNotFound(LookupError):
    """No model to serve: train one, or name one with --model."""


@dataclasses.dataclass
class Predictor:
    """A loaded model: its metadata, the runtime answering, and the call that answers."""

    metadata: artifact.ModelMetadata
    runtime: str  # onnx | keras
    _run: object

    @property
    def model_id(self) -> str:
        """The model's id (stored as `model_version` in the results tables)."""
        return self.metadata.model_id

    @property
    def class_names(self) -> list[str]:
        return self.metadata.class_names

    @property
    def dataset(self) -> str:
        return self.metadata.dataset or ""

    @property
    def calibrator(self) -> calibration.Calibrator:
        """Temperature, then top-label Platt scaling, as fitted on validation data (metrics.calibration;
        tasks/evaluate/calibration.py); what changes nothing when the model has no calibration."""
        return calibration.Calibrator.from_metrics((self.metadata.metrics or {}).get("calibration"))

    @property
    def min_confidence(self) -> float:
        """The abstention threshold on the calibrated maximum probability (metrics.ood.threshold,
        chosen on validation data to keep 95% of known images); 0.0 (never abstain) when there is none."""
        return float(((self.metadata.metrics or {}).get("ood") or {}).get("threshold") or 0.0)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Calibrated float32 probabilities (N, classes) for raw uint8 images (N, 32, 32, 3): the model's
        output through its calibrator (the fitted temperature, then top-label Platt scaling)."""
        raw = self.uncalibrated(images)
        calibrator = self.calibrator
        if calibrator == calibration.Calibrator():
            return raw
        return calibrator(raw).astype(np.float32)

    def uncalibrated(self, images: np.ndarray) -> np.ndarray:
        """The network's own softmax, float32 (N, classes), for raw uint8 images (N, 32, 32, 3): what
        calibration is fitted on."""
        if len(images) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return self._run(np.asarray(images))

    def top_labels(self, probabilities: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        """The k most probable (label, probability) pairs of one image, best first."""
        return self.top_labels_batch(np.asarray(probabilities)[None], k)[0]

    def top_labels_batch(self, probabilities: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
        """top_labels for every row of (N, classes) probabilities, in one numpy call."""
        k = min(k, probabilities.shape[1])
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
        chosen = np.take_along_axis(probabilities, order, axis=1).tolist()
        names = self.class_names
        return [[(names[index], value) for index, value in zip(row, values)]
                for row, values in zip(order.tolist(), chosen)]

    def coarse_labels(self, probabilities: np.ndarray, k: int = 1) -> list[tuple[str, float]]:
        """CIFAR-100 superclasses, each with the summed probability of its fine classes."""
        mapping, names = self.metadata.fine_to_coarse, self.metadata.coarse_class_names
        if not mapping or not names:
            return []
        sums = np.bincount(np.asarray(mapping), weights=probabilities, minlength=len(names))
        return [(names[i], float(sums[i])) for i in np.argsort(-sums)[:k]]


def bundled_model(dataset: str = "cifar10") -> Path:
    path = BUNDLED_DIR / dataset
    if not (path / artifact.METADATA_FILE).exists():
        raise ModelNotFound(f"no bundled {dataset} model in {BUNDLED_DIR}")
    return path


def load(path: str | Path | None = None, runtime: str = "auto", s3_settings=None) -> Predictor:
    """The model at `path` (an artifact folder or a registry reference: bundled:, home:, s3://, the last
    reached through `s3_settings`, tasks.config.S3Settings), else the bundled CIFAR-10 model.

    runtime: auto (ONNX when exported, else Keras), onnx (ModelNotFound without model.onnx), or keras.
    """
    from tasks.registry import artifact_store

    path = artifact_store.resolve(path, s3_settings=s3_settings) if path else bundled_model()
    metadata = artifact.read(path)
    onnx_path = Path(metadata.path) / artifact.ONNX_FILE
    if runtime == "onnx" and not onnx_path.exists():
        raise ModelNotFound(f"{path}: no {artifact.ONNX_FILE} to serve; export it with `hashtagger models export "
                            f"{path}` (needs hashtagger[train])")
    if runtime == "onnx" or (runtime == "auto" and onnx_path.exists()):
        return Predictor(metadata, "onnx", _onnx_runner(onnx_path))
    model, _ = artifact.load_keras(path)
    return Predictor(metadata, "keras",
                     lambda batch: np.asarray(model.predict_on_batch(batch.astype(np.float32, copy=False))))


def _onnx_runner(onnx_path: Path):
    """run(uint8 (N, H, W, C)) -> probabilities: the batch cut into one part per usable core
    (HASHTAGGER_ONNX_THREADS sets the count; 0 or unset: one per core), each part one single-threaded
    ONNX Runtime call, the parts in parallel, none under MIN_PART images (a smaller batch is one call).

    One call on two intra-op threads splits every operator between them and waits for both: when a
    decoding thread takes one core, the whole call runs at the pace of the thread that lost it. Calls
    of one thread each wait only at the end of their part, so the cores' time goes where it is free
    (reports/tag_throughput.md, "ONNX Runtime: one call on all cores or one call per core").
    """
    import concurrent.futures

    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no warnings about unused initialisers on stderr
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    model_input = session.get_inputs()[0]
    dtype = np.uint8 if model_input.type == "tensor(uint8)" else np.float32  # the model scales inside
    parts = int(os.environ.get("HASHTAGGER_ONNX_THREADS") or 0) or usable_cores()
    pools: dict[int, concurrent.futures.ThreadPoolExecutor] = {}  # by process id: a forked child starts its own

    def call(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {model_input.name: batch})[0]  # ONNX Runtime releases the GIL; run is thread-safe

    def run(batch: np.ndarray) -> np.ndarray:
        batch = batch.astype(dtype, copy=False)
        if parts < 2 or len(batch) < 2 * MIN_PART:
            return call(batch)
        pool = pools.get(os.getpid())
        if pool is None:
            pool = pools[os.getpid()] = concurrent.futures.ThreadPoolExecutor(parts, thread_name_prefix="onnx")
        pieces = np.array_split(batch, min(parts, len(batch) // MIN_PART))
        return np.concatenate(list(pool.map(call, pieces)))

    return run


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: taskset, cpusets), else all of them."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


# images: a smaller part costs more in call overhead than it gains in parallelism. Measured with the
# bundled CIFAR-10 model (flip TTA) on 2 idle cores, median of 5 calls: 8 images in 19 ms as one call, 12 ms
# as two parts of 4; 20 in 47 ms and 30 ms; 4 images as one call or two of 2 within a millisecond or two.
# On 2 cores batches of 32 and more were cut in two before (16) as now: what 4 decides there is a small
# night's lone batch. On more cores a batch is cut into more, smaller parts than with 16 (32 images on 4
# cores: 4 parts of 8, not 2 of 16): not measured on such a machine here.
MIN_PART = 4
