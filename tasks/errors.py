"""Errors a user can fix, and the exit codes the command line answers with.

A `UserError` carries what went wrong and what to do next; the CLI prints it on one line (no traceback)
and exits with its `exit_code`. Stages raise their own specific exceptions; the CLI turns the ones a
user can act on into a UserError in one place (tasks/cli/main.py).
"""

from __future__ import annotations

import sys

# Exit codes of `hashtagger` and `hashtag`, listed in their --help and in the README.
EXIT_OK = 0  # everything done
EXIT_FAILED_IMAGES = 1  # the run finished, but some images could not be tagged (see failed_images)
EXIT_USAGE = 2  # a bad argument, a missing file or a configuration the user has to fix
EXIT_NOT_PROMOTED = 3  # `models auto-promote`: a gate refused the model; nothing changed (not an error)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); work committed so far is kept
EXIT_TERMINATED = 143  # SIGTERM (128 + 15): docker stop, systemd, kill; work committed so far is kept

EXIT_CODES_HELP = ("exit status: 0 ok, 1 some images failed (or the run stopped: rerun to finish), "
                   "2 usage or configuration error, 3 auto-promote refused the model, 130 interrupted, "
                   "143 terminated")


# What to do about a results database that does not answer: the same words from every command
DB_URL_HINT = "check HASHTAGGER_DB_URL (host, port, user, password, database) and that the server is running"
# The pip package of a database driver module, where the two names differ
DRIVER_PACKAGES = {"MySQLdb": "mysqlclient", "pymysql": "PyMySQL", "psycopg2": "psycopg2-binary",
                   "psycopg": "psycopg[binary]"}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C is, so that a run ends the same way: its batches
    committed, its record `interrupted` (the message says by what), its lease released."""


class UserError(Exception):
    """Something the user can fix. str(error) says what is wrong; `hint` what to do next."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        message = super().__str__().strip()
        return f"{message}; {self.hint}" if self.hint else message


class MissingExtra(UserError):
    """A command needs an optional part of the install (the `train` extra: TensorFlow and friends)."""

    def __init__(self, what: str, extra: str = "train", module: str | None = None):
        missing = f" ({module} is not installed)" if module else ""
        super().__init__(f"{what} needs the {extra} extra{missing}",
                         f"pip install 'hashtagger[{extra}]'")


# Stage exceptions whose message a user can act on: (module, class name). Looked up only in modules
# already imported, so handling an error never imports NumPy or TensorFlow.
USER_FACING = (
    ("tasks.data.dataset", "DatasetNotFound"), ("tasks.data.prepare", "DataError"),
    ("tasks.data.download", "DownloadError"), ("tasks.registry.artifact", "ArtifactError"),
    ("tasks.registry.registry", "RegistryError"), ("tasks.registry.export", "ExportError"),
    ("tasks.evaluate.evaluate", "EvaluationError"), ("tasks.evaluate.figures", "PlottingUnavailable"),
    ("tasks.tag.predictor", "ModelNotFound"), ("tasks.tag.sources", "SourceError"),
    ("tasks.store.db", "MigrationError"), ("models", "UnknownArchitecture"),
    # the service layer's (issue 10): the shared source types, promotion gates, undecodable input files,
    # a database that does not answer (retried by an orchestrator: see TRANSIENT), a run page of no run
    ("tasks.tag.refs", "SourceError"), ("tasks.registry.promote", "PromotionError"),
    ("tasks.data.images", "ImageError"), ("tasks.store.db", "DatabaseUnavailable"),
    ("tasks.tag.report", "RunNotFound"),
)
TRAIN_EXTRA_MODULES = {"tensorflow", "keras", "onnx", "tf2onnx", "matplotlib", "jax"}
DB_DRIVERS = {"psycopg2", "psycopg", "pg8000", "asyncpg", "pymysql", "MySQLdb"}


def as_user_error(error: BaseException) -> UserError | None:
    """The UserError a user should see for `error`, or None when it is a bug."""
    if isinstance(error, UserError):
        return error
    if isinstance(error, ModuleNotFoundError) and error.name:
        root = error.name.split(".")[0]
        if root in TRAIN_EXTRA_MODULES:
            return MissingExtra("this command", "train", root)
        if root in DB_DRIVERS:
            return UserError(f"the database driver {root} is not installed",
                             "use postgresql://... in HASHTAGGER_DB_URL (psycopg2 comes with hashtagger) "
                             f"or pip install {DRIVER_PACKAGES.get(root, root)}")
        if root in ("airflow",):
            return MissingExtra("this command", "airflow", root)
    database_error = _database_error(error)
    if database_error is not None:
        return database_error
    for module_name, class_name in USER_FACING:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if cls is not None and isinstance(error, cls):
            return UserError(first_line(error))
    return None


def _database_error(error: BaseException) -> UserError | None:
    exc = sys.modules.get("sqlalchemy.exc")
    if exc is None:
        return None
    where = _database_shown()
    refused = getattr(sys.modules.get("tasks.store.db"), "DatabaseRefused", ())
    if isinstance(error, refused):  # a full disk, a read-only server, a missing grant: fixed by a person
        return UserError(f"cannot write the results database {where}: {error}")
    if isinstance(error, exc.NoSuchModuleError):
        return UserError(f"HASHTAGGER_DB_URL {where}: no such database dialect or driver",
                                "use postgresql://user@host:5432/db or sqlite:////path/to/file.db")
    if isinstance(error, exc.ArgumentError):
        return UserError(f"HASHTAGGER_DB_URL {where} is not a database URL: {first_line(error)}",
                                "use postgresql://user@host:5432/db or sqlite:////path/to/file.db")
    if isinstance(error, (exc.OperationalError, exc.InterfaceError)):
        reason = first_line(getattr(error, "orig", None) or error)
        return UserError(f"cannot use the results database {where}: {reason}", DB_URL_HINT)
    return None


def _database_shown() -> str:
    """The results database URL as configured, with its password masked."""
    from tasks.config import Settings

    url = Settings.from_env().database_url
    try:
        import sqlalchemy as sa

        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001  not even parseable: show it without anything after a colon
        return url.split("@")[-1] if "@" in url else url


def first_line(error: object) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


# Errors a user can act on that may still pass by themselves: the network or a server coming back.
TRANSIENT = (("tasks.data.download", "DownloadError"), ("tasks.store.db", "DatabaseUnavailable"))


def needs_configuration(error: BaseException) -> bool:
    """True for a source error that running the same command again does not change (is_permanent), or
    that only configuring does (no credentials), or a database that refuses writes until a person acts
    (full disk, read-only server, missing grant): a usage or configuration error for a person. Decided
    by the error's type (tasks/tag/refs.py: SourceError.needs_configuration), never by its message."""
    refused = getattr(sys.modules.get("tasks.store.db"), "DatabaseRefused", ())
    return is_permanent(error) or _source_error_flag(error, "needs_configuration") or isinstance(error, refused)


def _source_error_flag(error: BaseException, flag: str) -> bool:
    source_error = getattr(sys.modules.get("tasks.tag.refs"), "SourceError", ())  # sources re-exports it
    return isinstance(error, source_error) and bool(getattr(error, flag))


def is_permanent(error: BaseException) -> bool:
    """True when retrying cannot help: a missing source, model or dataset, bad data or parameters.

    A database that does not answer, a download or a bucket endpoint that fails, and anything
    unexpected are not permanent: an orchestrator should retry them.
    """
    user_error = as_user_error(error)
    if user_error is None or _database_error(error) is not None:
        return False
    if any(isinstance(error, getattr(sys.modules.get(module), name, ())) for module, name in TRANSIENT):
        return False
    source_error = getattr(sys.modules.get("tasks.tag.refs"), "SourceError", ())
    if isinstance(error, source_error):
        return _source_error_flag(error, "permanent")
    return True


def user_facing_classes() -> tuple[type[BaseException], ...]:
    """Every class of USER_FACING, its module imported (none imports TensorFlow): the front ends'
    `except` clause for errors shown as one line."""
    import importlib

    return tuple(getattr(importlib.import_module(module), name) for module, name in USER_FACING)
