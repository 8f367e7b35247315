-- 018: people correct the tags (issue 25). `hashtagger review` shows the images whose answers teach the
-- most and records what a person says each one shows. Portable: PostgreSQL and SQLite, except where a
-- statement is marked `-- only: <dialect>` (tasks/store/db.py). 016 and 017 are another branch's: the
-- runner applies the files it has in order, and a gap in the numbers is no error.
--
-- Answers are data, kept as they were given: the table is append-only (triggers refuse UPDATE and
-- DELETE). An undo is a row of its own that retracts an earlier one (`retracts` names its review_id), so
-- the record shows what was said, when, and what was taken back.
--
-- review_seq: the order rows were written, for "the latest answer stands";
-- review_id: the answer's own key, made by the page once per answer, so a POST sent twice writes once;
-- label: the class the person chose; NULL: "none of these classes" (or, on a retraction, nothing);
-- model_version: the model whose candidates the person saw.

-- only: postgresql
CREATE TABLE image_reviews (
    review_seq    BIGSERIAL PRIMARY KEY,
    review_id     TEXT NOT NULL UNIQUE,
    image_uri     TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    model_version TEXT NOT NULL,
    label         TEXT,
    retracts      TEXT REFERENCES image_reviews (review_id),
    reviewer      TEXT NOT NULL,
    reviewed_at   TIMESTAMP WITH TIME ZONE NOT NULL
);

-- only: sqlite
CREATE TABLE image_reviews (
    review_seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    review_id     TEXT NOT NULL UNIQUE,
    image_uri     TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    model_version TEXT NOT NULL,
    label         TEXT,
    retracts      TEXT REFERENCES image_reviews (review_id),
    reviewer      TEXT NOT NULL,
    reviewed_at   TIMESTAMP WITH TIME ZONE NOT NULL
);

CREATE INDEX image_reviews_image ON image_reviews (image_uri, content_hash);
CREATE INDEX image_reviews_retracts ON image_reviews (retracts);

-- only: postgresql
CREATE FUNCTION image_reviews_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'image_reviews is append-only: retract an answer with a new row'; END $$;

-- only: postgresql
CREATE TRIGGER image_reviews_no_update BEFORE UPDATE OR DELETE ON image_reviews FOR EACH ROW EXECUTE FUNCTION image_reviews_append_only();

-- only: sqlite
CREATE TRIGGER image_reviews_no_update BEFORE UPDATE ON image_reviews BEGIN SELECT RAISE(ABORT, 'image_reviews is append-only: retract an answer with a new row'); END;

-- only: sqlite
CREATE TRIGGER image_reviews_no_delete BEFORE DELETE ON image_reviews BEGIN SELECT RAISE(ABORT, 'image_reviews is append-only: retract an answer with a new row'); END;

-- The answer that stands for each image (URI and bytes): the latest one not retracted; none when every
-- answer was taken back.
CREATE VIEW image_reviews_current AS
SELECT r.review_seq, r.review_id, r.image_uri, r.content_hash, r.model_version, r.label, r.reviewer, r.reviewed_at
FROM image_reviews r
WHERE r.review_seq = (
    SELECT MAX(a.review_seq)
    FROM image_reviews a
    WHERE a.image_uri = r.image_uri AND a.content_hash = r.content_hash AND a.retracts IS NULL
      AND NOT EXISTS (SELECT 1 FROM image_reviews x WHERE x.retracts = a.review_id));

-- Each image's label as people should read it: the reviewed label over the model's, and which it is.
-- label NULL with label_source 'review': a person said none of the classes fits; with 'model': the
-- model abstained and nobody has reviewed it yet.
CREATE VIEW image_labels_reviewed AS
SELECT COALESCE(r.uri_text, r.image_uri) AS image_uri,
       CASE WHEN c.review_id IS NULL THEN r.label ELSE c.label END AS label,
       CASE WHEN c.review_id IS NULL THEN 'model' ELSE 'review' END AS label_source,
       r.label AS model_label, r.confidence, r.model_version, c.reviewer, c.reviewed_at, r.run_id, r.tagged_at,
       r.content_hash
FROM image_results_current r
LEFT JOIN image_reviews_current c ON c.image_uri = r.image_uri AND c.content_hash = r.content_hash;

-- What `hashtagger review` asks about, with what orders it: abstentions first (abstained = 1), then the
-- smallest margin between the two best calibrated probabilities (top_labels is JSON [[label, p], ...]).
-- reviewed = 1 once an answer stands for the image.
-- only: postgresql
CREATE VIEW image_review_queue AS
SELECT r.image_uri, r.content_hash, r.model_version, r.label, r.confidence, r.top_labels, r.uri_text, r.run_id,
       t.run_key, t.source, CASE WHEN r.label IS NULL THEN 1 ELSE 0 END AS abstained,
       COALESCE(CAST(CAST(r.top_labels AS json) -> 0 ->> 1 AS DOUBLE PRECISION), 0)
         - COALESCE(CAST(CAST(r.top_labels AS json) -> 1 ->> 1 AS DOUBLE PRECISION), 0) AS margin,
       CASE WHEN c.review_id IS NULL THEN 0 ELSE 1 END AS reviewed
FROM image_results_current r
JOIN tagging_runs t ON t.run_id = r.run_id
LEFT JOIN image_reviews_current c ON c.image_uri = r.image_uri AND c.content_hash = r.content_hash;

-- only: sqlite
CREATE VIEW image_review_queue AS
SELECT r.image_uri, r.content_hash, r.model_version, r.label, r.confidence, r.top_labels, r.uri_text, r.run_id,
       t.run_key, t.source, CASE WHEN r.label IS NULL THEN 1 ELSE 0 END AS abstained,
       COALESCE(CAST(json_extract(r.top_labels, '$[0][1]') AS REAL), 0)
         - COALESCE(CAST(json_extract(r.top_labels, '$[1][1]') AS REAL), 0) AS margin,
       CASE WHEN c.review_id IS NULL THEN 0 ELSE 1 END AS reviewed
FROM image_results_current r
JOIN tagging_runs t ON t.run_id = r.run_id
LEFT JOIN image_reviews_current c ON c.image_uri = r.image_uri AND c.content_hash = r.content_hash;
