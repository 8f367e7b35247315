-- 010: image names PostgreSQL cannot store or index as they are. Portable: PostgreSQL and SQLite.
--
-- image_uri in the tables is the image's key: the URI itself, as before, when it is valid text without
-- NUL and at most 1,024 bytes; otherwise 'uri-sha256:' and the hex SHA-256 of the name's exact bytes
-- (a file name that is not UTF-8, an S3 key holding NUL, a 4,000-byte path that would overflow a btree
-- index entry). Two names whose texts look alike stay two images. uri_text then holds the name for
-- people, escaped reversibly (bytes as \xNN, NUL as \x00, backslashes doubled); NULL when the key is
-- the URI. The views show that text as image_uri, so their columns are unchanged.
--
-- The views keep 008's meaning: image_tags and image_labels show one model per image (a champion's
-- rows once a champion tagged it, else the rows tagged last), image_tags_all and image_labels_all the
-- whole history. image_results_current keeps the key as image_uri (joins go by the key) and gains
-- uri_text. Views are dropped dependents first, since PostgreSQL refuses to drop a view another uses.

ALTER TABLE image_results ADD COLUMN uri_text TEXT;
ALTER TABLE image_failures ADD COLUMN uri_text TEXT;

DROP VIEW image_tags;
DROP VIEW image_labels;
DROP VIEW image_results_current;
DROP VIEW image_tags_all;
DROP VIEW image_labels_all;
DROP VIEW failed_images;

CREATE VIEW image_tags_all AS
SELECT COALESCE(r.uri_text, h.image_uri) AS image_uri, h.label, h.confidence, h.hashtag, h.hashtag_rank,
       h.hashtag_source, h.model_version, r.run_id, r.tagged_at, h.content_hash, h.score
FROM image_hashtags h
JOIN image_results r
  ON r.image_uri = h.image_uri AND r.content_hash = h.content_hash AND r.model_version = h.model_version;

CREATE VIEW image_labels_all AS
SELECT COALESCE(uri_text, image_uri) AS image_uri, label, confidence, top_labels, model_version, run_id,
       tagged_at, content_hash
FROM image_results;

CREATE VIEW image_results_current AS
SELECT r.image_uri, r.content_hash, r.model_version, r.label, r.confidence, r.top_labels, r.run_id, r.tagged_at,
       r.uri_text
FROM image_results r
WHERE r.model_version = (
    SELECT other.model_version
    FROM image_results other
    LEFT JOIN models m ON m.model_id = other.model_version AND m.status = 'champion'
    WHERE other.image_uri = r.image_uri AND other.content_hash = r.content_hash
    ORDER BY CASE WHEN m.model_id IS NULL THEN 1 ELSE 0 END, other.tagged_at DESC, other.model_version
    LIMIT 1);

CREATE VIEW image_tags AS
SELECT COALESCE(r.uri_text, h.image_uri) AS image_uri, h.label, h.confidence, h.hashtag, h.hashtag_rank,
       h.hashtag_source, h.model_version, r.run_id, r.tagged_at, h.content_hash, h.score
FROM image_hashtags h
JOIN image_results_current r
  ON r.image_uri = h.image_uri AND r.content_hash = h.content_hash AND r.model_version = h.model_version;

CREATE VIEW image_labels AS
SELECT COALESCE(uri_text, image_uri) AS image_uri, label, confidence, top_labels, model_version, run_id,
       tagged_at, content_hash
FROM image_results_current;

CREATE VIEW failed_images AS
SELECT COALESCE(uri_text, image_uri) AS image_uri, reason, run_id, failed_at, content_hash
FROM image_failures;
