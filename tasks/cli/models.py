"""`hashtagger models list | show | register | promote | auto-promote | rollback | export | tta`: the registry."""

from __future__ import annotations

import json

from tasks import errors
from tasks.config import BUNDLED_DATASETS

from tasks import pipeline


def register(commands) -> None:
    models = commands.add_parser("models", help="the model registry: champions, candidates, promotion").add_subparsers(
        dest="models_command", required=True)
    listing = models.add_parser("list", help="registered models, newest first")
    listing.add_argument("--dataset", help="only this dataset's models (default: all)")
    listing.add_argument("--status", choices=("candidate", "champion", "retired"), help="only these (default: all)")
    listing.add_argument("--json", action="store_true", help="one JSON document on stdout")
    listing.set_defaults(func=list_command)
    show = models.add_parser("show", help="one model: its evaluations and its change log")
    show.add_argument("model_id", help="as `hashtagger models list` shows it")
    show.set_defaults(func=show_command)
    add = models.add_parser("register", help="record a saved model folder as a candidate")
    add.add_argument("path", help="a model artifact folder (model.keras and metadata.json)")
    add.set_defaults(func=register_command)
    promote = models.add_parser("promote", help="make a model its dataset's champion (manual; no accuracy check)")
    promote.add_argument("model_id", help="as `hashtagger models list` shows it")
    promote.add_argument("--reason", default="manual promotion", help="recorded in model_events")
    promote.add_argument("--no-onnx", action="store_true",
                         help="skip the ONNX export (tests only: tagging cannot serve a champion without it)")
    promote.set_defaults(func=promote_command)
    auto = models.add_parser("auto-promote", help="promote only if it beats the champion on the same data")
    auto.add_argument("model_id", help="as `hashtagger models list` shows it")
    auto.add_argument("--margin", type=float, default=0.002, help="top-1 gain needed (0.002 = 0.2 points); "
                                                                 "the other gates: tasks/registry/gates.py")
    auto.add_argument("--no-onnx", action="store_true",
                      help="skip the ONNX export of a new champion (tests only: tagging needs it)")
    auto.set_defaults(func=auto_promote_command)
    rollback = models.add_parser("rollback", help="bring back the champion the current one replaced "
                                                  "(in the end, the bundled model)")
    rollback.add_argument("--dataset", default="cifar10", help="whose champion to roll back")
    rollback.add_argument("--no-onnx", action="store_true",
                          help="skip the ONNX export of the restored champion (tests only: tagging needs it)")
    rollback.set_defaults(func=rollback_command)
    export = models.add_parser("export", help="write model.onnx beside model.keras")
    export.add_argument("path", help="a model artifact folder")
    export.add_argument("--overwrite", action="store_true", help="replace an existing model.onnx")
    export.set_defaults(func=export_command)
    tta = models.add_parser("tta", help="save a model with test-time augmentation inside (2 passes per image), "
                                        "to evaluate, export and serve as one model")
    tta.add_argument("source", help="a model artifact folder")
    tta.add_argument("destination", nargs="?", help="the new artifact's folder (default: "
                                                    "$HASHTAGGER_HOME/models/<source id>-<mode>)")
    tta.add_argument("--mode", choices=("flip",), default="flip",
                     help="flip: the mean of the probabilities of the image and of its mirror")
    tta.set_defaults(func=tta_command)


def _fail(error) -> int:
    raise errors.UserError(f"hashtagger models: {error}")


def list_command(args) -> int:
    try:
        rows = pipeline.list_models(args.dataset, args.status)
    except pipeline.user_errors() as error:
        return _fail(error)
    if args.json:
        print(json.dumps([{key: value for key, value in row.as_dict().items() if key != "metrics"} for row in rows],
                         indent=1, default=str))
        return 0
    if not rows:
        print(_nothing_listed(args))
        return 0
    _print_champions([champion for champion in pipeline.champions_history()
                      if args.dataset in (None, champion.model.dataset)])
    table = [("status", "top-1", "dataset", "version", "arch", "recipe", "model_id")] + [
        (row.status, f"{row.test_top1:.2%}", row.dataset, str(row.dataset_version),
         str(row.architecture), str(row.recipe), row.model_id) for row in rows]
    print_table(table, right=(1,))
    return 0


def _nothing_listed(args) -> str:
    """Why `models list` printed no model: its filters, or a registry nothing was recorded in yet."""
    if args.dataset or args.status:
        wanted = " and ".join(part for part in (args.status and f"status {args.status}",
                                                args.dataset and f"dataset {args.dataset}") if part)
        known = ", ".join(BUNDLED_DATASETS)
        return f"no registered model has {wanted} (datasets: {known} and any you trained on)"
    return ("no models registered yet: tagging serves the bundled models until `hashtagger db migrate` (or a first "
            "tagging run) records them as champions; train one with `hashtagger train`")


def print_table(table: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> None:
    """Rows of text in columns as wide as their widest cell, two spaces apart (the last one unpadded);
    the columns numbered in `right` are right-aligned."""
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    for row in table:
        cells = [cell.rjust(width) if column in right else cell.ljust(width)
                 for column, (cell, width) in enumerate(zip(row, widths))]
        print("  ".join(cells[:-1] + [row[-1]]))


def _print_champions(champions: list) -> None:
    """Each dataset's champion (ChampionRecord), since when, and what it replaced: the state tagging serves."""
    for champion in champions:
        model, since = champion.model, str(champion.since)[:19] if champion.since else "?"
        print(f"{model.dataset} champion: {model.model_id} ({model.test_top1:.2%}) since {since}, "
              f"replacing {champion.replaced or 'nothing'}: {champion.reason or ''}")
    if champions:
        print()


def show_command(args) -> int:
    try:
        history = pipeline.model_history(args.model_id)
    except pipeline.user_errors() as error:
        return _fail(error)
    model = history["model"]
    for key in ("model_id", "status", "architecture", "recipe", "dataset", "dataset_version", "test_top1",
                "artifact_uri", "created_at"):
        print(f"{key:<16} {getattr(model, key)}")
    metrics = json.loads(model.metrics or "{}")
    print("metrics:        " + "  ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                                         for key, value in sorted(metrics.items())
                                         if isinstance(value, (int, float, str)) and key != "dataset_version"))
    print("evaluations:")
    for evaluation in history["evaluations"]:
        print(f"  {evaluation['dataset_version']:<17} top-1 {evaluation['test_top1']:.2%}  "
              f"at {str(evaluation['evaluated_at'])[:19]}")
    print("events:")
    for event in reversed(history["events"]):
        print(f"  {str(event['at'])[:19]}  {event['event']:<11} {json.dumps(event['detail'])}")
    return 0


def register_command(args) -> int:
    try:
        row = pipeline.register_model(args.path)
    except (*pipeline.user_errors(), ValueError) as error:
        return _fail(error)
    print(f"registered {row.model_id} ({row.status}, test top-1 {row.test_top1:.2%})")
    return 0


def _print_decision(decision) -> None:
    if not decision.promoted:  # not an error: the gate said no, and nothing changed
        print(f"{decision.model_id}: not promoted, nothing changed ({decision.reason})")
        return
    print(f"{decision.model_id}: now champion of {decision.dataset}: {decision.reason}")
    if decision.promoted and decision.previous_champion and decision.previous_champion != decision.model_id:
        print(f"  replaced {decision.previous_champion} (retired)")


def promote_command(args) -> int:
    try:
        decision = pipeline.promote_model(args.model_id, args.reason, onnx=not args.no_onnx)
    except pipeline.user_errors() as error:
        return _fail(error)
    _print_decision(decision)
    return 0


def auto_promote_command(args) -> int:
    try:
        decision = pipeline.auto_promote_model(args.model_id, args.margin, onnx=not args.no_onnx)
    except pipeline.user_errors() as error:
        return _fail(error)
    _print_decision(decision)
    refused = not decision.promoted and decision.previous_champion != decision.model_id  # not: already champion
    return errors.EXIT_NOT_PROMOTED if refused else errors.EXIT_OK


def rollback_command(args) -> int:
    try:
        decision = pipeline.rollback_champion(args.dataset, onnx=not args.no_onnx)
    except pipeline.user_errors() as error:
        return _fail(error)
    print(f"{args.dataset}: {decision.reason}; champion is now {decision.model_id}")
    return 0


def export_command(args) -> int:
    try:
        print(pipeline.export_model(args.path, overwrite=args.overwrite))
    except pipeline.user_errors() as error:
        return _fail(error)
    return 0


def tta_command(args) -> int:
    try:
        metadata = pipeline.tta_model(args.source, args.destination, args.mode)
    except (*pipeline.user_errors(), ValueError) as error:
        return _fail(error)
    print(f"saved {metadata['model_id']} ({args.mode} test-time augmentation inside, 2 passes per image) "
          f"at {metadata['path']}")
    print(f"next: hashtagger evaluate {metadata['path']}  (refits calibration, abstention and OOD on its outputs), "
          f"then hashtagger models export {metadata['path']}")
    return 0
