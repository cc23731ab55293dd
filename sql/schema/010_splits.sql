-- Train/valid/test splits stored in DuckDB, so every model is judged on the same one (issue 3).
CREATE TABLE splits (
    split_id    VARCHAR PRIMARY KEY,               -- 'split-' || fingerprint
    method      VARCHAR NOT NULL,                  -- 'holdout' (per-user random 80/20) | 'loo'
    settings    JSON NOT NULL,                     -- SplitSettings (seed, fractions, positives, k-core)
    fingerprint VARCHAR NOT NULL,                  -- settings + ratings content
    summary     JSON NOT NULL,                     -- counts per part, train-only users, cold items, ...
    created_at  TIMESTAMP NOT NULL DEFAULT now(),
    is_current  BOOLEAN NOT NULL DEFAULT false     -- the split `train` and `evaluate` use
);

-- Every positive interaction of a split, with its part. Users with too few interactions to
-- split are all 'train' (counted as train_only_users in splits.summary).
CREATE TABLE split_interactions (
    split_id VARCHAR NOT NULL,
    user_id  INTEGER NOT NULL,
    isbn     VARCHAR NOT NULL,
    rating   TINYINT NOT NULL,
    part     VARCHAR NOT NULL                      -- 'train' | 'valid' | 'test'
);
