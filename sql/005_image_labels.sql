-- 005: a third view, for questions about images rather than hashtags. Portable: PostgreSQL and SQLite.

-- One row per image and model: the top label and its probability (image_tags.label is the label each
-- hashtag stands for, which may be the second or third best). top_labels is JSON: [[label, p], ...].
CREATE VIEW image_labels AS
SELECT image_uri, label, confidence, top_labels, model_version, run_id, tagged_at, content_hash
FROM image_results;
