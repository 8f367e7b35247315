"""`hashtagger hashtags refresh|show|block|unblock`: the X hashtag cache and the users' blocklist."""

from __future__ import annotations

from tasks import errors, pipeline
from tasks.config import BUNDLED_DATASETS
from tasks.pipeline import PLATFORM_LIMITS


def register(commands) -> None:
    hashtags = commands.add_parser("hashtags", help="the X hashtag cache and the blocklist").add_subparsers(
        dest="hashtags_command", required=True)
    refresh = hashtags.add_parser(
        "refresh", help="fetch hashtags from X for labels not fetched within the time to live ($X_BEARER_TOKEN)")
    refresh.add_argument("--labels", help="comma-separated labels (default: every class name of --dataset)")
    refresh.add_argument("--dataset", default="cifar10", choices=BUNDLED_DATASETS,
                         help="whose class names to refresh (cifar100: fine and coarse)")
    refresh.add_argument("--lang", default="en", help="posts' language; 'any' for all languages")
    refresh.add_argument("--woeid", type=int, default=1, help="place whose trends boost hashtags (1: worldwide)")
    refresh.add_argument("--max-posts", type=int, default=100, help="posts read per label (100: one request)")
    refresh.add_argument("--ttl-hours", type=float, default=6.0, help="skip labels fetched this recently")
    refresh.add_argument("--force", action="store_true", help="fetch every label, however fresh")
    refresh.add_argument("--quiet", action="store_true", help="no progress bar")
    refresh.set_defaults(func=refresh_command)
    show = hashtags.add_parser("show", help="a label's cached hashtags, fetch log and ranked result")
    show.add_argument("label", help="a class name, e.g. cat or maple_tree")
    show.add_argument("--platform", default="generic", choices=sorted(PLATFORM_LIMITS),
                      help="instagram: at most 5 hashtags, x: 3, generic: 10")
    show.set_defaults(func=show_command)
    block = hashtags.add_parser("block", help="never suggest a hashtag again")
    block.add_argument("hashtag", help="e.g. '#spam' (quote it: '#' starts a shell comment)")
    block.add_argument("--reason", help="why, for whoever reads the table later")
    block.set_defaults(func=block_command)
    unblock = hashtags.add_parser("unblock", help="remove a hashtag from the database blocklist")
    unblock.add_argument("hashtag", help="e.g. '#spam' (quoted)")
    unblock.set_defaults(func=unblock_command)


def refresh_command(args) -> int:
    from tasks.cli import progress

    labels = args.labels.split(",") if args.labels else None
    bar = None

    def advance(done: int, total: int) -> None:  # called before each label, and once at the end
        nonlocal bar
        bar = bar or progress.bar(total, "labels", "label", progress.enabled(args.quiet))
        bar.update(done - bar.n)

    try:
        summary = pipeline.refresh_hashtags(
            dataset=args.dataset, labels=labels, lang=None if args.lang == "any" else args.lang, woeid=args.woeid,
            max_posts=args.max_posts, ttl_hours=args.ttl_hours, force=args.force, progress=advance)
    except (*pipeline.user_errors(), ValueError) as error:
        raise errors.UserError(f"hashtagger hashtags refresh: {error}") from None
    finally:
        if bar is not None:
            bar.close()
    print(f"{summary.labels} labels: {summary.fetched} fetched, {summary.empty} without hashtags, "
          f"{summary.fresh} still fresh, {summary.errors} failed, {summary.not_tried} not tried")
    requests = ", ".join(f"{count} {endpoint}" for endpoint, count in summary.requests.items()) or "none"
    print(f"  trends {summary.trends}; X {summary.x}; requests: {requests}")
    return 0  # X's answers never fail a refresh: what it did not answer stays cached


def show_command(args) -> int:
    try:
        report = pipeline.hashtag_report(args.label, args.platform)
    except pipeline.user_errors() as error:
        raise errors.UserError(f"hashtagger hashtags show: {error}") from None
    check_label(args.label, bool(report["fetches"]))
    print(f"{args.label}: X query {report['query']!r}")
    for fetch in report["fetches"]:
        print(f"  {fetch['source']} fetched {fetch['fetched_at']}: {fetch['status']}, {fetch['posts']} posts"
              + (f" ({fetch['detail']})" if fetch["detail"] else ""))
    for tag, count, trending in report["counts"]:
        print(f"  {count:5d}  {tag}" + ("  (trending)" if trending else ""))
    if not report["counts"]:
        print("  no cached hashtags from X: the lexicon answers for this label")
    print("ranked: " + " ".join(f"{tag} ({source})" for tag, source in report["ranked"]))
    return 0


def check_label(label: str, fetched: bool) -> None:
    """A UserError naming close matches when `label` is neither a lexicon label nor ever fetched from X."""
    import difflib

    known = pipeline.known_labels()
    if fetched or label in known:
        return
    close = difflib.get_close_matches(label, list(known), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "labels are class names such as cat or maple_tree"
    raise errors.UserError(f"hashtagger hashtags show: no such label {label!r}", hint)


def block_command(args) -> int:
    try:
        key = pipeline.block_hashtag(args.hashtag, args.reason)
    except (*pipeline.user_errors(), ValueError) as error:
        raise errors.UserError(f"hashtagger hashtags block: {error}") from None
    print(f"blocked {key}")
    return 0


def unblock_command(args) -> int:
    try:
        key, removed, shipped = pipeline.unblock_hashtag(args.hashtag)
    except (*pipeline.user_errors(), ValueError) as error:
        raise errors.UserError(f"hashtagger hashtags unblock: {error}") from None
    if shipped:
        print(f"{key} is in the shipped blocklist (tasks/resources/blocklist.txt): it stays blocked")
    else:
        print(f"unblocked {key}" if removed else f"{key} was not in the blocklist")
    return 0
