-- dataset_stats: one row of headline numbers about the loaded data.
CREATE OR REPLACE VIEW dataset_stats AS
SELECT
    (SELECT count(*) FROM books)                                         AS n_books,
    (SELECT count(*) FROM users)                                         AS n_users,
    (SELECT count(*) FROM ratings)                                       AS n_ratings,
    (SELECT count(*) FROM ratings WHERE rating > 0)                      AS n_explicit,
    (SELECT count(*) FROM ratings WHERE rating = 0)                      AS n_implicit,
    (SELECT avg(rating) FROM ratings WHERE rating > 0)                   AS mean_explicit_rating,
    (SELECT count(DISTINCT user_id) FROM ratings)                        AS n_active_users,
    (SELECT count(DISTINCT isbn) FROM ratings)                           AS n_rated_isbns,
    (SELECT count(*) FROM ratings r ANTI JOIN books b USING (isbn))      AS n_ratings_unknown_book,
    (SELECT count(*) FROM ratings r ANTI JOIN users u USING (user_id))   AS n_ratings_unknown_user,
    (SELECT count(*) FROM books WHERE NOT isbn_valid)                    AS n_books_invalid_isbn,
    (SELECT count(*) FROM users WHERE age IS NULL)                       AS n_users_no_age,
    (SELECT count(*) FROM rejected_rows
       WHERE run_id = (SELECT run_id FROM ingest_runs ORDER BY finished_at DESC LIMIT 1)) AS n_rejected_last_ingest,
    CASE WHEN (SELECT count(DISTINCT user_id) FROM ratings) > 0
         THEN (SELECT count(*) FROM ratings)::DOUBLE
              / ((SELECT count(DISTINCT user_id) FROM ratings)::DOUBLE * (SELECT count(DISTINCT isbn) FROM ratings))
    END                                                                  AS density;
