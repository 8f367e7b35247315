-- Low-confidence images: at most `top` images whose top label a model gave a probability under
-- `threshold` (0 to 1), least sure first; candidates for a person to look at, or for the next training set.
--   psql "$DB" -v threshold=0.5 -v top=50 -f low_confidence_images.sql
SELECT image_uri, label, ROUND(CAST(confidence AS NUMERIC), 3) AS confidence, top_labels, model_version,
       tagged_at
FROM image_labels
WHERE confidence < :threshold
ORDER BY confidence, image_uri
LIMIT :top;
