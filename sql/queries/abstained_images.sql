-- Images the current champion had no confident label for ("no confident label": a NULL label), least
-- confident first, with what it would have guessed; at most `top` rows.
-- The confidence is the image's out-of-distribution score (maximum calibrated probability); raise or
-- lower a model's threshold with `hashtagger tag SOURCE --min-confidence X`, which re-decides from these
-- stored scores without running the model again.
SELECT image_uri, confidence AS ood_score, top_labels AS candidates, model_version, tagged_at
FROM image_labels
WHERE label IS NULL
ORDER BY confidence, image_uri
LIMIT :top;
