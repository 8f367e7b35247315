"""SQL of the model registry (sql/002_model_registry.sql), run by tasks/registry/registry.py."""

from __future__ import annotations

import sqlalchemy as sa

INSERT_MODEL = sa.text("""
INSERT INTO models (model_id, architecture, recipe, dataset, dataset_version, test_top1, metrics,
                    artifact_uri, created_at, status)
VALUES (:model_id, :architecture, :recipe, :dataset, :dataset_version, :test_top1, :metrics,
        :artifact_uri, :created_at, 'candidate')
ON CONFLICT (model_id) DO NOTHING
RETURNING model_id
""")
UPDATE_MODEL = sa.text("""
UPDATE models SET test_top1 = :test_top1, metrics = :metrics, artifact_uri = :artifact_uri
WHERE model_id = :model_id
""")
UPSERT_EVALUATION = sa.text("""
INSERT INTO model_evaluations (model_id, dataset_version, test_top1, metrics, evaluated_at)
VALUES (:model_id, :dataset_version, :test_top1, :metrics, :evaluated_at)
ON CONFLICT (model_id, dataset_version) DO UPDATE SET
    test_top1 = excluded.test_top1, metrics = excluded.metrics, evaluated_at = excluded.evaluated_at
""")
INSERT_EVENT = sa.text("""
INSERT INTO model_events (event_id, model_id, dataset, event, detail, at)
VALUES (:event_id, :model_id, :dataset, :event, :detail, :at)
""")
SELECT_MODEL = sa.text("SELECT * FROM models WHERE model_id = :model_id")
SELECT_CHAMPION = sa.text("SELECT * FROM models WHERE dataset = :dataset AND status = 'champion'")
SET_STATUS = sa.text("UPDATE models SET status = :status WHERE model_id = :model_id")
SELECT_EVALUATIONS = sa.text("""
SELECT dataset_version, test_top1, evaluated_at FROM model_evaluations
WHERE model_id = :model_id ORDER BY evaluated_at DESC
""")
EVALUATION_METRICS = sa.text("""
SELECT dataset_version, test_top1, metrics FROM model_evaluations
WHERE model_id = :model_id ORDER BY evaluated_at DESC
""")
LAST_EVENT = sa.text("""
SELECT event, detail FROM model_events WHERE model_id = :model_id ORDER BY at DESC LIMIT 1
""")
LAST_CROWNING = sa.text("""
SELECT event, detail, at FROM model_events
WHERE model_id = :model_id AND event IN ('promoted', 'restored') ORDER BY at DESC LIMIT 1
""")
# the newest registry row of a dataset's bundled model (its `bundled:<dataset>` reference)
SELECT_BASELINE = sa.text("""
SELECT * FROM models WHERE dataset = :dataset AND artifact_uri = :uri ORDER BY created_at DESC LIMIT 1
""")
LIST_MODELS = sa.text("""
SELECT * FROM models
WHERE (:dataset IS NULL OR dataset = :dataset) AND (:status IS NULL OR status = :status)
ORDER BY created_at DESC, model_id
""").bindparams(sa.bindparam("dataset", type_=sa.String), sa.bindparam("status", type_=sa.String))
LIST_EVENTS = sa.text("""
SELECT * FROM model_events
WHERE (:dataset IS NULL OR dataset = :dataset) AND (:model_id IS NULL OR model_id = :model_id)
ORDER BY at DESC LIMIT :limit
""").bindparams(sa.bindparam("dataset", type_=sa.String), sa.bindparam("model_id", type_=sa.String))
# every evaluation of one model, oldest first (for `hashtagger models show`)
EVALUATIONS_IN_ORDER = sa.text("""
SELECT dataset_version, test_top1, evaluated_at FROM model_evaluations WHERE model_id = :model_id
ORDER BY evaluated_at
""")
# PostgreSQL: a per-dataset transaction lock (namespace, crc32 of the dataset name) serialising promotions
PROMOTION_LOCK = sa.text("SELECT pg_advisory_xact_lock(:namespace, :key)")
