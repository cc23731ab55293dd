-- Dashboard queries (issue 6), called through engine.query on a read-only connection.
-- Parameters only; every query here is safe to run concurrently on separate cursors.

-- name: app_objects
-- Tables, views and table macros present: the app shows an empty state for missing stages.
SELECT table_name AS name, 'table' AS kind FROM duckdb_tables()
UNION ALL SELECT view_name, 'view' FROM duckdb_views() WHERE NOT internal
UNION ALL SELECT DISTINCT function_name, 'macro' FROM duckdb_functions() WHERE function_type = 'table_macro';

-- name: app_table_sizes
SELECT
    (SELECT count(*) FROM books)              AS books,
    (SELECT count(*) FROM ratings)            AS ratings,
    (SELECT count(*) FROM book_enrichment)    AS book_enrichment,
    (SELECT count(*) FROM book_facets)        AS book_facets,
    (SELECT count(*) FROM facet_labels)       AS facet_labels,
    (SELECT count(*) FROM model_runs)         AS model_runs,
    (SELECT count(*) FROM item_embeddings)    AS item_embeddings,
    (SELECT count(*) FROM ingest_runs)        AS ingest_runs;

-- name: app_content_size
SELECT count(*) AS n FROM book_content_embeddings;

-- ---------------------------------------------------------------- overview

-- name: app_dataset_stats
SELECT * FROM dataset_stats;

-- name: app_rating_distribution
SELECT rating, count(*) AS n FROM ratings GROUP BY rating ORDER BY rating;

-- name: app_book_activity
-- How many books have exactly n interactions (the long tail, compact: one row per distinct n).
SELECT n_interactions AS n, count(*) AS items FROM book_stats GROUP BY n_interactions ORDER BY n DESC;

-- name: app_user_activity
SELECT n_interactions AS n, count(*) AS items FROM user_stats GROUP BY n_interactions ORDER BY n DESC;

-- name: app_ages
SELECT age, count(*) AS n FROM users WHERE age IS NOT NULL GROUP BY age ORDER BY age;

-- name: app_countries
SELECT coalesce(nullif(trim(country), ''), '(unknown)') AS country, count(*) AS n
FROM users GROUP BY 1 ORDER BY n DESC, country LIMIT $limit;

-- name: app_ingest_runs
SELECT run_id, started_at, finished_at, fingerprint, counts::VARCHAR AS counts
FROM ingest_runs ORDER BY finished_at DESC LIMIT $limit;

-- name: app_rejected_by_reason
-- Rejected rows of the last ingest run, by source file and reason.
SELECT source, reason, count(*) AS n, min(line) AS first_line, any_value(raw) AS example
FROM rejected_rows
WHERE run_id = (SELECT run_id FROM ingest_runs ORDER BY finished_at DESC LIMIT 1)
GROUP BY source, reason ORDER BY n DESC, source, reason;

-- ---------------------------------------------------------------- browse

-- name: app_facet_options
SELECT field, label, count(*) AS n FROM book_facets GROUP BY field, label ORDER BY field, n DESC, label;

-- name: app_year_bounds
SELECT min(year) AS year_min, max(year) AS year_max FROM books;

-- name: app_book_facets
-- Facet labels of a set of books, one row per (isbn, field).
SELECT isbn, field, list(label ORDER BY label) AS labels
FROM book_facets WHERE isbn IN (SELECT unnest($isbns::VARCHAR[]))
GROUP BY isbn, field ORDER BY isbn, field;

-- name: app_book_facet_confidence
-- Confidence of a set of books' facet labels (issue 12): per facet the highest confidence of the
-- book's raw labels it groups; facets from labels without a confidence row (LLM) are left out.
SELECT c.isbn, c.field, m.label, max(c.confidence) AS confidence
FROM book_label_confidence c
JOIN facet_labels m ON m.field = c.field AND m.raw_label = c.label
JOIN book_facets f ON f.isbn = c.isbn AND f.field = c.field AND f.label = m.label
WHERE c.isbn IN (SELECT unnest($isbns::VARCHAR[]))
GROUP BY c.isbn, c.field, m.label ORDER BY c.isbn, c.field, m.label;

-- ---------------------------------------------------------------- reader

-- name: app_user_search
-- Type-ahead over reader ids: ids starting with $prefix, shortest (exact) first.
WITH hits AS (
    SELECT user_id, country, age FROM users
    WHERE starts_with(user_id::VARCHAR, $prefix)
    ORDER BY length(user_id::VARCHAR), user_id
    LIMIT $limit
)
SELECT h.user_id, h.country, h.age, count(r.isbn) AS n_ratings
FROM hits h LEFT JOIN ratings r ON r.user_id = h.user_id
GROUP BY h.user_id, h.country, h.age ORDER BY length(h.user_id::VARCHAR), h.user_id;

-- name: app_models
-- Current run of every model, the default first: as default_model_run, the best recall@20 on
-- the validation part (current split first), newest first on ties.
SELECT model, run_id, scoring, finished_at,
       EXISTS (SELECT 1 FROM item_embeddings e WHERE e.run_id = m.run_id) AS has_item_embeddings,
       TRY_CAST(metrics ->> 'valid_recall@20' AS DOUBLE) AS valid_recall,
       (split_id IS NOT DISTINCT FROM (SELECT s.split_id FROM splits s WHERE s.is_current)) AS on_current_split
FROM model_runs m WHERE is_current
ORDER BY on_current_split DESC, valid_recall DESC NULLS LAST, finished_at DESC, model;

-- ---------------------------------------------------------------- similar books

-- name: app_book_extra
SELECT b.image_url_l, e.summary FROM books b LEFT JOIN book_enrichment e USING (isbn) WHERE b.isbn = $isbn;

-- ---------------------------------------------------------------- metadata explorer
-- (facet_pair_counts, facet_counts_all, facet_triples, facet_labels_of_field in facets.sql)

-- ---------------------------------------------------------------- models

-- name: app_runs
SELECT run_id, model, params::VARCHAR AS params, metrics::VARCHAR AS metrics, data_fingerprint, split_id,
       scoring, dim, timings::VARCHAR AS timings, started_at, finished_at, is_current
FROM model_runs ORDER BY is_current DESC, finished_at DESC NULLS LAST, run_id;

-- name: app_run_curves
SELECT run_id, epoch, part, metric, k, value FROM run_metrics
WHERE run_id IN (SELECT unnest($run_ids::VARCHAR[])) AND epoch >= 0
ORDER BY run_id, epoch, part, metric, k;

-- ---------------------------------------------------------------- in-memory indexes (loaded once)
-- The database cannot change while the app holds it read-only, so engine.query loads these
-- once per process and answers the latency-bound callbacks (browse, reader, similar) from memory.

-- name: app_book_table
-- Every book with its activity and facet labels per field (empty lists before `bookrec facets`).
WITH f AS (
    SELECT isbn,
           list(label ORDER BY label) FILTER (WHERE field = 'genre')    AS genre,
           list(label ORDER BY label) FILTER (WHERE field = 'category') AS category,
           list(label ORDER BY label) FILTER (WHERE field = 'theme')    AS theme,
           list(label ORDER BY label) FILTER (WHERE field = 'tone')     AS tone,
           list(label ORDER BY label) FILTER (WHERE field = 'audience') AS audience
    FROM book_facets GROUP BY isbn
)
SELECT b.isbn, b.title, b.author, b.year, b.publisher, b.image_url_m,
       coalesce(s.n_explicit, 0)::BIGINT AS n_explicit, s.mean_rating,
       coalesce(s.n_implicit, 0)::BIGINT AS n_implicit, coalesce(s.n_interactions, 0)::BIGINT AS n_interactions,
       coalesce(f.genre, []::VARCHAR[]) AS genre, coalesce(f.category, []::VARCHAR[]) AS category,
       coalesce(f.theme, []::VARCHAR[]) AS theme, coalesce(f.tone, []::VARCHAR[]) AS tone,
       coalesce(f.audience, []::VARCHAR[]) AS audience
FROM books b LEFT JOIN book_stats s USING (isbn) LEFT JOIN f USING (isbn)
ORDER BY b.isbn;

-- name: app_explicit_mean
SELECT coalesce(avg(rating), 0)::DOUBLE AS c FROM ratings WHERE rating > 0;

-- name: app_ratings_by_user
SELECT user_id, isbn, rating FROM ratings ORDER BY user_id, rating DESC, isbn;

-- name: app_item_embeddings
SELECT isbn, embedding::FLOAT[] AS embedding FROM item_embeddings WHERE run_id = $run_id ORDER BY isbn;

-- name: app_user_embeddings
SELECT user_id, embedding::FLOAT[] AS embedding FROM user_embeddings WHERE run_id = $run_id ORDER BY user_id;

-- name: app_users
SELECT user_id, city, state, country, age FROM users ORDER BY user_id;

-- name: app_topn
-- Precomputed top-N of a 'topn' run (NCF, GF-CF; popularity has one list with user_id NULL).
SELECT isbn, score FROM recommendations
WHERE run_id = $run_id AND (user_id = $user_id OR user_id IS NULL)
ORDER BY score DESC, isbn;

-- name: app_topn_head
-- app_topn's first $limit rows (a reader's k plus as many as the books they rated: popularity's
-- one list is the whole catalogue, 1.9 M rows at xl, 0.5 s a request when fetched whole).
SELECT isbn, score FROM recommendations
WHERE run_id = $run_id AND (user_id = $user_id OR user_id IS NULL)
ORDER BY score DESC, isbn
LIMIT $limit;

-- name: app_content_embeddings
SELECT isbn, embedding::FLOAT[] AS embedding FROM book_content_embeddings ORDER BY isbn;

-- name: app_content_neighbours
-- The precomputed content neighbours (bookrec content), one row per (book, rank), as positions in
-- the ISBN-sorted list of books that have neighbours (row, hit), so nothing but numbers is loaded.
WITH ids AS (
    SELECT isbn, (row_number() OVER (ORDER BY isbn) - 1)::INTEGER AS i
    FROM (SELECT DISTINCT isbn FROM book_content_neighbours)
)
SELECT a.i AS row, b.i AS hit, n.score
FROM book_content_neighbours n JOIN ids a ON a.isbn = n.isbn JOIN ids b ON b.isbn = n.neighbour
ORDER BY a.i, n.rank;

-- name: app_content_neighbour_ids
SELECT DISTINCT isbn FROM book_content_neighbours ORDER BY isbn;

-- name: app_item_neighbours
-- A run's precomputed item neighbours (written with the run), as app_content_neighbours.
WITH n AS (SELECT * FROM item_neighbours WHERE run_id = $run_id),
ids AS (
    SELECT isbn, (row_number() OVER (ORDER BY isbn) - 1)::INTEGER AS i FROM (SELECT DISTINCT isbn FROM n)
)
SELECT a.i AS row, b.i AS hit, n.score
FROM n JOIN ids a ON a.isbn = n.isbn JOIN ids b ON b.isbn = n.neighbour
ORDER BY a.i, n.rank;

-- name: app_item_neighbour_ids
SELECT DISTINCT isbn FROM item_neighbours WHERE run_id = $run_id ORDER BY isbn;

-- name: app_tuning_runs
-- Every `bookrec tune` study, latest first (the models page's tuning section).
SELECT tune_id, model, split_id, metric, n_trials, best_trial, best_value,
       best_params::VARCHAR AS best_params, importance::VARCHAR AS importance, seconds, updated_at
FROM tuning_runs ORDER BY updated_at DESC, tune_id;

-- name: app_tuning_trials
SELECT number, state, value, params::VARCHAR AS params, best_epoch, seconds
FROM tuning_trials WHERE tune_id = $tune_id ORDER BY number;

-- ---------------------------------------------------------------- JSON API (issue 13)

-- name: api_item_weight_ids
-- The books of a run's item-item weights (rows and columns), in ISBN order.
SELECT isbn FROM (
    SELECT isbn FROM item_weights WHERE run_id = $run_id
    UNION SELECT neighbour FROM item_weights WHERE run_id = $run_id
) ORDER BY isbn;

-- name: api_item_weights
-- A run's item-item weights as positions into api_item_weight_ids (numbers only are loaded).
-- The id table is small (a run's books); the weights stream past it (no materialised copy).
WITH ids AS (
    SELECT isbn, (row_number() OVER (ORDER BY isbn) - 1)::INTEGER AS i
    FROM (
        SELECT isbn FROM item_weights WHERE run_id = $run_id
        UNION SELECT neighbour FROM item_weights WHERE run_id = $run_id
    )
)
SELECT a.i AS row, b.i AS col, w.weight
FROM item_weights w JOIN ids a ON a.isbn = w.isbn JOIN ids b ON b.isbn = w.neighbour
WHERE w.run_id = $run_id;

-- name: api_run_params
-- The settings a run was trained with (fold-in reads the model's regularisation from them).
SELECT params::VARCHAR AS params FROM model_runs WHERE run_id = $run_id;

-- name: api_health
-- Current runs with their age (the API's /health).
-- finished_at is UTC (naive); the age is computed by the caller.
-- (a GROUP BY over item_weights holds one row per run: a correlated EXISTS built a hash table of
-- every weight and ran out of the serving workers' 256 MB DuckDB limit on Book-Crossing)
SELECT m.model, m.run_id, m.scoring, m.finished_at, w.run_id IS NOT NULL AS has_item_weights
FROM model_runs m
LEFT JOIN (SELECT run_id FROM item_weights GROUP BY run_id) w ON w.run_id = m.run_id
WHERE m.is_current ORDER BY m.model;
