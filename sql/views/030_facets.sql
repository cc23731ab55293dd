-- Facet views (issue 5): counts per field, co-occurrence with lift across any two fields,
-- popularity within facets. Inputs: book_facets, facet_labels (written by `bookrec facets`).

-- facet_counts: books per facet label; share = of the books that have any label in that field.
CREATE OR REPLACE VIEW facet_counts AS
WITH per_field AS (SELECT field, count(DISTINCT isbn) AS n_field FROM book_facets GROUP BY field),
raw AS (SELECT field, label, count(*) AS n_raw_labels FROM facet_labels GROUP BY field, label)
SELECT
    bf.field,
    bf.label,
    count(*)                                         AS n_books,
    count(*) / any_value(pf.n_field)::DOUBLE          AS share,
    coalesce(any_value(r.n_raw_labels), 0)           AS n_raw_labels,
    row_number() OVER (PARTITION BY bf.field ORDER BY count(*) DESC, bf.label) AS rank_in_field
FROM book_facets bf
JOIN per_field pf USING (field)
LEFT JOIN raw r USING (field, label)
GROUP BY bf.field, bf.label;

-- facet_cooccurrence: every pair of facets (any two fields, both orders, same field allowed)
-- carried by the same book. lift = P(a,b) / (P(a) P(b)) over books with any facet:
-- > 1 means the two labels go together more often than chance.
CREATE OR REPLACE VIEW facet_cooccurrence AS
WITH n AS (SELECT count(DISTINCT isbn)::DOUBLE AS n FROM book_facets),
marg AS (SELECT field, label, count(*) AS n_books FROM book_facets GROUP BY field, label),
pairs AS (
    SELECT a.field AS field_a, a.label AS label_a, b.field AS field_b, b.label AS label_b, count(*) AS n_books
    FROM book_facets a
    JOIN book_facets b ON a.isbn = b.isbn AND (a.field <> b.field OR a.label <> b.label)
    GROUP BY ALL
)
SELECT
    p.field_a, p.label_a, p.field_b, p.label_b, p.n_books,
    ma.n_books AS n_a,
    mb.n_books AS n_b,
    p.n_books / ma.n_books::DOUBLE                     AS p_b_given_a,
    p.n_books * n.n / (ma.n_books::DOUBLE * mb.n_books) AS lift
FROM pairs p
JOIN marg ma ON ma.field = p.field_a AND ma.label = p.label_a
JOIN marg mb ON mb.field = p.field_b AND mb.label = p.label_b
CROSS JOIN n;

-- facet_popularity: books ranked by Bayesian score (popular_books, m = 50) within each facet.
CREATE OR REPLACE VIEW facet_popularity AS
SELECT
    bf.field, bf.label,
    row_number() OVER (PARTITION BY bf.field, bf.label ORDER BY p.score DESC, p.n_interactions DESC, p.isbn)
        AS rank_in_facet,
    p.isbn, p.title, p.author, p.year, p.n_explicit, p.n_interactions, p.mean_rating, p.score
FROM book_facets bf
JOIN popular_books p USING (isbn);
