"""
### Nightly tagging

Every night at 02:00 UTC, and at once when `train_models` promotes a new champion (its Asset
`hashtagger://models/<dataset>/champion`; such a run tags with that dataset's new champion): refresh the X hashtag cache, find the images of `source` (a bucket
`s3://bucket/prefix` or a folder; scheduled runs use `$HASHTAGGER_SOURCE`, default
`s3://hashtagger/incoming/`) that the champion model has not tagged yet, tag them in up to `shards`
parallel chunks (a small night in fewer: one per `min_shard_images`, 256, images of work), and record the
run's totals.

- Results go to the PostgreSQL of the connection `postgres_default` (table `image_results`, views
  `image_tags`, `image_labels`, `image_hashtags`); the bucket is reached through `aws_default` (its endpoint URL
  in the extras for MinIO or any S3-compatible server); X through `x_api` (bearer token as password;
  without it, hashtags come from the offline lexicon).
- Idempotent: the tagging run ids come from the logical date (or the run id when a run has none), so
  clearing a run repeats it and leaves one result per image; its totals count the shard runs since its
  manifest was written again (what the first try tagged is then "already done").
- The model is the registry's champion for `dataset` (the bundled model until a trained one beats
  it), chosen once per run so that every shard uses the same one; `model` names another artifact folder.
  Tagging is incremental per model: after a champion change, the run tags the images the new champion
  has not tagged yet, at most `max_images` a run (split over the shards), oldest first, so a big bucket
  catches up over several nights. The view `image_tags` shows the champion's rows; `image_tags_all` all of them.
- The first task lists the source once a night and writes a manifest of work (the images new, changed or
  not tagged by this model yet, each with its shard) to the results database; the shards read their part
  of it and never list the source. An image whose size, mtime, inode and device (a bucket's ETag, size,
  LastModified) are what they were when its bytes were tagged is not read at all. Once a week, trigger a
  run with `{"verify": true}` (or schedule one): every image is read and hashed again, which finds bytes
  changed under the same metadata (a restored mtime, a tool that keeps it) and stores what it found.
- A source that does not exist (or a bucket that refuses the credentials) fails the run at once, without
  retries; an unreachable database or S3 endpoint is retried.
- Each shard logs one line (tagged, failed, already done, images/s); `record_summary` returns the run's
  totals (its XCom), and `write_report` writes the run's HTML page, thumbnails with labels, hashtags and
  model and the failures with their reasons, to `$HASHTAGGER_HOME/reports/<run key>/index.html` on the
  workers' shared volume: its return value (XCom tab) and its log give the path.
- Unpausing runs the most recent 02:00 slot at once (Airflow's `catchup=False` keeps the latest one):
  point `HASHTAGGER_SOURCE` at the right place first.
"""

from __future__ import annotations

import datetime as dt
import logging
import os

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, get_current_context, task

from tasks import connections, retries
from tasks.assets import CHAMPIONS, RESULTS

log = logging.getLogger(__name__)

# What scheduled runs tag (a triggered run may name another source in its conf).
DEFAULT_SOURCE = os.environ.get("HASHTAGGER_SOURCE", "s3://hashtagger/incoming/")


# ------------------------------------------------------------------------- the tasks, wired below

@task
def migrate() -> list[str]:
    """Bring the results database to this version's schema (a no-op when it is current)."""
    from tasks import pipeline

    return pipeline.migrate_database(connections.results_db_url())[1]


@task
def refresh_hashtags() -> dict:
    from tasks import pipeline

    return pipeline.refresh_hashtags(connections.results_db_url(), connections.x_bearer_token(),
                                     _dataset(get_current_context())).as_dict()


@task
def find_new_images() -> list[dict]:
    """List the source once into the night's manifest; one work order per shard, or none when every
    image is tagged already."""
    from tasks import pipeline

    context = get_current_context()
    params, db_url = context["params"], connections.results_db_url()
    key, shards = pipeline.run_key(context.get("logical_date"), context["run_id"]), params["shards"]
    with retries.fail_fast():  # a missing source or model: fail now, not after every retry
        model_path = params["model"] or str(pipeline.champion_path(_dataset(context), db_url))
        found = pipeline.plan_night(params["source"], model_path, key, shards, db_url,
                                    connections.s3_settings(params["source"]), verify=params["verify"],
                                    min_shard_images=params["min_shard_images"])
    log.info("%d of %d images of %s are new for %s (%d done, listed once into the manifest of %s, "
             "split over %d of at most %d shards)", found["new"], found["seen"], found["source"],
             found["model_id"], found["done"], key, found["shards"], shards)
    # a small night runs fewer shards than the param (one per batch of work): found["shards"]
    return [{"source": found["source"], "model_path": model_path, "shard": shard, "shards": found["shards"],
             "run_id": pipeline.shard_run_id(key, shard, found["shards"]), "manifest": key,
             "verify": params["verify"]} for shard in range(found["shards"]) if found["new"]]


@task(max_active_tis_per_dagrun=8)
def tag_shard(order: dict) -> dict:
    from tasks import pipeline

    params = get_current_context()["params"]
    summary = pipeline.tag_shard(**order, db_url=connections.results_db_url(),
                                 s3=connections.s3_settings(order["source"]), platform=params["platform"],
                                 limit=pipeline.shard_limit(params["max_images"], order["shards"]),
                                 min_confidence=params["min_confidence"])
    _log_shard(order, summary)
    return summary


@task(trigger_rule="none_failed", outlets=[RESULTS])
def record_summary(hashtags: dict) -> dict:
    from tasks import pipeline

    context = get_current_context()
    key = pipeline.run_key(context.get("logical_date"), context["run_id"])
    summary = pipeline.summarize_run(key, context["params"]["shards"], connections.results_db_url()).as_dict()
    summary.update(source=context["params"]["source"], x=hashtags.get("x"))
    context["outlet_events"][RESULTS].extra = summary
    # the Asset event's extra carries the status (succeeded_with_failures) and the failed count
    log.log(logging.WARNING if summary["failed"] else logging.INFO,
            "run %s: %s; %s tagged (%s with no confident label), %s failed, %s already done, %s seen, "
            "over %s shard runs", key, summary["status"], summary["tagged"], summary["abstained"],
            summary["failed"], summary["skipped"], summary["seen"], summary["shard_runs"])
    return summary


@task
def write_report(summary: dict) -> dict:
    """The run's HTML page (thumbnails, hashtags, failures) beside the results; returns its path."""
    from tasks import pipeline

    if not summary["shard_runs"]:
        log.info("nothing was tagged in this run: no page")
        return {"report": None}
    params = get_current_context()["params"]
    # thumbnails come from the source, through the bucket's connection for s3://
    page = pipeline.write_run_report(summary["run_ids"], summary["run_key"], db_url=connections.results_db_url(),
                                     s3=connections.s3_settings(params["source"]))
    log.info("the run's page: %s", page.as_uri())
    return {"report": page.as_uri(), "tagged": summary["tagged"], "failed": summary["failed"]}


@dag(
    dag_id="nightly_tagging",
    description="02:00 UTC: tag the new images of $HASHTAGGER_SOURCE with the champion, then write the run's page",
    # the nightly slot, and a new champion of either dataset (it re-tags with that champion at once)
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 2 * * *", timezone="UTC"),
                                 assets=CHAMPIONS["cifar10"] | CHAMPIONS["cifar100"]),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,  # two runs over one bucket would do the same work twice
    dagrun_timeout=dt.timedelta(hours=6),
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=2),
                  "execution_timeout": dt.timedelta(hours=4)},
    params={
        "source": Param(DEFAULT_SOURCE, type="string", minLength=1,
                        description="s3://bucket/prefix or a folder the workers can read"),
        "shards": Param(4, type="integer", minimum=1, maximum=64,
                        description="parallel tagging tasks at most (each takes the images whose URI hashes to it; "
                                    "a small night runs one per min_shard_images images of work)"),
        "min_shard_images": Param(256, type="integer", minimum=1,
                                  description="images of work each shard is worth starting for: a night with "
                                              "less work runs fewer shards"),
        "dataset": Param("cifar10", enum=sorted(CHAMPIONS),
                         description="whose champion tags (a run started by a new champion: that one's dataset)"),
        "model": Param(None, type=["null", "string"],
                       description="a model artifact folder the workers can read, instead of the champion"),
        "platform": Param("generic", enum=["generic", "instagram", "x"],
                          description="hashtags kept per image: instagram 5, x 3, generic 10"),
        "max_images": Param(None, type=["null", "integer"], minimum=1,
                            description="tag at most this many images a run (None: all)"),
        "verify": Param(False, type="boolean",
                        description="read and hash every image again, whatever its metadata says (weekly)"),
        "min_confidence": Param(None, type=["null", "number"], minimum=0, maximum=1,
                                description="no confident label below this calibrated probability (None: the "
                                            "model's own threshold); stored results are decided again from "
                                            "their scores"),
    },
    tags=["hashtagger", "tagging"],
    doc_md=__doc__,
)
def nightly_tagging():
    hashtags = refresh_hashtags()
    migrated = migrate()
    found = find_new_images()
    migrated >> [hashtags, found]  # a new database has its tables before anything reads it
    tagged = tag_shard.expand(order=found)
    hashtags >> tagged
    write_report(tagged >> record_summary(hashtags))


def _dataset(context) -> str:
    """Whose champion tags: the dataset of the newest champion event that started this run, else the param."""
    from tasks import pipeline

    return (pipeline.triggering_datasets(context) or [context["params"]["dataset"]])[-1]


def _log_shard(order: dict, summary: dict) -> None:
    """One line per shard; failed images do not fail the task (one bad file must not fail a night) but
    say so as a WARNING."""
    done, seconds = (summary["tagged"] or 0) + (summary["failed"] or 0), summary["seconds"] or 0
    log.log(logging.WARNING if summary["failed"] else logging.INFO,
            "shard %d of %d: %s: %s tagged (%s with no confident label), %s failed, %s already done, %s seen "
            "in %.1f s (%.0f images/s)", order["shard"] + 1, order["shards"], summary["status"],
            summary["tagged"], summary["abstained"], summary["failed"], summary["skipped"], summary["seen"],
            seconds, done / seconds if seconds else 0)


nightly_tagging()
