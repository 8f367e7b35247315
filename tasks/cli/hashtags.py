"""`hashtagger hashtags refresh|show|block|unblock`: the X hashtag cache and the users' blocklist."""

from __future__ import annotations

import sys

from tasks import pipeline
from tasks.pipeline import PLATFORM_LIMITS


def register(commands) -> None:
    hashtags = commands.add_parser("hashtags", help="the X hashtag cache and the blocklist").add_subparsers(
        dest="hashtags_command", required=True)
    refresh = hashtags.add_parser(
        "refresh", help="fetch hashtags from X for labels not fetched within the time to live ($X_BEARER_TOKEN)")
    refresh.add_argument("--labels", help="comma-separated labels (default: every class name of --dataset)")
    refresh.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100"),
                         help="whose class names to refresh (cifar100: fine and coarse)")
    refresh.add_argument("--lang", default="en", help="posts' language; 'any' for all languages")
    refresh.add_argument("--woeid", type=int, default=1, help="place whose trends boost hashtags (1: worldwide)")
    refresh.add_argument("--max-posts", type=int, default=100, help="posts read per label (100: one request)")
    refresh.add_argument("--ttl-hours", type=float, default=6.0, help="skip labels fetched this recently")
    refresh.add_argument("--force", action="store_true", help="fetch every label, however fresh")
    refresh.set_defaults(func=refresh_command)
    show = hashtags.add_parser("show", help="a label's cached hashtags, fetch log and ranked result")
    show.add_argument("label")
    show.add_argument("--platform", default="generic", choices=sorted(PLATFORM_LIMITS))
    show.set_defaults(func=show_command)
    block = hashtags.add_parser("block", help="never suggest a hashtag again")
    block.add_argument("hashtag", help="e.g. '#spam' (quote it: '#' starts a shell comment)")
    block.add_argument("--reason", help="why, for whoever reads the table later")
    block.set_defaults(func=block_command)
    unblock = hashtags.add_parser("unblock", help="remove a hashtag from the database blocklist")
    unblock.add_argument("hashtag")
    unblock.set_defaults(func=unblock_command)


def refresh_command(args) -> int:
    labels = args.labels.split(",") if args.labels else None
    try:
        summary = pipeline.refresh_hashtags(
            dataset=args.dataset, labels=labels, lang=None if args.lang == "any" else args.lang, woeid=args.woeid,
            max_posts=args.max_posts, ttl_hours=args.ttl_hours, force=args.force)
    except (*pipeline.user_errors(), ValueError) as error:
        print(f"hashtagger hashtags refresh: {error}", file=sys.stderr)
        return 2
    print(f"{summary['labels']} labels: {summary['fetched']} fetched, {summary['empty']} without hashtags, "
          f"{summary['fresh']} still fresh, {summary['failed']} failed, {summary['not_tried']} not tried")
    requests = ", ".join(f"{count} {endpoint}" for endpoint, count in summary["requests"].items()) or "none"
    print(f"  trends {summary['trends']}; X {summary['x']}; requests: {requests}")
    return 0  # X's answers never fail a refresh: what it did not answer stays cached


def show_command(args) -> int:
    try:
        report = pipeline.hashtag_report(args.label, args.platform)
    except pipeline.user_errors() as error:
        print(f"hashtagger hashtags show: {error}", file=sys.stderr)
        return 2
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


def block_command(args) -> int:
    try:
        key = pipeline.block_hashtag(args.hashtag, args.reason)
    except (*pipeline.user_errors(), ValueError) as error:
        print(f"hashtagger hashtags block: {error}", file=sys.stderr)
        return 2
    print(f"blocked {key}")
    return 0


def unblock_command(args) -> int:
    try:
        key, removed, shipped = pipeline.unblock_hashtag(args.hashtag)
    except (*pipeline.user_errors(), ValueError) as error:
        print(f"hashtagger hashtags unblock: {error}", file=sys.stderr)
        return 2
    if shipped:
        print(f"{key} is in the shipped blocklist (tasks/resources/blocklist.txt): it stays blocked")
    else:
        print(f"unblocked {key}" if removed else f"{key} was not in the blocklist")
    return 0
