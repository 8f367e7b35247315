"""`hashtagger data prepare`: build a dataset version."""

from __future__ import annotations

from tasks import errors, pipeline


def register(commands) -> None:
    data = commands.add_parser("data", help="datasets").add_subparsers(dest="data_command", required=True)
    prep = data.add_parser("prepare", help="build a dataset version from the official archive or a tree")
    prep.add_argument("dataset", help="cifar10, cifar100, or a name for your own labelled tree")
    prep.add_argument("--source", help="URL, .tar.gz (official or a class-per-folder tree) or folder")
    prep.add_argument("--md5", help="expected md5 of a downloaded archive (official ones are known)")
    prep.add_argument("--validation-size", type=int, default=5000,
                      help="training images held out for validation (early stopping, calibration)")
    prep.add_argument("--seed", type=int, default=0, help="random seed of the validation split")
    prep.add_argument("--quiet", action="store_true", help="no progress bar")
    prep.add_argument("--from-reviews", action="store_true",
                      help="the base dataset's version plus the images reviewed in `hashtagger review` (their "
                           "reviewed labels; 'none of these' ones as outliers), a slice of them held out as a "
                           "test set of your own images; reviews.json lists what went in")
    prep.add_argument("--base", default="cifar10", help="with --from-reviews: the prepared dataset to extend")
    prep.add_argument("--base-version", help="with --from-reviews: the base's version (default: its latest)")
    prep.add_argument("--slice-fraction", type=float,
                      help="with --from-reviews: share of reviewed images held out as the reviewed slice "
                           "(default 0.2)")
    prep.add_argument("--repeat", type=int, default=1,
                      help="with --from-reviews: times each reviewed training image appears in train")
    prep.add_argument("--db", metavar="URL", help="with --from-reviews: results database URL (default: "
                                                  "HASHTAGGER_DB_URL, else the SQLite file under HASHTAGGER_HOME)")
    prep.set_defaults(func=prepare)


def prepare(args) -> int:
    from tasks.cli import progress

    if args.from_reviews:
        return prepare_reviewed(args)
    try:
        manifest = pipeline.prepare_dataset(args.dataset, args.source, args.md5, args.validation_size, args.seed,
                                            progress=progress.enabled(args.quiet))
    except pipeline.user_errors() as error:  # the user's input, not a bug: no traceback
        raise errors.UserError(f"hashtagger data prepare: {error}") from None
    counts = manifest.counts
    per_class = manifest.test_per_class
    print(f"{manifest.name} version {manifest.version}: {counts['train']:,} train, "
          f"{counts['validation']:,} validation, {counts['test']:,} test images; "
          f"{len(manifest.class_names)} classes, "
          f"{per_class_range(per_class)} test image{'' if per_class_range(per_class) == '1' else 's'} per class")
    if manifest.skipped_files:
        skipped = len(manifest.skipped_files)
        print(f"skipped {skipped:,} unreadable file{'' if skipped == 1 else 's'}, "
              f"e.g. {manifest.skipped_files[0]}")
    return 0


def per_class_range(counts: list[int]) -> str:
    """'1,000' when every class has as many images, else '85-100' (the fewest, the most)."""
    low, high = min(counts), max(counts)
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def prepare_reviewed(args) -> int:
    if args.source:
        raise errors.UserError("hashtagger data prepare: --from-reviews reads the results database and the "
                               "base dataset, not --source", "leave out --source")
    try:
        manifest, entries = pipeline.prepare_reviewed_dataset(args.dataset, args.base, args.base_version,
                                                              args.slice_fraction, args.repeat, args.db)
    except pipeline.user_errors() as error:
        raise errors.UserError(f"hashtagger data prepare: {error}") from None
    reviewed = manifest.reviewed
    print(f"{manifest.name} version {manifest.version}: {manifest.base['name']} {manifest.base['version']} plus "
          f"{len(entries):,} reviewed images: {reviewed['train']:,} to train, {reviewed['outliers']:,} "
          f"'none of these' as outliers, {reviewed['slice']:,} held out as the reviewed slice "
          f"({reviewed['slice_none']:,} of them none), {reviewed['skipped']:,} skipped")
    skipped = [entry for entry in entries if entry["split"] == "skipped"]
    if skipped:
        print(f"skipped {len(skipped)} reviewed images, e.g. {skipped[0]['name']}: {skipped[0]['reason']}")
    if not reviewed["slice"]:
        print("the reviewed slice is empty: review more images (or raise --slice-fraction) to measure "
              "models on your own images")
    return 0
