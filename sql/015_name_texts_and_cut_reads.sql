-- 015: the text shown for every name gives the name back; objects whose read was cut off are read again
-- (issue 21). Portable: PostgreSQL and SQLite.
--
-- A name stored as it is (UTF-8, no NUL, short enough) was shown as it is, so a name holding what reads
-- as an escape (the ten characters caf\xe9.jpg) showed as the same text as the Latin-1 name that is
-- shown escaped as caf\xe9.jpg. Such names now carry escaped text in uri_text (their backslashes
-- doubled), like the names that needed escaping; these rows, written before, get it too. What reads as
-- an escape: a backslash before a backslash, or before x and two lowercase hex digits. Hashed keys
-- (uri-sha256:...) hold no backslash and already have their uri_text.

-- only: postgresql
UPDATE image_results SET uri_text = replace(image_uri, '\', '\\')
WHERE uri_text IS NULL AND image_uri ~ '\\(\\|x[0-9a-f]{2})';
-- only: postgresql
UPDATE image_failures SET uri_text = replace(image_uri, '\', '\\')
WHERE uri_text IS NULL AND image_uri ~ '\\(\\|x[0-9a-f]{2})';
-- only: sqlite
UPDATE image_results SET uri_text = replace(image_uri, '\', '\\')
WHERE uri_text IS NULL AND (image_uri GLOB '*\\*' OR image_uri GLOB '*\x[0-9a-f][0-9a-f]*');
-- only: sqlite
UPDATE image_failures SET uri_text = replace(image_uri, '\', '\\')
WHERE uri_text IS NULL AND (image_uri GLOB '*\\*' OR image_uri GLOB '*\x[0-9a-f][0-9a-f]*');

-- An S3 body cut off halfway was decoded as it came (botocore does not check Content-Length) and its
-- "truncated or corrupt" verdict stored under the object's ETag, so every later run skipped an intact
-- object as done. A cut read now fails for its run only; these verdicts go, so that the next run reads
-- each such object once more (one truly broken gets the same verdict again).
-- (substr, not LIKE: a percent sign would be read as a driver placeholder)
DELETE FROM image_failures
WHERE substr(content_hash, 1, 5) = 'etag:' AND substr(reason, 1, 20) = 'truncated or corrupt';
