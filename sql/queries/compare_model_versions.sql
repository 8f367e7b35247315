-- Two model versions compared on the same images (same URI, same bytes): each one's top label and
-- confidence, 'changed' rows first. Model versions are the model_version column (tagging_runs lists them).
-- Reads the history view image_labels_all: image_labels shows one model per image, the current champion.
--   psql "$DB" -v old_model="'vgg16-cifar10-...'" -v new_model="'resnet20-cifar10-...'" -f compare_model_versions.sql
SELECT older.image_uri,
       older.label AS old_label, ROUND(CAST(older.confidence AS NUMERIC), 3) AS old_confidence,
       newer.label AS new_label, ROUND(CAST(newer.confidence AS NUMERIC), 3) AS new_confidence,
       -- two abstentions (NULL labels) are the same verdict; = alone would call them changed
       CASE WHEN older.label = newer.label OR (older.label IS NULL AND newer.label IS NULL) THEN 'same'
            ELSE 'changed' END AS verdict
FROM image_labels_all older
JOIN image_labels_all newer ON newer.image_uri = older.image_uri AND newer.content_hash = older.content_hash
WHERE older.model_version = :old_model AND newer.model_version = :new_model
ORDER BY verdict, older.image_uri;
