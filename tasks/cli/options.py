"""What `hashtagger` and `hashtag` share: argparse with errors as UserError, common options, logging.

A module of its own so that tasks.cli.main (which runs `hashtag`) and tasks.cli.hashtag (which builds
its parser from these) do not import each other.
"""

from __future__ import annotations

import argparse
import logging

import tasks
from tasks import errors


class HelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to every option's help that has a real default (not None or False)."""

    def _get_help_string(self, action):
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "%(default)" in text or unset or not action.option_strings:
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
    """Warnings and errors read `warning: message`; with -v, every stage's log lines carry the module that
    wrote them (`INFO tasks.train.train: ...`), for whoever reads the code beside them."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return
    handler = logging.StreamHandler()
    handler.setFormatter(_PlainFormatter())
    logging.basicConfig(level=logging.WARNING, handlers=[handler])


class _PlainFormatter(logging.Formatter):
    """`warning: message`, as command-line tools print them."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.message}"
