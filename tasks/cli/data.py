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
    prep.set_defaults(func=prepare)


def prepare(args) -> int:
    from tasks.cli import progress

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
          f"{min(per_class):,}-{max(per_class):,} test images per class")
    if manifest.skipped_files:
        print(f"skipped {len(manifest.skipped_files)} unreadable files, "
              f"e.g. {manifest.skipped_files[0]}")
    return 0
