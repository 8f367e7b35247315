-- Top hashtags per day: for each day from `first_day` to `last_day` (text, 'YYYY-MM-DD'), the `top`
-- hashtags carried by the most images, with their place. Days are UTC on SQLite and in the session's
-- time zone on PostgreSQL (SET TIME ZONE 'UTC' first for UTC days).
--   psql "$DB" -v first_day="'2026-11-20'" -v last_day="'2026-11-27'" -v top=10 -f top_hashtags_per_day.sql
WITH daily AS (
    SELECT substr(CAST(tagged_at AS TEXT), 1, 10) AS tagged_day, hashtag, COUNT(DISTINCT image_uri) AS images
    FROM image_tags
    WHERE substr(CAST(tagged_at AS TEXT), 1, 10) BETWEEN :first_day AND :last_day
    GROUP BY substr(CAST(tagged_at AS TEXT), 1, 10), hashtag
), ranked AS (
    SELECT tagged_day, hashtag, images,
           ROW_NUMBER() OVER (PARTITION BY tagged_day ORDER BY images DESC, hashtag) AS place
    FROM daily
)
SELECT tagged_day, place, hashtag, images
FROM ranked
WHERE place <= :top
ORDER BY tagged_day, place;
