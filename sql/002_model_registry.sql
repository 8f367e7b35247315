-- 002: the model registry: every trained model, its evaluations, which one serves, and the log of changes.
-- Portable SQL: runs on PostgreSQL and on SQLite (the embedded default). Never edit once shipped;
-- corrections go forward in a new numbered file.

CREATE TABLE models (
    model_id        TEXT PRIMARY KEY,
    architecture    TEXT NOT NULL,
    recipe          TEXT NOT NULL,
    dataset         TEXT NOT NULL,
    dataset_version TEXT NOT NULL,              -- the version it was trained (and first evaluated) on
    test_top1       DOUBLE PRECISION NOT NULL,  -- on the test split of that version, without TTA (as served)
    metrics         TEXT NOT NULL,              -- JSON: the metrics of that evaluation
    artifact_uri    TEXT NOT NULL,              -- the artifact folder (model.keras, metadata.json, reports/)
    created_at      TIMESTAMP WITH TIME ZONE NOT NULL,
    status          TEXT NOT NULL DEFAULT 'candidate',
    CONSTRAINT models_status CHECK (status IN ('candidate', 'champion', 'retired'))
);

-- Exactly one champion per dataset: a second one fails to insert, whatever the code does.
CREATE UNIQUE INDEX models_one_champion ON models (dataset) WHERE status = 'champion';

CREATE INDEX models_dataset ON models (dataset, status);

-- Test accuracy of a model on a dataset version: promotion compares two models on the same version.
CREATE TABLE model_evaluations (
    model_id        TEXT NOT NULL REFERENCES models (model_id),
    dataset_version TEXT NOT NULL,
    test_top1       DOUBLE PRECISION NOT NULL,  -- without TTA
    metrics         TEXT NOT NULL,              -- JSON
    evaluated_at    TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (model_id, dataset_version)
);

-- Append-only log: registered, promoted, retired, rejected, rolled_back, restored.
CREATE TABLE model_events (
    event_id TEXT PRIMARY KEY,                  -- a uuid4
    model_id TEXT NOT NULL REFERENCES models (model_id),
    dataset  TEXT NOT NULL,
    event    TEXT NOT NULL,
    detail   TEXT NOT NULL,                     -- JSON: reason, figures compared, previous champion
    at       TIMESTAMP WITH TIME ZONE NOT NULL
);

CREATE INDEX model_events_dataset ON model_events (dataset, at);
CREATE INDEX model_events_model ON model_events (model_id, at);
