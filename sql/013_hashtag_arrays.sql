-- 013: an image's ranked hashtags as one JSON array on its result row, instead of ten rows of their own.
--
-- Tagging wrote 11 rows an image (a result and 10 hashtags), each an upsert; on two cores that write was
-- the largest cost end to end beside decoding and inference (reports/tag_throughput.md). Now it writes
-- one: image_results.hashtags holds the ranked list, best first, each element
--   {"rank": 1, "hashtag": "#cat", "label": "cat", "confidence": 0.93, "score": 0.81, "source": "lexicon"}
-- ('[]' when the image has none: an abstention). The table image_hashtags becomes a view of the same
-- name and columns that unnests the arrays, so queries written against it, and the views image_tags and
-- image_tags_all built on it, keep working unchanged. JSON is text in both databases (PostgreSQL parses
-- it when the view is read, not when tagging writes).
--
-- Portable except where a statement is marked `-- only: <dialect>` (tasks/store/db.py): unnesting and
-- aggregating JSON are spelled differently in PostgreSQL and SQLite. Views that read image_hashtags are
-- dropped first and created again as in 012.

DROP VIEW image_tags;
DROP VIEW image_tags_all;

ALTER TABLE image_results ADD COLUMN hashtags TEXT NOT NULL DEFAULT '[]';

-- only: postgresql
UPDATE image_results r SET hashtags = (
    SELECT json_agg(json_build_object('rank', h.hashtag_rank, 'hashtag', h.hashtag, 'label', h.label,
                                      'confidence', h.confidence, 'score', h.score, 'source', h.hashtag_source)
                    ORDER BY h.hashtag_rank)::text
    FROM image_hashtags h
    WHERE h.image_uri = r.image_uri AND h.content_hash = r.content_hash AND h.model_version = r.model_version)
WHERE EXISTS (SELECT 1 FROM image_hashtags h
              WHERE h.image_uri = r.image_uri AND h.content_hash = r.content_hash
                AND h.model_version = r.model_version);

-- only: sqlite
UPDATE image_results SET hashtags = (
    SELECT json_group_array(json_object('rank', h.hashtag_rank, 'hashtag', h.hashtag, 'label', h.label,
                                        'confidence', h.confidence, 'score', h.score, 'source', h.hashtag_source))
    FROM (SELECT * FROM image_hashtags ORDER BY hashtag_rank) h
    WHERE h.image_uri = image_results.image_uri AND h.content_hash = image_results.content_hash
      AND h.model_version = image_results.model_version)
WHERE EXISTS (SELECT 1 FROM image_hashtags h
              WHERE h.image_uri = image_results.image_uri AND h.content_hash = image_results.content_hash
                AND h.model_version = image_results.model_version);

DROP TABLE image_hashtags;

-- only: postgresql
CREATE VIEW image_hashtags AS
SELECT r.image_uri, r.content_hash, r.model_version, CAST(e.value ->> 'rank' AS INTEGER) AS hashtag_rank,
       e.value ->> 'hashtag' AS hashtag, e.value ->> 'label' AS label,
       CAST(e.value ->> 'confidence' AS DOUBLE PRECISION) AS confidence,
       CAST(e.value ->> 'score' AS DOUBLE PRECISION) AS score, e.value ->> 'source' AS hashtag_source
FROM image_results r
CROSS JOIN LATERAL json_array_elements(CAST(r.hashtags AS json)) AS e(value);

-- only: sqlite
CREATE VIEW image_hashtags AS
SELECT r.image_uri, r.content_hash, r.model_version, CAST(json_extract(e.value, '$.rank') AS INTEGER) AS hashtag_rank,
       json_extract(e.value, '$.hashtag') AS hashtag, json_extract(e.value, '$.label') AS label,
       CAST(json_extract(e.value, '$.confidence') AS REAL) AS confidence,
       CAST(json_extract(e.value, '$.score') AS REAL) AS score, json_extract(e.value, '$.source') AS hashtag_source
FROM image_results r, json_each(r.hashtags) AS e;

CREATE VIEW image_tags_all AS
SELECT COALESCE(r.uri_text, h.image_uri) AS image_uri, h.label, h.confidence, h.hashtag, h.hashtag_rank,
       h.hashtag_source, h.model_version, r.run_id, r.tagged_at, h.content_hash, h.score
FROM image_hashtags h
JOIN image_results r
  ON r.image_uri = h.image_uri AND r.content_hash = h.content_hash AND r.model_version = h.model_version;

CREATE VIEW image_tags AS
SELECT COALESCE(r.uri_text, h.image_uri) AS image_uri, h.label, h.confidence, h.hashtag, h.hashtag_rank,
       h.hashtag_source, h.model_version, r.run_id, r.tagged_at, h.content_hash, h.score
FROM image_hashtags h
JOIN image_results_current r
  ON r.image_uri = h.image_uri AND r.content_hash = h.content_hash AND r.model_version = h.model_version;
