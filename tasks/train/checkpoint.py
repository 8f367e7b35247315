"""Resumable training: the trainer's whole state at every epoch end, and a rerun that picks it up.

The same idea as Keras' `BackupAndRestore`, done here because a resumed run also needs what that
callback does not keep: the learning curves of the epochs before the kill, the wall-clock time spent on
them, and the epoch the host-side augmentation (tasks/train/batches.py) must continue from.

A run's checkpoint folder is `$HASHTAGGER_HOME/checkpoints/<key>/`, where `key` is a hash of everything
that makes two runs the same run (TrainConfig less its reporting switches, with the dataset version
resolved), so running the same `hashtagger train` command again, or an Airflow retry of the same task,
finds it, and any other run does not. It holds:

- `trainer.weights.h5`: `trainer.save_weights` (Keras 3 writes the model's layers and the compiled
  optimizer's variables: momentum, lookahead's slow weights, the step counter the schedule reads);
- `state.json`: `{"epochs_done": N, "seconds": float, "history": {metric: [one float per epoch]}}`.

Both are written to a temporary name and renamed, weights first, so a kill at any instant leaves the
last complete epoch. The folder is removed once the finished model is saved.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

log = logging.getLogger(__name__)

WEIGHTS = "trainer.weights.h5"
STATE = "state.json"
# TrainConfig fields that change what is reported, not what is trained
NOT_IDENTITY = ("reports", "verbose", "budget_minutes")
# Fields added after runs were checkpointed: part of a run's identity only when set, so that a run
# started before the field existed keeps its key (and resumes)
IDENTITY_WHEN_SET = ("init_from",)


@dataclasses.dataclass(frozen=True)
class Resumed:
    """What a checkpoint holds: epochs completed, training seconds spent on them, their history."""

    epochs_done: int = 0
    seconds: float = 0.0
    history: dict = dataclasses.field(default_factory=dict)


def settings_key(config, dataset_version: str) -> str:
    """16 hex digits naming one training run: `config` (a TrainConfig) less its reporting switches,
    with the dataset version it trains on."""
    fields = {name: value for name, value in dataclasses.asdict(config).items() if name not in NOT_IDENTITY
              and not (name in IDENTITY_WHEN_SET and value is None)}
    fields["dataset_version"] = dataset_version
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def folder(checkpoints_dir: Path, config, dataset_version: str) -> Path:
    return checkpoints_dir / f"{config.architecture}-{config.dataset}-{settings_key(config, dataset_version)}"


def load(path: Path, trainer) -> Resumed:
    """Restore `trainer` (compiled, its optimizer unbuilt) from `path`; Resumed() when there is nothing.

    A checkpoint that cannot be read (a torn file from a kill during the rename is impossible, but a
    disk error is not) is logged and ignored: the run starts over rather than failing.
    """
    state_file, weights = path / STATE, path / WEIGHTS
    if not (state_file.is_file() and weights.is_file()):
        return Resumed()
    try:
        state = json.loads(state_file.read_text())
        trainer.optimizer.build(trainer.trainable_variables)
        trainer.load_weights(weights)
    except (OSError, ValueError, KeyError) as error:
        log.warning("checkpoint %s unreadable (%s); training from the start", path, error)
        return Resumed()
    return Resumed(int(state["epochs_done"]), float(state["seconds"]),
                   {key: list(values) for key, values in state["history"].items()})


def callback(path: Path, resumed: Resumed):
    """A Keras callback that writes the checkpoint at every epoch end; `resumed` seeds its history."""
    import keras

    class EpochCheckpoint(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.history = {key: list(values) for key, values in resumed.history.items()}
            self.started = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            for key, value in (logs or {}).items():
                if key != "learning_rate":
                    self.history.setdefault(key, []).append(float(value))
            path.mkdir(parents=True, exist_ok=True)
            self.model.save_weights(path / f"tmp-{WEIGHTS}")
            os.replace(path / f"tmp-{WEIGHTS}", path / WEIGHTS)
            state = {"epochs_done": epoch + 1, "seconds": resumed.seconds + time.monotonic() - self.started,
                     "history": self.history}
            (path / f"tmp-{STATE}").write_text(json.dumps(state))
            os.replace(path / f"tmp-{STATE}", path / STATE)

    return EpochCheckpoint()


def remove(path: Path) -> None:
    """Drop a finished run's checkpoint (its model is saved)."""
    shutil.rmtree(path, ignore_errors=True)
