"""`hashtagger tag SOURCE`: tag every new image of a folder or bucket into the results database."""

from __future__ import annotations

import json
import sys

from tasks import errors
from tasks.hashtags.rank import PLATFORM_LIMITS

SHOW_IMAGES = 8  # images listed after a run, so the summary fits on one screen; the rest are in the database
SHOW_FAILURES = 8


def register(commands) -> None:
    tag = commands.add_parser("tag", help="tag the new images of a folder or s3://bucket/prefix",
                              description="Tag every image of SOURCE not tagged yet, into the results "
                                          "database (HASHTAGGER_DB_URL, default SQLite under "
                                          "HASHTAGGER_HOME). A second run tags nothing new.")
    tag.add_argument("source", help="a folder (recursive), or s3://bucket/prefix (AWS_ENDPOINT_URL for "
                                    "other S3-compatible servers)")
    tag.add_argument("--model", help="a model artifact folder (default: the champion, else the bundled model)")
    tag.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100"),
                     help="whose champion (else bundled model) tags when --model is not given")
    tag.add_argument("--platform", default="generic", choices=sorted(PLATFORM_LIMITS),
                     help="instagram: at most 5 hashtags, x: 3, generic: 10")
    tag.add_argument("--batch-size", type=int, default=256, help="images per model call and transaction")
    tag.add_argument("--workers", type=int, help="decoding threads (default: one per core)")
    tag.add_argument("--limit", type=int, metavar="N",
                     help="tag at most N images the model has not tagged (tagged or failed), oldest first")
    tag.add_argument("--dry-run", action="store_true", help="count what would be tagged; write nothing")
    tag.add_argument("--retag", action="store_true",
                     help="no effect, kept for old scripts: each model tags the images it has not tagged, "
                          "so a new champion always re-tags")
    tag.add_argument("--run-id", help="a run id to resume or repeat (default: a new one)")
    tag.add_argument("--quiet", action="store_true", help="no progress bar and no listing of results")
    tag.add_argument("--json", action="store_true", help="the run's summary as one JSON document on stdout")
    tag.set_defaults(func=run)


def run(args) -> int:
    import dataclasses

    from tasks.store import db, results
    from tasks.tag import predictor
    from tasks.tag import sources
    from tasks.tag import tag
    from tasks.cli import progress
    from tasks.hashtags import providers
    from tasks.hashtags.rank import RankConfig

    if args.batch_size < 1 or (args.limit is not None and args.limit < 0) or (args.workers or 1) < 1:
        raise errors.UserError("hashtagger tag: --batch-size and --workers must be at least 1, --limit at least 0")
    import sqlalchemy as sa

    engine = db.engine()
    if not args.dry_run:
        db.ensure_schema(engine)  # an unreachable database is one line from tasks/cli/main.py
    try:
        # a dry run on a database never migrated has no registry, so no champion: the bundled model
        registry = engine if not args.dry_run or sa.inspect(engine).has_table("schema_migrations") else None
        model = predictor.load(args.model or predictor.default_model_path(registry, args.dataset,
                                                                          record_bundled=not args.dry_run),
                               runtime="onnx")  # tagging never imports TensorFlow
    except (predictor.ModelNotFound, OSError, ValueError) as error:
        raise errors.UserError(f"hashtagger tag: cannot load the model: {error}") from None
    hashtags = providers.engine_for(engine, RankConfig(platform=args.platform))
    config = tag.TagConfig(batch_size=args.batch_size, limit=args.limit, dry_run=args.dry_run,
                           retag=args.retag, progress=progress.enabled(args.quiet or args.json))
    if args.workers:
        config = dataclasses.replace(config, workers=args.workers)
    try:
        source = sources.open_source(args.source, config.workers)
    except sources.SourceError as error:
        raise errors.UserError(f"hashtagger tag: {error}") from None
    if config.progress and isinstance(source, sources.LocalSource):  # a folder lists fast: a bar with a total
        config = dataclasses.replace(config, progress_total=sum(1 for _ in source.list()))
    try:
        summary = tag.run(args.source, model, hashtags, engine, config, args.run_id, source=source)
    except results.AnotherRunActive as active:  # not a usage error: the same command works once it ends
        raise errors.UserError(f"hashtagger tag: {sources.shown(str(active))}",
                               exit_code=errors.EXIT_FAILED_IMAGES) from None
    except tag.RunFailed as failed:
        print_summary(failed.summary, model, args.json)
        raise errors.UserError(f"hashtagger tag: {sources.shown(str(failed))}",
                               "every batch written before is complete; run the same command again to finish",
                               errors.EXIT_FAILED_IMAGES) from None
    summary["not_images"] = getattr(source, "not_images", 0)
    print_summary(summary, model, args.json)
    if not args.quiet and not args.json and not args.dry_run:
        print_results(engine, summary["run_id"], summary)
    return errors.EXIT_FAILED_IMAGES if summary["failed"] else errors.EXIT_OK


def print_summary(summary: dict, model, as_json: bool = False) -> None:
    """Four lines: what ran, with what, how much, how fast (or one JSON document)."""
    seconds = summary["seconds"]
    rate = (summary["tagged"] + summary["failed"]) / seconds if seconds else 0.0
    if as_json:
        keys = ("run_id", "status", "source", "model_version", "seen", "tagged", "skipped", "failed",
                "not_images", "seconds", "error")
        json.dump(dict({key: summary.get(key) for key in keys}, runtime=model.runtime,
                       images_per_second=round(rate, 1)), sys.stdout, indent=1)
        print()
        return
    dry = summary["status"] == "dry-run"
    print(f"run {summary['run_id']}: {summary['status']}  source {_shown(summary['source'])}")
    print(f"  model   {model.model_version} ({model.runtime})")
    skipped = summary.get("not_images") or 0
    others = f"  ({skipped:,} non-image files skipped)" if skipped else ""
    if not summary["seen"]:
        print(f"  images  no images found{others}")
        return
    print(f"  images  {summary['seen']:,} seen  {summary['tagged']:,} {'to tag' if dry else 'tagged'}  "
          f"{summary['skipped']:,} already done  {summary['failed']:,} failed{others}")
    print(f"  time    {seconds:,.1f} s  ({rate:,.0f} images/s)")
    if not dry and summary["tagged"]:
        print(f"  page    hashtagger report {summary['run_id']}")


def print_results(engine, run_id: str, summary: dict) -> None:
    """A few of this run's images and failures: the database holds all of them."""
    import sqlalchemy as sa

    with engine.connect() as connection:
        images = connection.execute(sa.text(
            "SELECT image_uri, content_hash, model_version, label, confidence, COALESCE(uri_text, image_uri) "
            "FROM image_results "
            "WHERE run_id = :run_id ORDER BY image_uri LIMIT :n"), {"run_id": run_id, "n": SHOW_IMAGES}).all()
        failures = connection.execute(sa.text(
            "SELECT image_uri, reason FROM failed_images WHERE run_id = :run_id ORDER BY image_uri LIMIT :n"),
            {"run_id": run_id, "n": SHOW_FAILURES}).all()
        for uri, content_hash, model_version, label, confidence, text in images:
            tags = connection.execute(sa.text(
                "SELECT hashtag FROM image_hashtags WHERE image_uri = :uri AND content_hash = :hash "
                "AND model_version = :model ORDER BY hashtag_rank LIMIT 5"),
                {"uri": uri, "hash": content_hash, "model": model_version}).scalars().all()
            print(f"  {label:>10} {confidence:4.0%}  {' '.join(tags):<50}  {_short(text)}")
    if summary["tagged"] > len(images):
        print(f"  ... {summary['tagged'] - len(images):,} more in image_tags (run_id = '{run_id}')")
    for uri, reason in failures:
        print(f"  FAILED  {_short(uri)}: {_shown(reason)}")
    if summary["failed"] > len(failures):
        print(f"  ... {summary['failed'] - len(failures):,} more in failed_images (run_id = '{run_id}')")


def _short(uri: str, width: int = 70) -> str:
    """The end of a stored name, escaped: a name holding terminal escape sequences must not act on the screen."""
    uri = _shown(uri)
    return uri if len(uri) <= width else "..." + uri[-(width - 3):]


def _shown(text: str) -> str:
    from tasks.tag import sources

    return sources.shown(text)
