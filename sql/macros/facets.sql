-- Facet, content-similarity and cold-start table macros (issue 5). Usable from the DuckDB CLI.

-- facet_pairs(f1, f2): facet_cooccurrence for one ordered pair of fields, e.g. facet_pairs('genre', 'tone').
CREATE OR REPLACE MACRO facet_pairs(f1, f2) AS TABLE
SELECT * FROM facet_cooccurrence WHERE field_a = f1 AND field_b = f2;

-- facet_search: books matching facet filters, best Bayesian score first.
--   filters     list of {'field': ..., 'label': ...} (case-insensitive). Filters on the same field
--               are OR-ed, different fields AND-ed: [{'field':'genre','label':'Mystery'},
--               {'field':'genre','label':'Thriller'}, {'field':'tone','label':'Dark'}] = (Mystery OR
--               Thriller) AND Dark. An empty list matches every book.
--   year_min/year_max  inclusive publication-year bounds (NULL = open; books without a year
--               are dropped once a bound is set).
--   min_ratings minimum number of explicit (1-10) ratings.   k  rows returned.   m  Bayesian prior weight.
CREATE OR REPLACE MACRO facet_search(filters := [], year_min := NULL, year_max := NULL,
                                     min_ratings := 0, k := 50, m := 50) AS TABLE
WITH f AS (
    SELECT DISTINCT lower(x.field) AS field, lower(x.label) AS label
    FROM (SELECT unnest(filters) AS x)
    WHERE x IS NOT NULL
),
nf AS (SELECT count(DISTINCT field) AS n FROM f),
hits AS (
    SELECT bf.isbn, string_agg(DISTINCT bf.field || '=' || bf.label, ', ' ORDER BY bf.field || '=' || bf.label) AS matched
    FROM book_facets bf
    JOIN f ON lower(bf.field) = f.field AND lower(bf.label) = f.label
    GROUP BY bf.isbn
    HAVING count(DISTINCT f.field) = (SELECT n FROM nf)
)
SELECT
    row_number() OVER (ORDER BY p.score DESC, p.n_interactions DESC, p.isbn) AS rank,
    p.isbn, p.title, p.author, p.year, p.publisher, p.image_url_m,
    p.n_explicit, p.n_interactions, p.mean_rating, p.score, h.matched
FROM popular_books_m(m := m) p
LEFT JOIN hits h USING (isbn)
WHERE ((SELECT n FROM nf) = 0 OR h.isbn IS NOT NULL)
  AND (year_min IS NULL OR p.year >= year_min)
  AND (year_max IS NULL OR p.year <= year_max)
  AND p.n_explicit >= min_ratings
ORDER BY rank
LIMIT k;

-- cold_start_reader: a reader with no ratings picks facets; popular books within them.
CREATE OR REPLACE MACRO cold_start_reader(filters := [], k := 20) AS TABLE
SELECT * FROM facet_search(filters := filters, k := k);

-- similar_books_by_content(isbn, k): nearest books by content embedding (title, author, facets, summary).
CREATE OR REPLACE MACRO similar_books_by_content(q_isbn, k := 10) AS TABLE
WITH q AS (SELECT embedding FROM book_content_embeddings WHERE isbn = q_isbn),
sims AS (
    SELECT e.isbn, array_inner_product(e.embedding, q.embedding) AS similarity
    FROM book_content_embeddings e, q
    WHERE e.isbn <> q_isbn
)
SELECT
    row_number() OVER (ORDER BY s.similarity DESC, s.isbn) AS rank,
    s.isbn, b.title, b.author, b.year, s.similarity
FROM sims s
JOIN books b USING (isbn)
ORDER BY rank
LIMIT k;

-- content_recommend(user_id, k): unread books closest to the reader's content profile. Rating
-- counts play no part, so books nobody has rated yet (n_interactions = 0) can appear.
CREATE OR REPLACE MACRO content_recommend(q_user, k := 20) AS TABLE
WITH p AS (SELECT embedding FROM user_content_profiles WHERE user_id = q_user),
sims AS (
    SELECT e.isbn, array_inner_product(e.embedding, p.embedding) AS similarity
    FROM book_content_embeddings e, p
    WHERE e.isbn NOT IN (SELECT isbn FROM ratings WHERE user_id = q_user)
)
SELECT
    row_number() OVER (ORDER BY s.similarity DESC, s.isbn) AS rank,
    s.isbn, b.title, b.author, b.year,
    coalesce(st.n_interactions, 0) AS n_interactions,
    s.similarity
FROM sims s
JOIN books b USING (isbn)
LEFT JOIN book_stats st USING (isbn)
ORDER BY rank
LIMIT k;

-- cold_start_book(isbn, k): readers whose history is closest to a (new, unrated) book in content space.
CREATE OR REPLACE MACRO cold_start_book(q_isbn, k := 20) AS TABLE
WITH e AS (SELECT embedding FROM book_content_embeddings WHERE isbn = q_isbn)
SELECT
    row_number() OVER (ORDER BY array_inner_product(u.embedding, e.embedding) DESC, u.user_id) AS rank,
    u.user_id, u.n_books,
    array_inner_product(u.embedding, e.embedding) AS similarity
FROM user_content_profiles u, e
WHERE u.user_id NOT IN (SELECT user_id FROM ratings WHERE isbn = q_isbn)
ORDER BY rank
LIMIT k;
