"""`hashtagger tag SOURCE`: tag every new image of a folder or bucket into the results database."""

from __future__ import annotations

import sys

import sqlalchemy as sa

from tasks.hashtags.rank import PLATFORM_LIMITS

SHOW_ROWS = 20  # images listed after a run; the rest are in the database


def register(commands) -> None:
    tag = commands.add_parser("tag", help="tag the new images of a folder or s3://bucket/prefix")
    tag.add_argument("source", help="a folder, or s3://bucket/prefix")
    tag.add_argument("--model", help="a model artifact folder (default: the champion, else the bundled model)")
    tag.add_argument("--platform", default="generic", choices=sorted(PLATFORM_LIMITS))
    tag.add_argument("--batch-size", type=int, default=256)
    tag.add_argument("--workers", type=int, help="decoding threads (default: one per core)")
    tag.add_argument("--limit", type=int, help="tag at most N new images")
    tag.add_argument("--dry-run", action="store_true", help="count what would be tagged; write nothing")
    tag.add_argument("--retag", action="store_true", help="re-tag images another model tagged already")
    tag.add_argument("--run-id", help="a run id to resume or repeat (default: a new one)")
    tag.add_argument("--quiet", action="store_true", help="no progress bar and no result listing")
    tag.set_defaults(func=run)


def run(args) -> int:
    import dataclasses

    from tasks import db, predictor, tag
    from tasks.hashtags import providers
    from tasks.hashtags.rank import RankConfig

    engine = db.ensure_schema(db.engine())
    model = predictor.load(args.model or predictor.default_model_path(engine))
    hashtags = providers.engine_for(engine, RankConfig(platform=args.platform))
    config = tag.TagConfig(batch_size=args.batch_size, limit=args.limit, dry_run=args.dry_run,
                           retag=args.retag, progress=not args.quiet and sys.stderr.isatty())
    if args.workers:
        config = dataclasses.replace(config, workers=args.workers)
    summary = tag.run(args.source, model, hashtags, engine, config, args.run_id)
    print_summary(summary, model)
    if not args.quiet and not args.dry_run:
        print_results(engine, summary["run_id"])
    return 0 if summary["status"] in ("succeeded", "dry-run") else 1


def print_summary(summary: dict, model) -> None:
    seconds = summary["seconds"]
    rate = summary["tagged"] / seconds if seconds else 0.0
    verb = "would tag" if summary["status"] == "dry-run" else "tagged"
    print(f"run {summary['run_id']} ({summary['status']}) over {summary['source']}")
    print(f"  model    {model.model_version} ({model.runtime})")
    print(f"  seen {summary['seen']:,}  {verb} {summary['tagged']:,}  skipped {summary['skipped']:,} "
          f"(already done)  failed {summary['failed']:,}  in {seconds:.1f} s ({rate:,.0f} img/s)")


def print_results(engine: sa.Engine, run_id: str) -> None:
    with engine.connect() as connection:
        rows = connection.execute(sa.text(
            "SELECT image_uri, label, confidence, hashtag, hashtag_rank FROM image_tags "
            "WHERE run_id = :run_id ORDER BY image_uri, hashtag_rank"), {"run_id": run_id}).all()
        failures = connection.execute(sa.text(
            "SELECT image_uri, reason FROM failed_images WHERE run_id = :run_id ORDER BY image_uri"),
            {"run_id": run_id}).all()
    images: dict[str, tuple[str, float, list[str]]] = {}
    for uri, label, confidence, hashtag, _ in rows:
        images.setdefault(uri, (label, confidence, []))[2].append(hashtag)
    for uri, (label, confidence, tags) in list(images.items())[:SHOW_ROWS]:
        print(f"{uri}\n  {label} ({confidence:.0%})  {' '.join(tags)}")
    if len(images) > SHOW_ROWS:
        print(f"... and {len(images) - SHOW_ROWS:,} more images: SELECT * FROM image_tags WHERE run_id = '{run_id}'")
    for uri, reason in failures[:SHOW_ROWS]:
        print(f"{uri}\n  FAILED: {reason}")
