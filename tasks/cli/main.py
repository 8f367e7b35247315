"""Command line: `hashtagger` (the pipeline's stages) and `hashtag` (images in, hashtags out)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# One module per command group under tasks/cli/, in the order `--help` lists them.
COMMAND_GROUPS = ("data", "train", "evaluate", "models", "db", "tag", "hashtags")


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hashtagger", description="Pictures in, ranked hashtags out.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        importlib.import_module(f"tasks.cli.{group}").register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    return args.func(args)


def hashtag_main(argv: list[str] | None = None) -> int:
    """`hashtag IMAGE...`: labels and ranked hashtags for each image (the report's Hashtag.py)."""
    from tasks.cli import hashtag

    return hashtag.main(argv)


if __name__ == "__main__":
    sys.exit(main())
