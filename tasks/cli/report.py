"""`hashtagger report RUN_ID`: a static HTML page of one tagging run (thumbnails, hashtags, failures)."""

from __future__ import annotations

import sys

from tasks import errors


def register(commands) -> None:
    report = commands.add_parser("report", help="write the HTML page of a tagging run",
                                 description="Write a static HTML gallery of a tagging run under "
                                             "$HASHTAGGER_HOME/reports/RUN_ID/: a summary, thumbnails with "
                                             "label, confidence, hashtags and model, and the failures with "
                                             "their reasons. Open index.html in a browser.")
    report.add_argument("run_id", nargs="+", metavar="RUN_ID",
                        help="the run id `hashtagger tag` printed (several: one page over all of them)")
    report.add_argument("--page-size", type=int, default=200, help="images per page")
    report.add_argument("--name", help="the report's folder under $HASHTAGGER_HOME/reports/ (default: RUN_ID)")
    report.set_defaults(func=run)


def run(args) -> int:
    from tasks import pipeline

    if args.page_size < 1:
        raise errors.UserError("hashtagger report: --page-size must be at least 1")
    try:
        index = pipeline.write_run_report(args.run_id, args.name, args.page_size)
    except pipeline.user_errors() as error:  # no such run, an unready database
        raise errors.UserError(f"hashtagger report: {error}") from None
    print(index)
    print(f"open it: xdg-open {index}", file=sys.stderr) if sys.stderr.isatty() else None
    return errors.EXIT_OK
