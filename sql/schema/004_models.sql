-- Model runs, metrics and embeddings written back (issue 3: models, DuckDB side).
-- One row per training run; exactly one run per model has is_current = true (engine.models.runs
-- flips it inside the transaction that writes the run). Embeddings and precomputed
-- recommendations are kept for current runs only (older runs keep their params and metrics).
CREATE TABLE model_runs (
    run_id           VARCHAR PRIMARY KEY,
    model            VARCHAR NOT NULL,              -- popularity | mf | lightgcn | ncf | gfcf
    params           JSON NOT NULL,                 -- model settings + data/split settings + seed
    metrics          JSON,                          -- final metrics on the split's test part
    data_fingerprint VARCHAR NOT NULL,              -- fingerprint of the split (data + split settings)
    split_id         VARCHAR,                       -- splits.split_id the run was trained on
    scoring          VARCHAR NOT NULL DEFAULT 'embedding',
        -- 'embedding': score = user_embedding · item_embedding (MF, LightGCN)
        -- 'topn': score not a dot product (NCF, GF-CF, popularity); top-N per user in `recommendations`
    dim              INTEGER,                       -- embedding size (NULL without embeddings)
    timings          JSON,                          -- seconds: load, fit, evaluate, write, per_epoch
    state_path       VARCHAR,                       -- torch.save(model.state()) file, for re-evaluation
    started_at       TIMESTAMP NOT NULL,
    finished_at      TIMESTAMP,
    is_current       BOOLEAN NOT NULL DEFAULT false
);

-- Per-epoch history (training loss, validation metrics) and the final test metrics (epoch = -1).
CREATE TABLE run_metrics (
    run_id VARCHAR NOT NULL,
    epoch  INTEGER NOT NULL,                        -- -1 = final evaluation
    part   VARCHAR NOT NULL DEFAULT 'valid',        -- 'train' (loss) | 'valid' | 'test'
    metric VARCHAR NOT NULL,                        -- loss, recall, ndcg, precision, hit, coverage, sampled_hr, sampled_ndcg
    k      INTEGER,
    value  DOUBLE NOT NULL
);

-- Embeddings as FLOAT[] lists: the size varies per run (run dim in model_runs.dim), and
-- list_inner_product over FLOAT[] is as fast as array_inner_product over FLOAT[64]
-- (16 ms vs 16 ms for 270k x 64, docs/ARCHITECTURE.md), so one table serves every run.
CREATE TABLE user_embeddings (
    run_id    VARCHAR NOT NULL,
    user_id   INTEGER NOT NULL,
    embedding FLOAT[] NOT NULL
);

CREATE TABLE item_embeddings (
    run_id    VARCHAR NOT NULL,
    isbn      VARCHAR NOT NULL,
    embedding FLOAT[] NOT NULL
);

-- Precomputed top-N for runs whose score is not a dot product (scoring = 'topn').
-- user_id NULL = one ranking for every user (popularity).
CREATE TABLE recommendations (
    run_id  VARCHAR NOT NULL,
    user_id INTEGER,
    rank    INTEGER NOT NULL,
    isbn    VARCHAR NOT NULL,
    score   DOUBLE NOT NULL
);
