-- Books like a given book, by cosine similarity of the run's item embeddings (issue 3). Public API:
--   similar_books(isbn, k := 10)               current run of the default model with item embeddings
--   similar_books_model(model, isbn, k := 10)  current run of one model
--   similar_books_run(run_id, isbn, k := 10)   one run by id
-- Columns: rank, isbn, title, author, score (cosine similarity), model, run_id. The book itself is
-- excluded. Empty when the book has no embedding in the run (unrated, or filtered out of the split)
-- or the run stores no item embeddings (GF-CF, popularity).

-- The default run for similarity: the current run with item embeddings that wins on validation
-- (best valid_recall@20; current split first), as default_model_run picks.
CREATE OR REPLACE VIEW default_similar_run AS
SELECT m.run_id, m.model
FROM model_runs m
WHERE m.is_current AND EXISTS (SELECT 1 FROM item_embeddings e WHERE e.run_id = m.run_id)
ORDER BY (m.split_id IS NOT DISTINCT FROM (SELECT s.split_id FROM splits s WHERE s.is_current)) DESC,
         TRY_CAST(m.metrics ->> 'valid_recall@20' AS DOUBLE) DESC NULLS LAST,
         m.finished_at DESC
LIMIT 1;

CREATE OR REPLACE MACRO similar_books_run(run_id, isbn, k := 10) AS TABLE
WITH p AS (SELECT run_id AS rid, upper(trim(isbn)) AS q),
-- (filters compare with the parameters directly so DuckDB can push them into the scans)
target AS (
    SELECT e.embedding FROM item_embeddings e
    WHERE e.isbn = upper(trim(isbn)) AND e.run_id = (SELECT p.rid FROM p)
),
sims AS (
    SELECT e.isbn AS hit, list_cosine_similarity(e.embedding, target.embedding)::DOUBLE AS score
    FROM item_embeddings e CROSS JOIN target
    WHERE e.run_id = (SELECT p.rid FROM p) AND e.isbn <> upper(trim(isbn))
    ORDER BY score DESC, hit
    LIMIT k
)
SELECT row_number() OVER (ORDER BY s.score DESC, s.hit) AS rank, s.hit AS isbn, b.title, b.author, s.score,
       m.model, m.run_id
FROM sims s
LEFT JOIN (SELECT bb.isbn, bb.title, bb.author FROM books bb WHERE bb.isbn IN (SELECT sims.hit FROM sims)) b
       ON b.isbn = s.hit
CROSS JOIN (SELECT mm.model, mm.run_id FROM model_runs mm JOIN p ON mm.run_id = p.rid) m
ORDER BY rank;

CREATE OR REPLACE MACRO similar_books_model(model, isbn, k := 10) AS TABLE
WITH q AS (SELECT model AS wanted)
SELECT * FROM similar_books_run(
    (SELECT m.run_id FROM model_runs m, q WHERE m.model = q.wanted AND m.is_current), isbn, k := k);

CREATE OR REPLACE MACRO similar_books(isbn, k := 10) AS TABLE
SELECT * FROM similar_books_run((SELECT d.run_id FROM default_similar_run d), isbn, k := k);
