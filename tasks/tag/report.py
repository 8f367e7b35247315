"""A static HTML page for tagging runs: a summary, then a gallery of thumbnails with label, confidence,
hashtags and model, then the failures with their reasons; paged for big runs.

The pages are self-contained (thumbnails are small JPEG data URIs read through the run's own source,
a folder or a bucket), so the folder can be opened from disk, copied or served as it is. They are
written under $HASHTAGGER_HOME/reports/<name>/ (index.html, page-2.html, ...), beside the results.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import logging
import urllib.parse
from pathlib import Path

import sqlalchemy as sa

from tasks.config import Settings
from tasks.store import reviews_sql, runs as stored_runs  # the SQL lives in tasks/store
from tasks.store.counts import RunCounts

log = logging.getLogger(__name__)


class RunNotFound(LookupError):
    """No tagging run with that id in the results database."""


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    page_size: int = 200  # images per page: a page of 200 thumbnails (about 1 MB) opens at once
    thumbnail_px: int = 128  # longest side of a thumbnail, CSS pixels
    jpeg_quality: int = 70  # thumbnails only: small files, still recognisable
    hashtags_shown: int = 10  # per image
    max_read_bytes: int = 50 * 2**20  # an image bigger than this gets no thumbnail (the row stays)
    # where `hashtagger review` listens by default (its --host and --port): the page links there, with
    # the run as the queue's filter, for a person to correct the tags
    review_url: str = "http://127.0.0.1:8765/"


@dataclasses.dataclass
class Image:
    uri: str
    label: str
    confidence: float
    model_version: str
    hashtags: list[str]
    thumbnail: str | None = None  # data:image/jpeg;base64,... ; None when the source no longer has it
    location: str | None = None  # the exact name to read when `uri` is escaped text (a hashed key)
    candidates: list[tuple[str, float]] = dataclasses.field(default_factory=list)  # (label, probability), best first
    abstained: bool = False  # no confident label: the card shows the candidates instead


def load_runs(engine: sa.Engine, run_ids: list[str]) -> list[dict]:
    """The tagging_runs rows of `run_ids` (in that order); RunNotFound when none exists."""
    rows = stored_runs.page_runs(engine, run_ids)
    if not rows:
        raise RunNotFound(f"no tagging run {', '.join(run_ids)} in the results database {database_shown(engine)}; "
                          f"`hashtagger tag` prints its run id")
    return [rows[run_id] for run_id in run_ids if run_id in rows]


def database_shown(engine: sa.Engine) -> str:
    """Which database `engine` is, for a message: an SQLite file's path, else the URL without its password."""
    if engine.dialect.name == "sqlite":
        return engine.url.database or ":memory:"
    return engine.url.render_as_string(hide_password=True)


NO_LABEL = "no confident label"


def load_images(engine: sa.Engine, run_ids: list[str], hashtags_shown: int) -> list[Image]:
    """Every image the runs tagged, by URI, each with its ranked hashtags."""
    from tasks.tag import sources

    # a hashed key (tasks/tag/refs.image_key) is shown as its name's text and read by its exact name
    # an abstention (NULL label) shows as such, with its score as the confidence
    return [Image(text or uri, label or NO_LABEL, float(confidence), model, hashtags,
                  location=sources.exact_name(uri, text), candidates=candidates, abstained=label is None)
            for uri, label, confidence, model, hashtags, text, candidates
            in stored_runs.page_images(engine, run_ids, hashtags_shown)]


def load_failures(engine: sa.Engine, run_ids: list[str]) -> list[tuple[str, str]]:
    return stored_runs.page_failures(engine, run_ids)


def thumbnail(data: bytes, config: ReportConfig) -> str | None:
    """A JPEG data URI of the image scaled to fit thumbnail_px (2x for sharp screens); None if unreadable."""
    from PIL import Image as PILImage, ImageOps

    from tasks.data import images

    try:
        with PILImage.open(io.BytesIO(data)) as picture:
            images._check_size(picture)  # the tagger's guard against decompression bombs
            picture.draft("RGB", (config.thumbnail_px * 2, config.thumbnail_px * 2))
            picture = images.to_rgb(ImageOps.exif_transpose(picture))
            picture.thumbnail((config.thumbnail_px * 2, config.thumbnail_px * 2))
            out = io.BytesIO()
            picture.save(out, "JPEG", quality=config.jpeg_quality, optimize=True)
    except Exception as error:  # noqa: BLE001  one unreadable file costs its thumbnail, not the page
        log.info("no thumbnail: %s", error)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def add_thumbnails(images: list[Image], source_uri: str, config: ReportConfig, s3_settings=None) -> int:
    """Read each image through the run's source (a bucket through `s3_settings`, tasks.config.S3Settings)
    and attach its thumbnail; returns how many got one."""
    from tasks.tag import sources

    try:
        source = sources.open_source(source_uri, s3_settings=s3_settings)
    except sources.SourceError as error:
        log.warning("no thumbnails: %s", error)
        return 0
    made = 0
    for image in images:
        try:
            data = source.read(sources.ImageRef(image.uri, location=image.location), config.max_read_bytes)
        except (sources.UnreadableImage, sources.SourceError) as error:
            log.info("no thumbnail for %s: %s", image.uri, error)
            continue
        image.thumbnail = thumbnail(data, config)
        made += image.thumbnail is not None
    return made


def write(engine: sa.Engine, run_ids: list[str], name: str | None = None, settings: Settings | None = None,
          config: ReportConfig = ReportConfig(), s3_settings=None) -> Path:
    """Write the pages of `run_ids` (one run, or the shard runs of a nightly run) and return index.html;
    thumbnails come from the runs' source (a bucket through `s3_settings`, tasks.config.S3Settings).

    name: the report's folder under $HASHTAGGER_HOME/reports/ (default: the only run id). Rewriting
    replaces the pages, so a report of a resumed run shows all of it.
    """
    settings = settings or Settings.from_env()
    runs = load_runs(engine, run_ids)
    found = [run["run_id"] for run in runs]
    images = load_images(engine, found, config.hashtags_shown)
    failures = load_failures(engine, found)
    for source in sorted({run["source"] for run in runs}):  # shard runs share one source: read it once
        add_thumbnails([image for image in images if image.uri.startswith(_prefix(source))], source, config,
                       s3_settings)
    folder = settings.home / "reports" / (name or found[0])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("page-*.html"):
        stale.unlink()
    pages = max(1, -(-len(images) // config.page_size))
    reviewed = reviewed_accuracy(engine, sorted({run["model_version"] for run in runs}))
    review_link = config.review_url + "?" + urllib.parse.urlencode({"run": name or found[0]})
    for page in range(1, pages + 1):
        chunk = images[(page - 1) * config.page_size: page * config.page_size]
        body = render_page(name or found[0], runs, chunk, failures if page == pages else [], page, pages,
                           len(images), len(failures), reviewed=reviewed, review_link=review_link)
        (folder / page_file(page)).write_text(body, encoding="utf-8")
    (folder / "summary.json").write_text(json.dumps(summary(runs, len(images), len(failures)).as_dict(), default=str,
                                                    indent=1))
    return folder / "index.html"


def reviewed_accuracy(engine: sa.Engine, models: list[str]) -> list[dict]:
    """sql/queries/reviewed_accuracy.sql's rows of `models` (those with reviewed images), in that order."""
    rows = {row["model_version"]: row for row in reviews_sql.reviewed_accuracy(engine)}
    return [rows[model] for model in models if model in rows]


def _prefix(source: str) -> str:
    return source if source.startswith("s3://") else source.rstrip("/")


def page_file(page: int) -> str:
    return "index.html" if page == 1 else f"page-{page}.html"


@dataclasses.dataclass(frozen=True)
class PageSummary(RunCounts):
    """A run page's header and summary.json: the runs' counts summed, with what they share."""

    runs: tuple[str, ...] = ()  # run ids (a nightly run's shards)
    status: str = ""  # the runs' overall status (tasks/store/runs.py overall_status)
    sources: tuple[str, ...] = ()  # source URIs, sorted
    models: tuple[str, ...] = ()  # model versions that tagged, sorted
    started_at: str = ""  # the earliest start, ISO 8601 UTC
    finished_at: str | None = None  # the latest end; None while a run is still going
    images_shown: int = 0  # image cards on the pages
    failures_shown: int = 0  # failure rows on the pages

    def as_dict(self) -> dict:
        """summary.json's object."""
        return dataclasses.asdict(self)


def summary(runs: list[dict], images: int, failures: int) -> PageSummary:
    """Totals over the runs: what the page's header and the Airflow run note show."""
    return PageSummary(**RunCounts.total(runs).counts(), runs=tuple(run["run_id"] for run in runs),
                       status=stored_runs.overall_status([run["status"] for run in runs]),
                       sources=tuple(sorted({run["source"] for run in runs})),
                       models=tuple(sorted({run["model_version"] for run in runs})),
                       started_at=min(str(run["started_at"]) for run in runs),
                       finished_at=max(str(run["finished_at"] or "") for run in runs) or None,
                       images_shown=images, failures_shown=failures)


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 8px} .summary{background:#fff;border:1px solid #ddd;padding:12px 16px;
border-radius:6px;margin-bottom:16px} .summary td{padding:2px 12px 2px 0} .failed{color:#b00020}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px}
figure{margin:0;background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}
figure img,.noimg{width:128px;height:128px;object-fit:contain;display:block;margin:0 auto 6px;background:#eee}
.noimg{display:flex;align-items:center;justify-content:center;color:#888;font-size:12px}
.label{font-weight:600} .tags{color:#1565c0;word-break:break-word} .candidates{color:#666;font-style:italic} .meta{color:#666;font-size:12px;
word-break:break-all} nav{margin:16px 0} nav a,nav span{margin-right:8px} table.failures td{padding:2px 8px;
vertical-align:top;border-bottom:1px solid #eee}
"""


def render_page(name: str, runs: list[dict], images: list[Image], failures: list[tuple[str, str]], page: int,
                pages: int, images_total: int, failures_total: int, reviewed: list[dict] = (),
                review_link: str | None = None) -> str:
    """One page of the report as an HTML string (every value escaped).

    reviewed: reviewed accuracy rows (model_version, reviewed, agreed, accuracy, wilson_low, wilson_high);
    review_link: the address of `hashtagger review` filtered to this run, linked from the header.
    """
    esc = html.escape
    totals = summary(runs, images_total, failures_total)
    failed_count = f" ({totals.failed:,} failed)" if totals.failed else ""
    rows = [("status", totals.status + failed_count), ("source", ", ".join(totals.sources)),
            ("model", ", ".join(totals.models)),
            ("images", f"{totals.seen:,} seen, {totals.tagged:,} tagged, {totals.skipped:,} already "
                       f"done, {totals.failed:,} failed"
                       + (f"; {totals.abstained:,} of the tagged with no confident label"
                          if totals.abstained else "")
                       + (f"; {totals.not_images:,} non-image file{'s' * (totals.not_images != 1)} skipped"
                          if totals.not_images else "")),
            ("time", f"{totals.started_at[:19]} to {(totals.finished_at or 'still running')[:19]} UTC")]
    errors = [run["error"] for run in runs if run.get("error")]
    if errors:
        rows.append(("error", "; ".join(errors)))
    rows += [("reviewed accuracy", _accuracy_text(row, len(totals.models) > 1)) for row in reviewed]
    head = "".join(f"<tr><th align=left>{esc(key)}</th><td>{esc(str(value))}</td></tr>" for key, value in rows)
    if review_link:
        head += (f"<tr><th align=left>review</th><td><a id=review-link href=\"{esc(review_link)}\">correct these "
                 f"tags</a> (after starting <code>hashtagger review</code>)</td></tr>")
    nav = _nav(page, pages)
    # the model is named once in the header; a card names it only where it differs (a mixed run)
    header_model = totals.models[0] if len(totals.models) == 1 else None
    cards = "".join(_card(image, header_model) for image in images) or "<p>No image was tagged in this run.</p>"
    failed = ""
    if failures:
        failed = ("<h2 class=failed id=failures>Failed images</h2><table class=failures>" +
                  "".join(f"<tr><td>{esc(uri)}</td><td>{esc(reason)}</td></tr>" for uri, reason in failures) +
                  "</table>")
    elif failures_total and page < pages:
        noun = "image" if failures_total == 1 else "images"
        failed = (f'<p class=failed>{failures_total:,} failed {noun}: on the '
                  f'<a href="{page_file(pages)}">last page</a>.</p>')
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>hashtagger run {esc(name)}</title>"
            f"<meta name=viewport content='width=device-width'><style>{STYLE}</style></head><body>"
            f"<h1>hashtagger run {esc(name)}</h1><div class=summary id=summary><table>{head}</table></div>"
            f"{nav}<div class=gallery id=gallery>{cards}</div>{nav}{failed}</body></html>\n")


def _accuracy_text(row: dict, name_model: bool) -> str:
    """'75% of 4 reviewed images (95% interval 30% to 95%)', the model named first when the run has several."""
    text = (f"{row['accuracy']:.0%} of {row['reviewed']:,} reviewed image{'s' if row['reviewed'] != 1 else ''} "
            f"(95% interval {row['wilson_low']:.0%} to {row['wilson_high']:.0%})")
    return f"{row['model_version']}: {text}" if name_model else text


def _card(image: Image, header_model: str | None = None) -> str:
    esc = html.escape
    picture = (f'<img src="{image.thumbnail}" alt="{esc(image.label)}">' if image.thumbnail
               else "<div class=noimg>no longer readable</div>")
    if image.abstained:  # what the model would have guessed, for a person to judge
        candidates = ", ".join(f"{name} {probability:.0%}" for name, probability in image.candidates)
        below = f"<div class=candidates>candidates: {esc(candidates)}</div>" if candidates else ""
    else:
        below = f"<div class=tags>{esc(' '.join(image.hashtags))}</div>"
    model = "" if image.model_version == header_model else f"<br>{esc(image.model_version)}"
    return (f"<figure class=image>{picture}<figcaption><div class=label>{esc(image.label)} "
            f"{image.confidence:.0%}</div>{below}"
            f"<div class=meta title='{esc(image.uri)}'>{esc(image.uri)}{model}</div>"
            f"</figcaption></figure>")


def _nav(page: int, pages: int) -> str:
    if pages == 1:
        return ""
    links = [f"<span>page {page} of {pages}</span>"]
    if page > 1:
        links.append(f'<a href="{page_file(page - 1)}">previous</a>')
    links += [f'<a href="{page_file(number)}">{number}</a>' if number != page else f"<b>{number}</b>"
              for number in range(1, pages + 1)]
    if page < pages:
        links.append(f'<a href="{page_file(page + 1)}">next</a>')
    return "<nav>" + " ".join(links) + "</nav>"
