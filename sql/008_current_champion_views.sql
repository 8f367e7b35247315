-- 008: the results views show one model's results per image, the current champion's, and the full history
-- stays in image_tags_all and image_labels_all. Portable: PostgreSQL and SQLite.
--
-- After a new champion, tagging re-tags the images it has not tagged yet (a few nights when capped by
-- max_images); until then an image shows the rows of the model that tagged it last, so it never
-- disappears from the views, and two models' hashtags never interleave for one image.

DROP VIEW image_tags;
DROP VIEW image_labels;

-- Every result of every model: what image_tags and image_labels were before.
CREATE VIEW image_tags_all AS
SELECT h.image_uri, h.label, h.confidence, h.hashtag, h.hashtag_rank, h.hashtag_source,
       h.model_version, r.run_id, r.tagged_at, h.content_hash, h.score
FROM image_hashtags h
JOIN image_results r
  ON r.image_uri = h.image_uri AND r.content_hash = h.content_hash AND r.model_version = h.model_version;

CREATE VIEW image_labels_all AS
SELECT image_uri, label, confidence, top_labels, model_version, run_id, tagged_at, content_hash
FROM image_results;

-- The one model shown for each image (its URI and bytes): a champion's rows when a champion tagged it,
-- else the most recently tagged rows. A correlated lookup on image_results' primary key.
CREATE VIEW image_results_current AS
SELECT r.image_uri, r.content_hash, r.model_version, r.label, r.confidence, r.top_labels, r.run_id, r.tagged_at
FROM image_results r
WHERE r.model_version = (
    SELECT other.model_version
    FROM image_results other
    LEFT JOIN models m ON m.model_id = other.model_version AND m.status = 'champion'
    WHERE other.image_uri = r.image_uri AND other.content_hash = r.content_hash
    ORDER BY CASE WHEN m.model_id IS NULL THEN 1 ELSE 0 END, other.tagged_at DESC, other.model_version
    LIMIT 1);

CREATE VIEW image_tags AS
SELECT h.image_uri, h.label, h.confidence, h.hashtag, h.hashtag_rank, h.hashtag_source,
       h.model_version, r.run_id, r.tagged_at, h.content_hash, h.score
FROM image_hashtags h
JOIN image_results_current r
  ON r.image_uri = h.image_uri AND r.content_hash = h.content_hash AND r.model_version = h.model_version;

CREATE VIEW image_labels AS
SELECT image_uri, label, confidence, top_labels, model_version, run_id, tagged_at, content_hash
FROM image_results_current;
