-- Ingest bookkeeping (engine.ingest).

-- name: ingest_run_insert
INSERT INTO ingest_runs (run_id, started_at, finished_at, fingerprint, files, counts)
VALUES ($run_id, $started_at, $finished_at, $fingerprint, $files, $counts);

-- name: ingest_last_run
SELECT run_id, started_at, finished_at, fingerprint, files::VARCHAR AS files, counts::VARCHAR AS counts
FROM ingest_runs
ORDER BY finished_at DESC
LIMIT 1;

-- name: ingest_rejected_summary
SELECT source, reason, count(*) AS n, min(line) AS first_line
FROM rejected_rows
GROUP BY source, reason
ORDER BY source, n DESC;

-- ---------------------------------------------------------------- append (bookrec ingest --append)
-- engine.ingest.append registers the cleaned rows of the appended files as _append_books,
-- _append_users and _append_ratings (one row per key: ingest's duplicate rule already applied).

-- name: ingest_applied_files
-- Files of the last full ingest and of the appends after it: what the database holds now.
SELECT run_id, files::VARCHAR AS files
FROM ingest_runs
WHERE finished_at >= (SELECT max(finished_at) FROM ingest_runs
                      WHERE coalesce(counts ->> 'mode', 'full') = 'full')
ORDER BY finished_at;

-- name: ingest_append_books_known
SELECT count(*) AS known FROM _append_books a WHERE EXISTS (SELECT 1 FROM books b WHERE b.isbn = a.isbn);

-- name: ingest_append_books_insert
-- New ISBNs only: a known book keeps its row (enrichment and facets refer to it).
INSERT INTO books (isbn, title, author, year, publisher, image_url_s, image_url_m, image_url_l,
                   isbn_kind, isbn_valid)
SELECT isbn, title, author, year, publisher, image_url_s, image_url_m, image_url_l, isbn_kind, isbn_valid
FROM _append_books a
WHERE NOT EXISTS (SELECT 1 FROM books b WHERE b.isbn = a.isbn);

-- name: ingest_append_users_known
SELECT count(*) AS known FROM _append_users a WHERE EXISTS (SELECT 1 FROM users u WHERE u.user_id = a.user_id);

-- name: ingest_append_users_insert
-- New user ids only: a known user keeps their row.
INSERT INTO users (user_id, city, state, country, age)
SELECT user_id, city, state, country, age
FROM _append_users a
WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = a.user_id);

-- name: ingest_append_ratings_counts
-- (user_id, isbn) is unique in ratings, so the left join keeps one row per appended rating.
-- Ingest's duplicate rule across files: the new rating wins, except that an implicit 0 does not
-- replace an explicit rating (so appending B to A gives what ingesting A then B as one file does).
SELECT count(*) FILTER (WHERE r.rating IS NULL)                     AS added,
       count(*) FILTER (WHERE r.rating <> a.rating AND a.rating <> 0) AS updated,
       count(*) FILTER (WHERE r.rating = a.rating)                  AS unchanged,
       count(*) FILTER (WHERE r.rating <> 0 AND a.rating = 0)       AS explicit_kept
FROM _append_ratings a
LEFT JOIN ratings r ON r.user_id = a.user_id AND r.isbn = a.isbn;

-- name: ingest_append_ratings_update
-- Only pairs whose rating changes are written: identical rows stay untouched.
UPDATE ratings SET rating = a.rating
FROM _append_ratings a
WHERE ratings.user_id = a.user_id AND ratings.isbn = a.isbn
  AND ratings.rating <> a.rating AND a.rating <> 0;

-- name: ingest_append_ratings_insert
INSERT INTO ratings (user_id, isbn, rating)
SELECT a.user_id, a.isbn, a.rating
FROM _append_ratings a
WHERE NOT EXISTS (SELECT 1 FROM ratings r WHERE r.user_id = a.user_id AND r.isbn = a.isbn);

-- name: ingest_append_unknown
-- Appended ratings whose book or user is absent from the database after the append (kept).
SELECT (SELECT count(*) FROM _append_ratings a
        WHERE NOT EXISTS (SELECT 1 FROM books b WHERE b.isbn = a.isbn))       AS unknown_book,
       (SELECT count(*) FROM _append_ratings a
        WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.user_id = a.user_id)) AS unknown_user;
