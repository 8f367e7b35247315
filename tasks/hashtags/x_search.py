"""The x-search provider's fetch: recent posts about a label, and the hashtags they carry, counted."""

from __future__ import annotations

import collections
import math
import re
import unicodedata

from tasks.hashtags import rank
from tasks.hashtags.x_api import SEARCH, XClient, XConfig, XUnavailable

SOURCE = "x-search"
PAGE_SIZE = 100  # X's maximum posts per recent-search request

# What to search for when the class name alone is ambiguous or not words at all ("vehicles_1"); the first
# term stands for the label, the others are synonyms. Labels not listed search for their name, with
# underscores read as spaces ("maple_tree" -> "maple tree").
SEARCH_TERMS: dict[str, tuple[str, ...]] = {
    "airplane": ("airplane", "aeroplane", "aircraft"),
    "automobile": ("car", "automobile"),
    "aquarium_fish": ("aquarium fish", "fishtank"),
    "can": ("tin can", "soda can"),
    "cattle": ("cattle", "cows"),
    "flatfish": ("flatfish", "flounder"),
    "lawn_mower": ("lawn mower", "lawnmower"),
    "maple_tree": ("maple tree", "maple leaves"),
    "mouse": ("field mouse", "mice"),
    "plain": ("prairie", "grassland"),
    "possum": ("possum", "opossum"),
    "ray": ("stingray", "manta ray"),
    "seal": ("seal pup", "harbor seal"),
    "streetcar": ("streetcar", "tram"),
    "sweet_pepper": ("bell pepper", "sweet pepper"),
    "tank": ("battle tank", "army tank"),
    "television": ("television", "tv"),
    "aquatic_mammals": ("marine mammals",),
    "food_containers": ("food container", "kitchenware"),
    "fruit_and_vegetables": ("fruit", "vegetables"),
    "household_electrical_devices": ("home appliances", "electronics"),
    "household_furniture": ("furniture",),
    "large_carnivores": ("big cats", "carnivores"),
    "large_man-made_outdoor_things": ("architecture", "landmarks"),
    "large_natural_outdoor_scenes": ("landscape", "nature"),
    "large_omnivores_and_herbivores": ("wild animals",),
    "medium_mammals": ("mammals",),
    "non-insect_invertebrates": ("invertebrates",),
    "small_mammals": ("small mammals", "rodents"),
    "vehicles_1": ("vehicles",),
    "vehicles_2": ("vehicles",),
}

# '#' inside a link is a fragment, not a hashtag: links with a scheme, and those without one that X
# links too, a domain name and a path (twitter.com/#tag, example.com/#tag)
URL = re.compile(r"https?://\S+|(?<![\w@.\-])(?:[\w\-]+\.)+[^\W\d_]{2,}(?::\d+)?/\S*", re.IGNORECASE)
# An emoji's presentation selectors (text U+FE0E, emoji U+FE0F) are marks, yet they end the emoji, not a
# word: '✌\ufe0f#tag' is a hashtag (twitter-text's conformance suite)
VARIATION_SELECTORS = ("\ufe0e", "\ufe0f")
KEYCAP = ("\ufe0f", "\u20e3")  # '#️⃣' is the keycap emoji
ELLIPSIS = "\u2026"  # how X ends a text it truncated


def search_terms(label: str) -> tuple[str, ...]:
    """The label's phrase and synonyms."""
    return SEARCH_TERMS.get(label) or (label.replace("_", " ").strip(),)


def search_query(label: str, lang: str | None = "en") -> str:
    """'(maple tree OR ... OR #mapletree) has:hashtags -is:retweet lang:en'."""
    terms = search_terms(label)
    parts = [f'"{term}"' if re.search(r"[\s-]", term) else term for term in terms]
    as_hashtag = re.sub(r"[\s-]", "", terms[0])
    if rank.is_hashtag_body(as_hashtag):
        parts.append(f"#{as_hashtag}")
    query = f"({' OR '.join(dict.fromkeys(parts))}) has:hashtags -is:retweet"
    return f"{query} lang:{lang}" if lang else query


def hashtags_in_text(text: str) -> list[str]:
    """Hashtags in a post's text by X's rules, for posts that come without `entities`.

    '#' or '＃', not preceded by a hashtag character (an emoji's variation selector does not count) or
    '&' (HTML entities), nor inside a link (with or without http://), followed by letters, marks,
    digits or '_' (at least one letter or mark), not followed by another '#' or '://', and not cut off
    by X's truncation ('#A…' at the end of a retweet).
    """
    text = URL.sub(" ", unicodedata.normalize("NFC", text))
    found, position = [], 0
    while position < len(text):
        character = text[position]
        previous = text[position - 1] if position else " "
        word_before = rank.is_hashtag_character(previous) and previous not in VARIATION_SELECTORS
        if (character not in rank.HASH_SIGNS or previous == "&" or word_before
                or text[position + 1: position + 2] in KEYCAP):
            position += 1
            continue
        end = position + 1
        while end < len(text) and rank.is_hashtag_character(text[end]):
            end += 1
        body = text[position + 1: end]
        following = text[end: end + 3]
        if (rank.is_hashtag_body(body) and not following.startswith(("#", "\uff03", "://"))
                and end != _truncated_at(text)):
            found.append(f"#{body}")
        position = max(end, position + 1)
    return found


def _truncated_at(text: str) -> int | None:
    """Where X cut a long text (a retweet's 'RT @user: ...'): the index of the closing '…', else None.
    The word before it is a fragment: '#A…' is not the hashtag '#A'."""
    stripped = text.rstrip()
    return len(stripped) - 1 if stripped.endswith(ELLIPSIS) else None


def _cut_off(entity: dict, cut: int | None, text: str) -> bool:
    """Whether an entity hashtag runs into the truncation point (by its offsets, else by the text)."""
    if cut is None:
        return False
    end = entity.get("end")
    if isinstance(end, int):
        return end >= cut
    return text[:cut].endswith(f"#{entity['tag']}") or text[:cut].endswith(f"\uff03{entity['tag']}")


def post_hashtags(post: dict) -> list[str]:
    """One post's hashtags, each once (case-insensitively), from `entities` when X sent them."""
    entities = post.get("entities")
    if isinstance(entities, dict):
        cut = _truncated_at(post.get("text") or "")
        raw = [f"#{item['tag']}" for item in entities.get("hashtags") or ()
               if isinstance(item, dict) and item.get("tag") and not _cut_off(item, cut, post.get("text") or "")]
    else:
        raw = hashtags_in_text(post.get("text") or "")
    unique: dict[str, str] = {}
    for tag in raw:
        normalised = rank.normalise(tag)
        if normalised is not None:
            unique.setdefault(normalised.casefold(), normalised)
    return list(unique.values())


def count_page(payload: object, counts: collections.Counter[str]) -> tuple[int, str | None]:
    """Add one page's hashtags to `counts`; returns (posts read, next_token)."""
    if not isinstance(payload, dict) or not ("data" in payload or "meta" in payload):
        raise XUnavailable(f"{SEARCH}: unexpected answer {str(payload)[:80]!r}", "malformed")
    try:
        posts = payload.get("data") or []
        for post in posts:
            counts.update(post_hashtags(post))
        next_token = (payload.get("meta") or {}).get("next_token")
    except (AttributeError, KeyError, TypeError) as error:
        raise XUnavailable(f"{SEARCH}: unexpected answer ({error})", "malformed") from error
    return len(posts), next_token


def search_label(x: XClient, label: str) -> tuple[dict[str, int], int]:
    """The label's hashtags from up to `max_posts` recent posts: ({'#Tag': posts}, posts read).

    One request per label at the default cap of 100 posts; ceil(max_posts / 100) requests at most.
    Spellings that differ in case count as one tag; tags seen in fewer than `min_count` posts are dropped;
    the `keep_per_label` most frequent are kept.
    """
    config = x.config
    query = search_query(label, config.lang)
    counts: collections.Counter[str] = collections.Counter()
    read, next_token = 0, None
    # pages are counted as well as posts: X may answer a page with fewer posts than asked and a next_token
    for _ in range(math.ceil(config.max_posts / PAGE_SIZE)):
        page_size = max(10, min(PAGE_SIZE, config.max_posts - read))  # X accepts 10..100 posts a page
        posts, next_token = count_page(x.search_recent(query, page_size, next_token), counts)
        read += posts
        if not next_token or posts == 0 or read >= config.max_posts:
            break
    return _merge_spellings(counts, config), read


def _merge_spellings(counts: collections.Counter[str], config: XConfig) -> dict[str, int]:
    """One entry per hashtag whatever its case, in its most common spelling, with the posts of all of them."""
    totals: collections.Counter[str] = collections.Counter()
    spellings: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
    for tag, count in counts.items():
        totals[tag.casefold()] += count
        spellings[tag.casefold()].append((count, tag))
    kept = [(max(spellings[key])[1], total) for key, total in totals.most_common() if total >= config.min_count]
    return dict(kept[: config.keep_per_label])
