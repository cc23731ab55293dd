-- Recommendations from SQL alone (issue 3). Public API:
--   recommend(user_id, k := 10)               current run of the default model (default_model_run)
--   recommend_model(model, user_id, k := 10)  current run of one model ('lightgcn', 'mf', 'ncf', 'gfcf', 'popularity')
--   recommend_run(run_id, user_id, k := 10)   one run by id
-- Columns: rank, isbn, title, author, score, source, model, run_id.
-- Books the user already rated (any rating, implicit 0 included) are never recommended.
-- source = 'model': scored by the run. source = 'popularity_fallback': the user is unknown to the
-- run (no embedding / no precomputed list, e.g. a new reader), so the most popular books are
-- returned instead (popular_books' ranking among books with at least one rating), with
-- model = 'popular_books' and run_id NULL.
-- Scoring per run (model_runs.scoring): 'embedding' ranks all items by
-- list_inner_product(item_embedding, user_embedding); 'topn' reads the precomputed top-N in
-- `recommendations` (NCF, GF-CF: not a dot product; popularity: one list, user_id NULL), so k is
-- at most N (100 by default) minus the user's already-rated books among them.

-- The default model: the current run that wins on validation (best valid_recall@20, recall@20 on
-- the split's validation part with the training books masked) on the current split (then any
-- split), newest first on ties. Test never picks it: runs without a validation part rank last.
CREATE OR REPLACE VIEW default_model_run AS
SELECT m.run_id, m.model, m.scoring, m.split_id, m.metrics
FROM model_runs m
WHERE m.is_current
ORDER BY (m.split_id IS NOT DISTINCT FROM (SELECT s.split_id FROM splits s WHERE s.is_current)) DESC,
         TRY_CAST(m.metrics ->> 'valid_recall@20' AS DOUBLE) DESC NULLS LAST,
         m.finished_at DESC
LIMIT 1;

CREATE OR REPLACE MACRO recommend_run(run_id, user_id, k := 10) AS TABLE
-- Filters compare columns with the parameters directly (not through a join with a CTE) so that
-- DuckDB pushes them into the scans and skips row groups by min/max: a top-N lookup in 10M
-- `recommendations` rows drops from ~350 ms to a few ms.
WITH p AS (SELECT run_id AS rid, user_id::INTEGER AS uid),
run AS (SELECT m.run_id, m.model, m.scoring FROM model_runs m JOIN p ON m.run_id = p.rid),
rated AS (SELECT r.isbn FROM ratings r WHERE r.user_id = user_id::INTEGER),
ue AS (
    SELECT e.embedding FROM user_embeddings e
    WHERE e.user_id = user_id::INTEGER AND e.run_id = (SELECT p.rid FROM p)
      AND (SELECT scoring FROM run) = 'embedding'
),
by_embedding AS (
    SELECT i.isbn, list_inner_product(i.embedding, ue.embedding)::DOUBLE AS score
    FROM item_embeddings i CROSS JOIN ue
    WHERE i.run_id = (SELECT p.rid FROM p)
      AND i.isbn NOT IN (SELECT rated.isbn FROM rated)
),
by_topn AS (
    SELECT t.isbn, t.score
    FROM recommendations t
    WHERE t.user_id = user_id::INTEGER AND t.run_id = (SELECT p.rid FROM p)
      AND (SELECT scoring FROM run) = 'topn'
      AND t.isbn NOT IN (SELECT rated.isbn FROM rated)
    UNION ALL
    SELECT t.isbn, t.score           -- one list for every user (popularity)
    FROM recommendations t
    WHERE t.user_id IS NULL AND t.run_id = (SELECT p.rid FROM p)
      AND (SELECT scoring FROM run) = 'topn'
      AND t.isbn NOT IN (SELECT rated.isbn FROM rated)
),
modeled AS (
    -- ORDER BY + LIMIT is a top-k; a row_number() here would sort every item (3x slower)
    SELECT x.isbn, x.score
    FROM (SELECT * FROM by_embedding UNION ALL SELECT * FROM by_topn) x
    ORDER BY x.score DESC, x.isbn
    LIMIT k
),
fallback AS (
    -- popular_books' ranking (Bayesian weighted rating, m = 50) over books with a rating, computed
    -- here from book_stats with a top-k instead of the view's full row_number (4x faster)
    SELECT s.isbn, s.n_interactions,
           s.n_explicit / (s.n_explicit + 50) * coalesce(s.mean_rating, c.c) + 50 / (s.n_explicit + 50) * c.c AS score
    FROM book_stats s
    CROSS JOIN (SELECT coalesce(avg(r.rating), 0) AS c FROM ratings r WHERE r.rating > 0) c
    WHERE s.in_books
      AND NOT EXISTS (SELECT 1 FROM modeled)
      AND s.isbn NOT IN (SELECT rated.isbn FROM rated)
    ORDER BY score DESC, s.n_interactions DESC, s.isbn
    LIMIT k
),
picked AS (
    SELECT modeled.isbn, modeled.score,
           row_number() OVER (ORDER BY modeled.score DESC, modeled.isbn) AS ord, 'model' AS source,
           (SELECT run.model FROM run) AS model_name, (SELECT run.run_id FROM run) AS rid
    FROM modeled
    UNION ALL
    SELECT fallback.isbn, fallback.score,
           row_number() OVER (ORDER BY fallback.score DESC, fallback.n_interactions DESC, fallback.isbn) AS ord,
           'popularity_fallback' AS source, 'popular_books' AS model_name, NULL::VARCHAR AS rid
    FROM fallback
)
SELECT row_number() OVER (ORDER BY x.ord) AS rank, x.isbn, b.title, b.author, x.score,
       x.source, x.model_name AS model, x.rid AS run_id
FROM picked x
-- pre-filtering books keeps the join's hash table on the k picked rows, not on all books
LEFT JOIN (SELECT bb.isbn, bb.title, bb.author FROM books bb WHERE bb.isbn IN (SELECT picked.isbn FROM picked)) b
       ON b.isbn = x.isbn
ORDER BY rank;

-- (the model name goes through a CTE: DuckDB rejects a parameter named like an output column
-- inside a table-function argument)
CREATE OR REPLACE MACRO recommend_model(model, user_id, k := 10) AS TABLE
WITH q AS (SELECT model AS wanted)
SELECT * FROM recommend_run(
    (SELECT m.run_id FROM model_runs m, q WHERE m.model = q.wanted AND m.is_current), user_id, k := k);

CREATE OR REPLACE MACRO recommend(user_id, k := 10) AS TABLE
SELECT * FROM recommend_run((SELECT d.run_id FROM default_model_run d), user_id, k := k);
