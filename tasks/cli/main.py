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
import signal
import sys
import threading

from tasks import errors, quiet

from tasks.cli.options import Parser, add_common_options, configure_logging

# One module per command group under tasks/cli/, in the order `--help` lists them.
COMMAND_GROUPS = ("data", "train", "evaluate", "models", "db", "tag", "report", "review", "hashtags")

EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in hashtagger, not the user's input
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a reader that stopped early

def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hashtagger", description="Pictures in, ranked hashtags out.",
                    epilog=errors.EXIT_CODES_HELP)
    add_common_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        importlib.import_module(f"tasks.cli.{group}").register(commands)
    _verbose_after_every_command(parser)
    return parser


def _verbose_after_every_command(parser: argparse.ArgumentParser) -> None:
    """-v/--verbose accepted after any (sub)command too, where the one-line errors' "rerun with --verbose"
    leads people to put it (guarded() reads it from anywhere on the line)."""
    for action in parser._actions:  # argparse keeps subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                if "--verbose" not in command._option_string_actions:
                    command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                                         help="log what each stage does, and show tracebacks of errors")
                _verbose_after_every_command(command)

def main(argv: list[str] | None = None) -> int:
    def run(arguments):
        args = build_parser().parse_args(arguments)
        return args.func(args)

    return guarded("hashtagger", run, argv)

def _terminated(signum, frame):
    raise errors.Terminated("terminated by SIGTERM")


def hashtag_main(argv: list[str] | None = None) -> int:
    """`hashtag IMAGE...`: labels and ranked hashtags for each image (the report's Hashtag.py)."""
    from tasks.cli import hashtag

    return guarded("hashtag", hashtag.main, argv)

def guarded(prog: str, run, argv: list[str] | None) -> int:
    """run(argv) -> exit status, with every error turned into one line and a documented exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose = any(arg in ("-v", "--verbose") for arg in argv)
    quiet.quiet_environment()
    configure_logging(verbose)  # for both commands, from the same -v/--verbose scan
    if threading.current_thread() is threading.main_thread():  # a signal handler lives in the main thread
        signal.signal(signal.SIGTERM, _terminated)
    try:
        status = run(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except errors.Terminated:
        print(f"{prog}: terminated by SIGTERM (what was committed is kept)", file=sys.stderr)
        return errors.EXIT_TERMINATED
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
        user_error = errors.as_user_error(error)
        if verbose:
            logging.getLogger(prog).exception("%s failed", prog)
        if user_error is None:
            print(f"{prog}: unexpected error: {type(error).__name__}: {errors.first_line(error)}"
                  + ("" if verbose else "; rerun with --verbose for the traceback"), file=sys.stderr)
            return EXIT_INTERNAL
        message = " ".join(line.strip() for line in str(user_error).splitlines() if line.strip())
        print(message if message.startswith(prog) else f"{prog}: {message}", file=sys.stderr)
        return user_error.exit_code

if __name__ == "__main__":
    sys.exit(main())
