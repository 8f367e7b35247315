"""The service layer: one plain function per use case, called by both front ends (tasks/cli/ and dags/).

Nothing calls the stages below (data, train, evaluate, registry, tag, hashtags, store) except through
here, so the CLI and the DAGs wire each use case the same way. No Airflow in here: the DAG layer turns
connections into plain arguments (a SQLAlchemy URL, S3 settings, an X token), so every function runs
and tests without Airflow. `db_url` None means the environment's results database (HASHTAGGER_DB_URL,
else the embedded SQLite under HASHTAGGER_HOME). Functions return small things: typed contracts,
ids, paths, counts; never arrays or models, except `serving_model`, which the tag use case takes.

Importing this module is cheap (the DAG files import it when Airflow parses them): every stage is
imported inside the function that needs it.

The use cases, one module each: common (settings, the results database, the errors front ends
catch), training (datasets, training, evaluation), models (the registry and the champion), hashtags,
tagging (runs, their pages, the nightly run ids), answers (the `hashtag` command), reviews (the review page). Everything is
re-exported here: front ends call `pipeline.<use case>`.
"""

from __future__ import annotations

from tasks.evaluate.result import EvaluationResult  # noqa: F401  what `evaluate` returns (a stdlib-only module)
from tasks.hashtags.rank import PLATFORM_LIMITS  # noqa: F401  for the front ends' choices (a stdlib-only module)
from tasks.pipeline.common import (  # noqa: F401
    DATASETS, RunActive, RunFailed, S3Settings, database_errors, ensure_baseline,
    migrate_database, plain_engine, results_engine, settings, user_errors)
from tasks.pipeline.training import (  # noqa: F401
    architectures, check_training_settings, evaluate, find_dataset, model_summary, new_reviews, prepare_dataset,
    prepare_reviewed_dataset, recipe_names, train, train_model, training_plan, training_spec)
from tasks.pipeline.models import (  # noqa: F401
    auto_promote_model, champion_path, champions_history, export_model, list_models, model_history, promote_best,
    promote_model, register_model, register_saved_model, rollback_champion, tta_model)
from tasks.pipeline.hashtags import (  # noqa: F401
    block_hashtag, hashtag_report, known_labels, refresh_hashtags, unblock_hashtag)
from tasks.pipeline.tagging import (  # noqa: F401
    plan_night, run_key, run_results, serving_model, shard_limit, shard_run_id, shard_run_key, summarize_run,
    tag_shard, tag_source, triggering_datasets, write_run_report)
from tasks.pipeline.answers import (  # noqa: F401
    escaped_name, hashtag_images, image_tile, shown_name)
from tasks.pipeline.reviews import RetrainTrigger, review_app, reviewed_slice_summary  # noqa: F401
