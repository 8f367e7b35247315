"""Progress for long steps: a live tqdm bar on a terminal, one log line per epoch or batch elsewhere.

`enabled(quiet)` decides once per command: bars only when stderr is a terminal and --quiet is not given,
so pipes, files and Airflow's task logs never fill with carriage returns.
"""

from __future__ import annotations

import sys
import time


def enabled(quiet: bool = False) -> bool:
    """True when a live bar is wanted: not --quiet, and stderr is a terminal."""
    return not quiet and sys.stderr.isatty()


def bar(total: int | None, description: str, unit: str = "img", enabled_: bool = True):
    """A tqdm bar on stderr with total, rate and ETA (disabled: the same object, drawing nothing)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit=unit, disable=not enabled_, leave=False,
                dynamic_ncols=True, file=sys.stderr)


def keras_callback(live: bool):
    """A Keras callback: a bar over each epoch's training steps (live), and one line per epoch on stderr.

    Give it to tasks.train.train.train(..., callbacks=[...]) with TrainConfig(verbose=0), so Keras's own
    per-epoch printing does not interleave with it.
    """
    from tasks import quiet

    keras = quiet.import_keras("training")  # Keras through the front ends' quiet import, not below the service layer

    class EpochProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.epochs = self.params.get("epochs") or 0
            self.steps = self.params.get("steps")
            self.bar = None

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.monotonic()
            self.bar = bar(self.steps, f"epoch {epoch + 1}/{self.epochs}", "step", live)

        def on_train_batch_end(self, batch, logs=None):
            if self.bar is not None:
                self.bar.update(1)
                if logs and "loss" in logs:
                    self.bar.set_postfix(loss=f"{float(logs['loss']):.3f}", refresh=False)

        def on_epoch_end(self, epoch, logs=None):
            if self.bar is not None:
                self.bar.close()
            # one line per epoch, under the bar on a terminal, alone in a log
            print(epoch_line(epoch + 1, self.epochs, time.monotonic() - self.started, logs or {}),
                  file=sys.stderr, flush=True)

    return EpochProgress()


def epoch_line(epoch: int, epochs: int, seconds: float, logs: dict) -> str:
    """'epoch 3/10  41.2 s  loss 1.234  accuracy 56.7%  val_accuracy 55.1%' from Keras's epoch logs."""
    parts = [f"epoch {epoch}/{epochs}", f"{seconds:,.1f} s"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if key in logs:
            value = float(logs[key])
            parts.append(f"{key} {value:.1%}" if key.endswith("accuracy") else f"{key} {value:.3f}")
    return "  ".join(parts)
