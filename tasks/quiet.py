"""TensorFlow without its start-up noise, in one place for the CLI and the Airflow tasks.

TensorFlow 2.21 prints, on import, an absl banner ("All log messages before absl::InitializeLog() ...")
and oneDNN notices from C++, whatever TF_CPP_MIN_LOG_LEVEL says; Airflow shows each as a red ERROR line
in a successful task's log. `import_keras()` imports Keras (so TensorFlow) with file descriptor 2
pointed at a temporary file, then writes back every line that is not one of those notices: real errors
still reach stderr. Setting TF_ENABLE_ONEDNN_OPTS=0 would silence them too, but changes the CPU kernels
(speed and the last bits of results), so it is left alone.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

from tasks import errors

# Notices TensorFlow prints at import on every start, none of them actionable.
NOISE = re.compile(rb"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
                   rb"cpu_feature_guard|rebuild TensorFlow with the appropriate compiler flags|"
                   rb"Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered|"
                   rb"could not find cuda drivers|TF-TRT Warning")


def quiet_environment(environ=os.environ) -> None:
    """Environment defaults that keep TensorFlow's C++ logging to errors (set before it is imported),
    and a hook that filters its import banners wherever it is first imported (a model load, an export)."""
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and not any(isinstance(hook, _QuietImport) for hook in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once, through the other finders, and runs its import under _filtered_stderr."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders answer from here on
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            exec_module = spec.loader.exec_module

            def quiet_exec(module):
                with _filtered_stderr():
                    exec_module(module)

            spec.loader.exec_module = quiet_exec
        return spec


def require_train_extra(what: str = "this command") -> None:
    """MissingExtra, without importing anything, when Keras or its TensorFlow backend is not installed."""
    needed = ["keras"] + (["tensorflow"] if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow" else [])
    for module in needed:
        if importlib.util.find_spec(module) is None:
            raise errors.MissingExtra(what, "train", module)


def import_keras(what: str = "this command"):
    """Keras (and its TensorFlow backend) imported without start-up banners; MissingExtra without it."""
    quiet_environment()
    if "keras" in sys.modules:
        return sys.modules["keras"]
    try:
        with _filtered_stderr():
            import keras
    except ImportError as error:
        raise errors.MissingExtra(what, "train", error.name or "keras") from error
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)  # Python-side absl warnings (model saving)
    except ImportError:
        pass
    return keras


class _filtered_stderr:
    """Point fd 2 at a temporary file for the duration; then replay it without the NOISE lines."""

    def __enter__(self):
        sys.stderr.flush()
        self.captured = tempfile.TemporaryFile()
        try:
            self.saved = os.dup(2)
        except OSError:  # no fd 2 (a daemon): nothing to filter
            self.saved = None
            return self
        os.dup2(self.captured.fileno(), 2)
        return self

    def __exit__(self, *exc_info):
        if self.saved is not None:
            sys.stderr.flush()
            os.dup2(self.saved, 2)
            os.close(self.saved)
            self.captured.seek(0)
            kept = b"".join(line for line in self.captured if not NOISE.search(line))
            if kept:
                os.write(2, kept)
        self.captured.close()
        return False
