"""Command line: `hashtagger` (the pipeline's stages) and `hashtag` (images in, hashtags out).

Errors are handled here, once, for both commands: a user's mistake (a bad argument, an unreachable
database, a missing extra) is one line on stderr that says what to do next, with the exit codes of
tasks.errors; a traceback only with --verbose. Ctrl-C and a closed output pipe end quietly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

import tasks
from tasks import errors, quiet

# One module per command group under tasks/cli/, in the order `--help` lists them.
COMMAND_GROUPS = ("data", "train", "evaluate", "models", "db", "tag", "report", "hashtags")

# Stage exceptions whose message a user can act on: (module, class name). Looked up only in modules
# already imported, so handling an error never imports NumPy or TensorFlow.
USER_FACING = (
    ("tasks.data.dataset", "DatasetNotFound"), ("tasks.data.prepare", "DataError"),
    ("tasks.data.download", "DownloadError"), ("tasks.registry.artifact", "ArtifactError"),
    ("tasks.registry.registry", "RegistryError"), ("tasks.registry.export", "ExportError"),
    ("tasks.evaluate.evaluate", "EvaluationError"), ("tasks.evaluate.figures", "PlottingUnavailable"),
    ("tasks.tag.predictor", "ModelNotFound"), ("tasks.tag.sources", "SourceError"),
    ("tasks.store.db", "MigrationError"), ("models", "UnknownArchitecture"),
)
TRAIN_EXTRA_MODULES = {"tensorflow", "keras", "onnx", "tf2onnx", "matplotlib", "jax"}
DB_DRIVERS = {"psycopg2", "psycopg", "pg8000", "asyncpg", "pymysql", "MySQLdb"}
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in hashtagger, not the user's input
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a reader that stopped early


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends "(default: X)" to every option's help that has a real default (not None or False)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" in text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a UserError: one line, handled with every other error."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise errors.UserError(f"{self.prog}: {message}", f"see {self.prog} --help")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log what each stage does, and show tracebacks of errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {tasks.__version__}")


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hashtagger", description="Pictures in, ranked hashtags out.",
                    epilog=errors.EXIT_CODES_HELP)
    add_common_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        importlib.import_module(f"tasks.cli.{group}").register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    def run(arguments):
        args = build_parser().parse_args(arguments)
        configure_logging(args.verbose)
        return args.func(args)

    return guarded("hashtagger", run, argv)


def hashtag_main(argv: list[str] | None = None) -> int:
    """`hashtag IMAGE...`: labels and ranked hashtags for each image (the report's Hashtag.py)."""
    from tasks.cli import hashtag

    return guarded("hashtag", hashtag.main, argv)


def guarded(prog: str, run, argv: list[str] | None) -> int:
    """run(argv) -> exit status, with every error turned into one line and a documented exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = any(arg in ("-v", "--verbose") for arg in argv)
    quiet.quiet_environment()
    try:
        status = run(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (what was committed is kept)", file=sys.stderr)
        return errors.EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader (head, less) stopped early: nothing to say; point stdout at /dev/null so the
        # interpreter's final flush does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except SystemExit:
        raise  # --help and --version
    except Exception as error:  # noqa: BLE001  the one place errors become exit codes
        user_error = as_user_error(error)
        if verbose:
            logging.getLogger(prog).exception("%s failed", prog)
        if user_error is None:
            print(f"{prog}: unexpected error: {type(error).__name__}: {_first_line(error)}"
                  + ("" if verbose else "; rerun with --verbose for the traceback"), file=sys.stderr)
            return EXIT_INTERNAL
        message = " ".join(line.strip() for line in str(user_error).splitlines() if line.strip())
        print(message if message.startswith(prog) else f"{prog}: {message}", file=sys.stderr)
        return user_error.exit_code


def as_user_error(error: BaseException) -> errors.UserError | None:
    """The UserError a user should see for `error`, or None when it is a bug."""
    if isinstance(error, errors.UserError):
        return error
    if isinstance(error, ModuleNotFoundError) and error.name:
        root = error.name.split(".")[0]
        if root in TRAIN_EXTRA_MODULES:
            return errors.MissingExtra("this command", "train", root)
        if root in DB_DRIVERS:
            return errors.UserError(f"the database driver {root} is not installed",
                                    "use postgresql://... in HASHTAGGER_DB_URL (psycopg2 comes with hashtagger) "
                                    f"or pip install {root}")
        if root in ("airflow",):
            return errors.MissingExtra("this command", "airflow", root)
    database_error = _database_error(error)
    if database_error is not None:
        return database_error
    for module_name, class_name in USER_FACING:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if cls is not None and isinstance(error, cls):
            return errors.UserError(_first_line(error))
    return None


def _database_error(error: BaseException) -> errors.UserError | None:
    exc = sys.modules.get("sqlalchemy.exc")
    if exc is None:
        return None
    where = _database_shown()
    if isinstance(error, exc.NoSuchModuleError):
        return errors.UserError(f"HASHTAGGER_DB_URL {where}: no such database dialect or driver",
                                "use postgresql://user@host:5432/db or sqlite:////path/to/file.db")
    if isinstance(error, exc.ArgumentError):
        return errors.UserError(f"HASHTAGGER_DB_URL {where} is not a database URL: {_first_line(error)}",
                                "use postgresql://user@host:5432/db or sqlite:////path/to/file.db")
    if isinstance(error, (exc.OperationalError, exc.InterfaceError)):
        reason = _first_line(getattr(error, "orig", None) or error)
        return errors.UserError(f"cannot use the results database {where}: {reason}",
                                "check HASHTAGGER_DB_URL (host, port, user, password, database) and that "
                                "the server is running")
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


def _first_line(error: object) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
