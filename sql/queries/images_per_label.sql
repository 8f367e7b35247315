-- Images per label: how many images each model put in each top label, and how sure it was on average.
-- Counts the current results (image_labels: each image once, as the current champion tagged it, else
-- as it was tagged last); FROM image_labels_all counts every model that ever tagged anything.
--   psql "$DB" -f images_per_label.sql
SELECT model_version, label, COUNT(*) AS images,
       ROUND(CAST(AVG(confidence) AS NUMERIC), 3) AS mean_confidence
FROM image_labels
GROUP BY model_version, label
ORDER BY model_version, images DESC, label;
