"""`hashtagger review`: a small web app where people correct the tags, over the results database."""

from __future__ import annotations

import getpass
import socket
import sys

from tasks import errors, pipeline


def register(commands) -> None:
    review = commands.add_parser(
        "review", help="correct the tags in a browser (answers go to image_reviews)",
        description="Serve a page that shows the tagged images whose answers teach the most (no confident "
                    "label first, then the smallest margin between the two best labels), one at a time: "
                    "keys 1-9 pick a candidate, Enter accepts the best, 0 says none of these classes, / "
                    "searches any class, arrows skip, u undoes. Answers are appended to image_reviews. "
                    "Listens on 127.0.0.1; on any other address every browser needs the token printed "
                    "at start.")
    review.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; beyond loopback the printed token is required")
    review.add_argument("--port", type=int, default=8765, help="TCP port")
    review.add_argument("--db", metavar="URL", help="results database URL (default: HASHTAGGER_DB_URL, else "
                                                    "the SQLite file under HASHTAGGER_HOME)")
    review.add_argument("--reviewer", help="the name stored with each answer (default: your login name)")
    review.set_defaults(func=run)


def run(args) -> int:
    try:
        import uvicorn

        app, config = pipeline.review_app(args.reviewer or getpass.getuser(), args.host, args.port, args.db)
    except ModuleNotFoundError as error:
        raise errors.MissingExtra("hashtagger review", "review", error.name) from None
    except ValueError as error:
        raise errors.UserError(f"hashtagger review: {error}") from None
    _check_free(config.host, config.port)
    print(f"reviewing as {config.reviewer}: open {config.url()}", flush=True)
    if config.needs_token:
        print(f"listening on {config.host}: a browser must open the address with the token once "
              f"(token {config.token})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning")
    return errors.EXIT_OK


def _check_free(host: str, port: int) -> None:
    """UserError (exit 2, one line) when the address is taken, instead of uvicorn's exit 1 (which this
    command line keeps for failed images)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            raise errors.UserError(f"hashtagger review: cannot listen on {host}:{port}: "
                                   f"{error.strerror or error}", "pass another --port") from None
