-- 015: the text shown for every name gives the name back (issue 21). Portable: PostgreSQL and SQLite.
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
