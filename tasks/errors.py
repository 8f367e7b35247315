"""Errors a user can fix, and the exit codes the command line answers with.

A `UserError` carries what went wrong and what to do next; the CLI prints it on one line (no traceback)
and exits with its `exit_code`. Stages raise their own specific exceptions; the CLI turns the ones a
user can act on into a UserError in one place (tasks/cli/main.py).
"""

from __future__ import annotations

# Exit codes of `hashtagger` and `hashtag`, listed in their --help and in the README.
EXIT_OK = 0  # everything done
EXIT_FAILED_IMAGES = 1  # the run finished, but some images could not be tagged (see failed_images)
EXIT_USAGE = 2  # a bad argument, a missing file or a configuration the user has to fix
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); work committed so far is kept

EXIT_CODES_HELP = ("exit status: 0 ok, 1 some images failed (or the run stopped: rerun to finish), "
                   "2 usage or configuration error, 130 interrupted")


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
