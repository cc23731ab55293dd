-- book_stats: interaction counts and explicit mean per ISBN that has any rating
-- (ISBNs missing from `books` included, flagged by in_books).
CREATE OR REPLACE VIEW book_stats AS
SELECT
    r.isbn,
    count(*)                                     AS n_interactions,
    count(*) FILTER (WHERE r.rating > 0)         AS n_explicit,
    count(*) FILTER (WHERE r.rating = 0)         AS n_implicit,
    avg(r.rating) FILTER (WHERE r.rating > 0)    AS mean_rating,
    bool_or(b.isbn IS NOT NULL)                  AS in_books
FROM ratings r
LEFT JOIN books b USING (isbn)
GROUP BY r.isbn;
