-- popular_books_m(m): Bayesian weighted rating (IMDb formula) over explicit ratings:
--   score = v/(v+m)·R + m/(v+m)·C
-- v = explicit ratings of the book, R = their mean, C = global explicit mean, m = prior weight.
-- Books with no explicit rating score C. Implicit (0) interactions are counted, not averaged.
CREATE OR REPLACE MACRO popular_books_m(m := 50) AS TABLE
WITH c AS (SELECT coalesce(avg(rating), 0) AS c FROM ratings WHERE rating > 0)
SELECT
    row_number() OVER (ORDER BY score DESC, n_interactions DESC, isbn) AS rank,
    *
FROM (
    SELECT
        b.isbn, b.title, b.author, b.year, b.publisher, b.image_url_s, b.image_url_m, b.image_url_l,
        coalesce(s.n_explicit, 0)     AS n_explicit,
        s.mean_rating,
        coalesce(s.n_implicit, 0)     AS n_implicit,
        coalesce(s.n_interactions, 0) AS n_interactions,
        CASE WHEN coalesce(s.n_explicit, 0) + m > 0  -- m = 0 and no rating: C, not 0/0 = NaN
            THEN coalesce(s.n_explicit, 0) / (coalesce(s.n_explicit, 0) + m) * coalesce(s.mean_rating, c.c)
                + m / (coalesce(s.n_explicit, 0) + m) * c.c
            ELSE c.c END AS score
    FROM books b
    LEFT JOIN book_stats s USING (isbn)
    CROSS JOIN c
);

-- popular_books: the same with the prototype's m = 50.
CREATE OR REPLACE VIEW popular_books AS SELECT * FROM popular_books_m(m := 50);
