-- Images per label: how many images each model put in each top label, and how sure it was on average.
-- Every model version that tagged anything gets its own rows; add "WHERE model_version = ..." for one.
--   psql "$DB" -f images_per_label.sql
SELECT model_version, label, COUNT(*) AS images,
       ROUND(CAST(AVG(confidence) AS NUMERIC), 3) AS mean_confidence
FROM image_labels
GROUP BY model_version, label
ORDER BY model_version, images DESC, label;
