-- Facets stage (issue 5): inputs of `bookrec facets` / `bookrec content`, and reads for the
-- report, the dashboard and engine.facets.coldstart.

-- name: facets_enrichment_digest
-- A cheap content fingerprint of the label columns (facets rerun when labels change).
SELECT count(*) AS n_books,
       coalesce(sum(hash(isbn, genre, category, theme, tone, audience)), 0)::VARCHAR AS digest
FROM book_enrichment;

-- name: facets_book_labels
-- One row per (book, field, raw label) as written by the enrichment stage (untrimmed).
SELECT isbn, 'genre' AS field, unnest(genre) AS raw_label FROM book_enrichment
UNION ALL SELECT isbn, 'category', unnest(category) FROM book_enrichment
UNION ALL SELECT isbn, 'theme', unnest(theme) FROM book_enrichment
UNION ALL SELECT isbn, 'tone', unnest(tone) FROM book_enrichment
UNION ALL SELECT isbn, 'audience', unnest(audience) FROM book_enrichment;

-- name: content_inputs
-- Text sources per book: catalogue fields, enrichment summary, normalised facets.
-- $all_books = false keeps only enriched books.
WITH ff AS (
    SELECT isbn, field, string_agg(label, ', ' ORDER BY label) AS labels
    FROM book_facets GROUP BY isbn, field
),
fb AS (SELECT isbn, string_agg(field || ': ' || labels, '; ' ORDER BY field) AS facets FROM ff GROUP BY isbn)
SELECT b.isbn, b.title, b.author, b.publisher, b.year, e.summary, fb.facets
FROM books b
LEFT JOIN book_enrichment e USING (isbn)
LEFT JOIN fb USING (isbn)
WHERE $all_books OR e.isbn IS NOT NULL
ORDER BY b.isbn;

-- name: content_digest
-- Fingerprint of everything content texts are made of.
SELECT (SELECT count(*) FROM books) AS n_books,
       (SELECT coalesce(sum(hash(isbn, title, author, publisher, year)), 0) FROM books)::VARCHAR AS books_digest,
       (SELECT coalesce(sum(hash(isbn, summary)), 0) FROM book_enrichment)::VARCHAR AS summary_digest,
       (SELECT coalesce(sum(hash(isbn, field, label)), 0) FROM book_facets)::VARCHAR AS facets_digest,
       (SELECT count(*) FROM ratings) AS n_ratings,
       (SELECT coalesce(sum(hash(user_id, isbn, rating)), 0) FROM ratings)::VARCHAR AS ratings_digest;

-- name: content_existing
SELECT isbn, text_hash, model, embedding FROM book_content_embeddings;

-- name: content_interactions
-- Interactions that make up a reader's content profile: implicit ones and explicit ratings >= $min_rating.
SELECT user_id, isbn FROM ratings WHERE rating = 0 OR rating >= $min_rating;

-- name: facet_runs_all
SELECT field, n_books, n_raw, n_keys, k, k_source, silhouette, k_scores::VARCHAR AS k_scores, model, seed, created_at
FROM facet_runs ORDER BY field;

-- name: facet_counts_all
SELECT field, label, n_books, share, n_raw_labels, rank_in_field FROM facet_counts ORDER BY field, rank_in_field;

-- name: facet_pair_counts
SELECT field_a, label_a, field_b, label_b, n_books, n_a, n_b, p_b_given_a, lift
FROM facet_pairs($field_a, $field_b)
ORDER BY label_a, label_b;

-- name: facet_alignment
-- Co-occurrence of one field's facets with every facet of the other fields.
SELECT field_a, label_a, field_b, label_b, n_books, lift
FROM facet_cooccurrence
WHERE field_a = $field AND field_b <> $field
ORDER BY field_b, label_b, label_a;

-- name: facet_triples
-- Books per (x label, y label, z label) over three fields, e.g. genre x audience -> tone.
SELECT x.label AS x_label, y.label AS y_label, z.label AS z_label, count(*) AS n_books
FROM book_facets x
JOIN book_facets y ON y.isbn = x.isbn AND y.field = $y_field
JOIN book_facets z ON z.isbn = x.isbn AND z.field = $z_field
WHERE x.field = $x_field
GROUP BY ALL
ORDER BY ALL;

-- name: facet_labels_of_field
SELECT raw_label, cluster_id, label FROM facet_labels WHERE field = $field ORDER BY cluster_id, raw_label;

-- name: facet_search_books
SELECT * FROM facet_search(filters := $filters, year_min := $year_min, year_max := $year_max,
                           min_ratings := $min_ratings, k := $k);

-- name: content_recommend_user
SELECT * FROM content_recommend($user_id, k := $k);

-- name: cold_start_book_readers
SELECT * FROM cold_start_book($isbn, k := $k);

-- name: similar_books_content
SELECT * FROM similar_books_by_content($isbn, k := $k);
