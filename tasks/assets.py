"""The Airflow Assets that connect the DAGs, each defined once (the DAG files import them from here).

- `DATASETS[name]` (`hashtagger://datasets/<name>`): `cifar_dataset` emits an event when it prepares a
  version (extra: `dataset`, `version`); `train_models` is scheduled on it and trains on that version.
- `CHAMPIONS[name]` (`hashtagger://models/<name>/champion`): `train_models` emits an event when it
  promotes a new champion (extra: `dataset`, `model_id`, `test_top1`); `nightly_tagging` is scheduled on
  it as well as on its cron, so a new champion re-tags at once instead of at the next 02:00.
- `RESULTS` (`hashtagger://results/image_tags`): `nightly_tagging` emits an event with the run's totals.
- `REVIEWED` (`hashtagger://datasets/reviewed`): `reviewed_dataset` emits an event when enough new answers
  from `hashtagger review` made it prepare a version of the reviewed dataset (extra: `dataset`, `version`,
  `new_answers`); `train_models` is scheduled on it and trains on that version.

Only the DAG files import this module (it imports Airflow's task SDK).
"""

from __future__ import annotations

from airflow.sdk import Asset

from tasks.config import BUNDLED_DATASETS

DATASETS = {name: Asset(name=f"{name}_dataset", uri=f"hashtagger://datasets/{name}", group="dataset")
            for name in BUNDLED_DATASETS}
CHAMPIONS = {name: Asset(name=f"{name}_champion", uri=f"hashtagger://models/{name}/champion", group="model")
             for name in BUNDLED_DATASETS}
RESULTS = Asset(name="image_tags", uri="hashtagger://results/image_tags", group="results")

REVIEWED = Asset(name="reviewed_dataset", uri="hashtagger://datasets/reviewed", group="dataset")
