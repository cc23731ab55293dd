-- user_stats: activity per user who rated anything (users missing from `users` flagged).
CREATE OR REPLACE VIEW user_stats AS
SELECT
    r.user_id,
    count(*)                                     AS n_interactions,
    count(*) FILTER (WHERE r.rating > 0)         AS n_explicit,
    count(*) FILTER (WHERE r.rating = 0)         AS n_implicit,
    avg(r.rating) FILTER (WHERE r.rating > 0)    AS mean_rating,
    any_value(u.age)                             AS age,
    any_value(u.country)                         AS country,
    bool_or(u.user_id IS NOT NULL)               AS in_users
FROM ratings r
LEFT JOIN users u USING (user_id)
GROUP BY r.user_id;
