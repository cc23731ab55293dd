-- Models: interactions, splits, runs, embeddings, recommendations (issue 3, DuckDB side).

-- name: model_ratings
SELECT user_id, isbn, rating FROM ratings ORDER BY user_id, isbn;

-- name: ratings_digest
SELECT count(*) AS n, coalesce(sum(hash(user_id, isbn, rating)), 0)::VARCHAR AS hash_sum FROM ratings;

-- name: split_by_id
SELECT split_id, method, settings::VARCHAR AS settings, fingerprint, summary::VARCHAR AS summary, created_at, is_current
FROM splits WHERE split_id = $split_id;

-- name: split_current
SELECT split_id, method, settings::VARCHAR AS settings, fingerprint, summary::VARCHAR AS summary, created_at, is_current
FROM splits WHERE is_current;

-- name: split_insert
INSERT INTO splits (split_id, method, settings, fingerprint, summary, created_at, is_current)
VALUES ($split_id, $method, $settings, $fingerprint, $summary, now(), false);

-- name: split_delete_rows
DELETE FROM split_interactions WHERE split_id = $split_id;

-- name: split_delete
DELETE FROM splits WHERE split_id = $split_id;

-- name: split_set_current
UPDATE splits SET is_current = (split_id = $split_id);

-- name: split_prune
-- Keep the current split and every split a current run was trained on; drop the rest.
DELETE FROM split_interactions
WHERE split_id NOT IN (SELECT split_id FROM splits WHERE is_current)
  AND split_id NOT IN (SELECT split_id FROM model_runs WHERE is_current AND split_id IS NOT NULL);
DELETE FROM splits
WHERE NOT is_current
  AND split_id NOT IN (SELECT split_id FROM model_runs WHERE is_current AND split_id IS NOT NULL);

-- name: split_rows
SELECT user_id, isbn, rating, part FROM split_interactions WHERE split_id = $split_id ORDER BY user_id, isbn;

-- name: run_unset_current
UPDATE model_runs SET is_current = false WHERE model = $model AND is_current;

-- name: run_insert
INSERT INTO model_runs (run_id, model, params, metrics, data_fingerprint, split_id, scoring, dim, timings,
                        state_path, started_at, finished_at, is_current)
VALUES ($run_id, $model, $params, $metrics, $data_fingerprint, $split_id, $scoring, $dim, $timings,
        $state_path, $started_at, $finished_at, true);

-- name: run_prune_payload
-- Embeddings and precomputed top-N are kept for current runs only (they dominate the file size).
DELETE FROM user_embeddings WHERE run_id NOT IN (SELECT run_id FROM model_runs WHERE is_current);
DELETE FROM item_embeddings WHERE run_id NOT IN (SELECT run_id FROM model_runs WHERE is_current);
DELETE FROM item_neighbours WHERE run_id NOT IN (SELECT run_id FROM model_runs WHERE is_current);
DELETE FROM recommendations WHERE run_id NOT IN (SELECT run_id FROM model_runs WHERE is_current);

-- name: run_set_metrics
UPDATE model_runs SET metrics = $metrics WHERE run_id = $run_id;

-- name: run_delete_final_metrics
DELETE FROM run_metrics WHERE run_id = $run_id AND epoch = -1;

-- name: current_runs
SELECT run_id, model, params::VARCHAR AS params, metrics::VARCHAR AS metrics, data_fingerprint, split_id,
       scoring, dim, timings::VARCHAR AS timings, state_path, started_at, finished_at
FROM model_runs WHERE is_current ORDER BY model;

-- name: run_by_id
SELECT run_id, model, params::VARCHAR AS params, metrics::VARCHAR AS metrics, data_fingerprint, split_id,
       scoring, dim, timings::VARCHAR AS timings, state_path, started_at, finished_at, is_current
FROM model_runs WHERE run_id = $run_id;

-- name: run_history
SELECT run_id, epoch, part, metric, k, value FROM run_metrics WHERE run_id = $run_id ORDER BY epoch, part, metric, k;

-- name: run_user_embeddings
SELECT user_id, embedding FROM user_embeddings WHERE run_id = $run_id ORDER BY user_id;

-- name: run_item_embeddings
SELECT isbn, embedding FROM item_embeddings WHERE run_id = $run_id ORDER BY isbn;

-- name: run_recommendations
SELECT user_id, rank, isbn, score FROM recommendations WHERE run_id = $run_id ORDER BY user_id, rank;

-- name: recommend_default
SELECT * FROM recommend($user_id, k := $k);

-- name: recommend_for_model
SELECT * FROM recommend_model($model, $user_id, k := $k);

-- name: similar_default
SELECT * FROM similar_books($isbn, k := $k);

-- name: similar_for_model
SELECT * FROM similar_books_model($model, $isbn, k := $k);

-- name: default_run
SELECT run_id, model, TRY_CAST(metrics ->> 'valid_recall@20' AS DOUBLE) AS valid_recall,
       (SELECT count(*) FROM model_runs r WHERE r.is_current AND r.metrics ->> 'valid_recall@20' IS NOT NULL
          AND r.split_id IS NOT DISTINCT FROM (SELECT s.split_id FROM splits s WHERE s.is_current)) AS rivals
FROM default_model_run;

-- name: user_rating_count
SELECT count(*) AS n FROM ratings WHERE user_id = $user_id;

-- name: book_title
SELECT isbn, title, author FROM books WHERE isbn = $isbn;

-- name: default_similar
SELECT run_id, model FROM default_similar_run;

-- name: side_user_ages
-- Reader ages for NCF's side features (NULL: unknown).
SELECT user_id, age FROM users WHERE age IS NOT NULL;

-- name: side_item_genres
-- One genre facet per book for NCF's side features: of a book's genre facets, the one with the
-- most books (the coarsest, best-populated), ties by label.
WITH sizes AS (
    SELECT label, row_number() OVER (ORDER BY count(*) DESC, label) AS pos
    FROM book_facets WHERE field = 'genre' GROUP BY label
)
SELECT f.isbn, arg_min(f.label, s.pos) AS label
FROM book_facets f JOIN sizes s USING (label)
WHERE f.field = 'genre'
GROUP BY f.isbn;

-- name: item_facet_pairs
-- (isbn, facet node) pairs for LightGCN's optional facet nodes: one node per (field, label).
SELECT isbn, field || ': ' || label AS node FROM book_facets WHERE list_contains($fields, field);

-- name: tune_latest
-- The latest study of a model on a split for a metric (and search space, when given).
SELECT tune_id, model, split_id, metric, space::VARCHAR AS space, space_hash, sampler, seed, started_at,
       n_trials, best_trial, best_value, best_params::VARCHAR AS best_params, seconds
FROM tuning_runs
WHERE model = $model AND split_id = $split_id
  AND ($metric IS NULL OR metric = $metric) AND ($space_hash IS NULL OR space_hash = $space_hash)
ORDER BY updated_at DESC LIMIT 1;

-- name: tune_insert
INSERT INTO tuning_runs (tune_id, model, split_id, metric, space, space_hash, sampler, seed, started_at, updated_at)
VALUES ($tune_id, $model, $split_id, $metric, $space, $space_hash, $sampler, $seed, now(), now());

-- name: tune_trials
SELECT number, state, value, params::VARCHAR AS params, best_epoch, intermediate::VARCHAR AS intermediate, seconds
FROM tuning_trials WHERE tune_id = $tune_id ORDER BY number;

-- name: tune_update
UPDATE tuning_runs SET updated_at = now(), n_trials = $n_trials, best_trial = $best_trial,
       best_value = $best_value, best_params = $best_params, importance = $importance, seconds = $seconds
WHERE tune_id = $tune_id;

-- name: item_group_keys
-- Each book's author and publisher as grouping keys for the hybrid model (engine/models/hybrid.py):
-- lower case, accents stripped, only letters and digits kept, so "J.R.R. Tolkien" and
-- "J. R. R. Tolkien" are one author; empty keys are NULL.
SELECT isbn,
       nullif(regexp_replace(strip_accents(lower(coalesce(author, ''))), '[^\pL\pN]', '', 'g'), '') AS author,
       nullif(regexp_replace(strip_accents(lower(coalesce(publisher, ''))), '[^\pL\pN]', '', 'g'), '') AS publisher
FROM books;
