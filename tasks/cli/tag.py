"""`hashtagger tag SOURCE`: tag every new image of a folder or bucket into the results database."""

from __future__ import annotations

import argparse
import json
import sys

from tasks import errors, pipeline
from tasks.config import BUNDLED_DATASETS
from tasks.pipeline import PLATFORM_LIMITS

SHOW_IMAGES = 8  # images listed after a run, so the summary fits on one screen; the rest are in the database
SHOW_FAILURES = 8
SHOW_HASHTAGS = 5  # an image's first hashtags, so each fits on one line; "+N more" says how many more are stored


def register(commands) -> None:
    tag = commands.add_parser("tag", help="tag the new images of a folder or s3://bucket/prefix",
                              description="Tag every image of SOURCE not tagged yet, into the results "
                                          "database (HASHTAGGER_DB_URL, default SQLite under "
                                          "HASHTAGGER_HOME). A second run tags nothing new. It then lists "
                                          f"the first {SHOW_IMAGES} images with their first {SHOW_HASHTAGS} "
                                          "hashtags (+N more: stored too, up to the --platform limit).")
    tag.add_argument("source", help="a folder (recursive), or s3://bucket/prefix (AWS_ENDPOINT_URL for "
                                    "other S3-compatible servers)")
    tag.add_argument("--model", help="a model artifact folder (default: the champion, else the bundled model)")
    tag.add_argument("--dataset", default="cifar10", choices=BUNDLED_DATASETS,
                     help="whose champion (else bundled model) tags when --model is not given")
    tag.add_argument("--platform", default="generic", choices=sorted(PLATFORM_LIMITS),
                     help="instagram: at most 5 hashtags, x: 3, generic: 10")
    tag.add_argument("--batch-size", type=int, default=256, help="images per model call and transaction")
    tag.add_argument("--workers", type=int, help="decoding threads (default: one per core)")
    tag.add_argument("--limit", type=int, metavar="N",
                     help="tag at most N images the model has not tagged (tagged or failed), oldest first")
    tag.add_argument("--dry-run", action="store_true", help="count what would be tagged; write nothing")
    tag.add_argument("--verify", action="store_true",
                     help="read and hash every image again, whatever its size, mtime and inode say, and store "
                          "what was found (a weekly check: a normal run reads only new or changed files)")
    tag.add_argument("--min-confidence", type=_min_confidence, metavar="P",
                     help="no confident label below this calibrated probability, 0 to 1, or 'model' for the "
                          "model's own threshold again (default: the model's, stored results unchanged); "
                          "results already stored are decided again from their stored scores, without "
                          "running the model")
    tag.add_argument("--retag", action="store_true",
                     help="no effect, kept for old scripts: each model tags the images it has not tagged, "
                          "so a new champion always re-tags")
    tag.add_argument("--run-id", help="a run id to resume or repeat (default: a new one)")
    tag.add_argument("--quiet", action="store_true", help="no progress bar and no listing of results")
    tag.add_argument("--json", action="store_true", help="the run's summary as one JSON document on stdout")
    tag.set_defaults(func=run)


def _min_confidence(text: str) -> float | str:
    """A probability, or 'model' (the served model's threshold, resolved once it is loaded)."""
    if text == "model":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability (0 to 1) or 'model'") from None


def run(args) -> int:
    from tasks.cli import progress

    given = {"--batch-size": args.batch_size, "--workers": args.workers, "--limit": args.limit}
    wrong = [f"{option} {value}" for option, value in given.items() if value is not None and value < 1]
    if wrong:  # name what was given, not every option that has this rule
        raise errors.UserError(f"hashtagger tag: {', '.join(wrong)}: must be at least 1")
    if isinstance(args.min_confidence, float) and not 0 <= args.min_confidence <= 1:
        raise errors.UserError(f"hashtagger tag: --min-confidence {args.min_confidence} is not between 0 and 1")
    try:
        # a run that writes records the bundled model first; a dry run reads only
        model = pipeline.serving_model(args.model, args.dataset, write=not args.dry_run)
    except pipeline.database_errors() as error:  # not migrated, not answering: the message says what to do
        raise errors.UserError(f"hashtagger tag: {error}") from None
    except (*pipeline.user_errors(), OSError, ValueError) as error:
        raise errors.UserError(f"hashtagger tag: cannot load the model: {error}") from None
    if args.min_confidence == "model":  # back to the model's own threshold, stored results decided again
        args.min_confidence = model.min_confidence
    try:
        summary = pipeline.tag_source(
            args.source, model, platform=args.platform, run_id=args.run_id, batch_size=args.batch_size,
            workers=args.workers, limit=args.limit, dry_run=args.dry_run, verify=args.verify or None,
            min_confidence=args.min_confidence, progress=progress.enabled(args.quiet or args.json))
    except pipeline.RunActive as active:  # not a usage error: the same command works once it ends
        raise errors.UserError(f"hashtagger tag: {_shown(str(active))}",
                               exit_code=errors.EXIT_FAILED_IMAGES) from None
    except pipeline.RunFailed as failed:
        print_summary(failed.summary, model, args.json)
        if any(errors.needs_configuration(cause) for cause in _causes(failed)):
            # a missing bucket, refused or absent credentials: running it again changes nothing until fixed
            raise errors.UserError(f"hashtagger tag: {_shown(str(failed))}") from None
        raise errors.UserError(f"hashtagger tag: {_shown(str(failed))}",
                               "every batch written before is complete; run the same command again to finish",
                               errors.EXIT_FAILED_IMAGES) from None
    except pipeline.user_errors() as error:
        raise errors.UserError(f"hashtagger tag: {_shown(str(error))}") from None
    print_summary(summary, model, args.json)
    if not args.quiet and not args.json and not args.dry_run:
        print_results(summary)
    return errors.EXIT_FAILED_IMAGES if summary.failed else errors.EXIT_OK


def _causes(error: BaseException):
    """The exceptions `error` was raised from, nearest first."""
    while error.__cause__ is not None:
        error = error.__cause__
        yield error


def print_summary(summary, model, as_json: bool = False) -> None:
    """Four lines: what ran, with what, how much, how fast (`summary`: a RunSummary), or one JSON document."""
    rate = (summary.tagged + summary.failed) / summary.seconds if summary.seconds else 0.0
    if as_json:
        document = dict(summary.as_dict(), runtime=model.runtime, images_per_second=round(rate, 1))
        if summary.status == "dry-run":  # nothing was tagged nor recorded: what would be is `to_tag`
            document.update(tagged=0, to_tag=summary.tagged, run_id=None, images_per_second=0.0)
        json.dump(document, sys.stdout, indent=1)
        print()
        return
    dry = summary.status == "dry-run"
    failed = f" ({summary.failed:,} failed)" if summary.failed else ""  # at a glance, in the headline
    # a dry run records nothing: no run id for `report` to look up
    print(f"{'dry run' if dry else f'run {summary.run_id}'}: {summary.status}{failed}  source {_shown(summary.source)}")
    print(f"  model   {model.model_id} ({model.runtime})")
    others = f"  ({summary.not_images:,} non-image file{'s' * (summary.not_images != 1)} skipped)" \
        if summary.not_images else ""
    if not summary.seen:  # an empty source, or a run that stopped before its first batch (its status says)
        print(f"  images  {'no images found' if summary.status in ('succeeded', 'dry-run') else 'none done'}{others}")
        return
    print(f"  images  {summary.seen:,} seen  {summary.tagged:,} {'to tag' if dry else 'tagged'}  "
          f"{summary.skipped:,} already done  {summary.failed:,} failed{others}")
    if summary.abstained or summary.redecided:
        print(f"  labels  {summary.abstained:,} with no confident label"
              + (f"; {summary.redecided:,} earlier result{'s' * (summary.redecided != 1)} decided again"
                 if summary.redecided else ""))
    print(f"  time    {summary.seconds:,.1f} s  ({rate:,.0f} images/s)")
    if not dry and summary.tagged:
        print(f"  page    hashtagger report {summary.run_id}")


def print_results(summary, db_url: str | None = None) -> None:
    """A few of this run's images and failures: the database holds all of them."""
    shown = pipeline.run_results(summary.run_id, SHOW_IMAGES, SHOW_FAILURES, db_url, SHOW_HASHTAGS)
    for image in shown["images"]:
        label = image["label"] or "(no label)"  # an abstention: no confident label
        more = image["hashtags_stored"] - len(image["hashtags"])  # stored, not shown: up to the platform's limit
        hashtags = " ".join(image["hashtags"]) + (f" +{more} more" if more > 0 else "")
        print(f"  {label:>10} {image['confidence']:4.0%}  {hashtags:<50}  "
              f"{_short(image['image_text'])}")
    if summary.tagged > len(shown["images"]):
        # image_labels_all: one row per result of the run, abstentions (a NULL label) and results another
        # model's shadow in image_labels included; image_tags holds only labelled images' hashtags
        print(f"  ... {summary.tagged - len(shown['images']):,} more in image_labels_all "
              f"(run_id = '{summary.run_id}'; hashtags in image_tags_all)")
    for uri, reason in shown["failures"]:
        print(f"  FAILED  {_short(uri)}: {_shown(reason)}")
    if summary.failed > len(shown["failures"]):
        print(f"  ... {summary.failed - len(shown['failures']):,} more in failed_images (run_id = '{summary.run_id}')")


def _short(uri: str, width: int = 70) -> str:
    """The end of a stored name, escaped: a name holding terminal escape sequences must not act on the screen."""
    uri = _shown(uri)
    return uri if len(uri) <= width else "..." + uri[-(width - 3):]


def _shown(text: str) -> str:
    return pipeline.shown_name(text)
