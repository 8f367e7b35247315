"""
### Hashtag refresh

Every hour: refresh the X hashtag cache in the results database (connection `postgres_default`) for
the labels of `dataset`, with the bearer token of the connection `x_api` (its password). Labels whose
cache is still fresh (6 hours) cost no request. Without the connection, or while X refuses or fails,
the task succeeds and its summary says why: tagging then ranks on the cache it has and on the offline
lexicon.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task

from tasks import connections
from tasks.config import BUNDLED_DATASETS


@dag(
    dag_id="hashtag_refresh",
    description="Hourly: refresh the X hashtag cache for the labels of a dataset (succeeds without X)",
    schedule=CronTriggerTimetable("0 * * * *", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(minutes=50),  # done before the next hour's run is due
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=5),
                  "execution_timeout": dt.timedelta(minutes=30)},
    params={"dataset": Param("cifar10", enum=list(BUNDLED_DATASETS),
                             description="whose labels to refresh (cifar100: fine and coarse classes)")},
    tags=["hashtagger", "hashtags"],
    doc_md=__doc__,
)
def hashtag_refresh():
    @task
    def migrate() -> list[str]:
        """Bring the results database to this version's schema (a no-op when it is current)."""
        from tasks import pipeline

        return pipeline.migrate_database(connections.results_db_url())[1]

    @task
    def refresh() -> dict:
        from tasks import pipeline

        dataset = get_current_context()["params"]["dataset"]
        return pipeline.refresh_hashtags(connections.results_db_url(), connections.x_bearer_token(), dataset).as_dict()

    migrate() >> refresh()


hashtag_refresh()
