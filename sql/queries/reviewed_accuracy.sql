-- Reviewed accuracy per model version: of the images people reviewed (the answer that stands for each,
-- image_reviews_current), how often each model that tagged those very bytes agreed with the person, with
-- a Wilson score 95% interval (z = 1.96), which stays inside [0, 1] and is honest for a few dozen answers.
-- An abstention agrees with "none of these classes". An answer counts for the model that was reviewed and
-- for the other models of its dataset (a CIFAR-100 class says nothing about a CIFAR-10 model's label).
-- Model versions with no reviewed image are absent.
--   psql "$DB" -v ON_ERROR_STOP=1 -f sql/queries/reviewed_accuracy.sql
WITH judged AS (
    SELECT r.model_version,
           CASE WHEN r.label = c.label OR (r.label IS NULL AND c.label IS NULL) THEN 1 ELSE 0 END AS agreed
    FROM image_reviews_current c
    JOIN image_results r ON r.image_uri = c.image_uri AND r.content_hash = c.content_hash
    WHERE r.model_version = c.model_version
       OR EXISTS (SELECT 1 FROM models reviewed JOIN models other ON other.dataset = reviewed.dataset
                  WHERE reviewed.model_id = c.model_version AND other.model_id = r.model_version)
), totals AS (
    SELECT model_version, COUNT(*) AS reviewed, SUM(agreed) AS agreed,
           CAST(SUM(agreed) AS DOUBLE PRECISION) / COUNT(*) AS accuracy
    FROM judged
    GROUP BY model_version
)
SELECT model_version, reviewed, agreed, accuracy,
       (accuracy + 1.9208 / reviewed
        - 1.96 * sqrt(accuracy * (1 - accuracy) / reviewed + 0.9604 / (reviewed * reviewed)))
       / (1 + 3.8416 / reviewed) AS wilson_low,
       (accuracy + 1.9208 / reviewed
        + 1.96 * sqrt(accuracy * (1 - accuracy) / reviewed + 0.9604 / (reviewed * reviewed)))
       / (1 + 3.8416 / reviewed) AS wilson_high
FROM totals
ORDER BY model_version;
