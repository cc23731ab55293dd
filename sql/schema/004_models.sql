-- Model runs, metrics and embeddings written back (issue: models).
CREATE TABLE model_runs (
    run_id           VARCHAR PRIMARY KEY,
    model            VARCHAR NOT NULL,
    params           JSON NOT NULL,
    metrics          JSON,
    data_fingerprint VARCHAR NOT NULL,
    started_at       TIMESTAMP NOT NULL,
    finished_at      TIMESTAMP,
    is_current       BOOLEAN NOT NULL DEFAULT false   -- one current run per model
);

CREATE TABLE run_metrics (
    run_id VARCHAR NOT NULL,
    epoch  INTEGER NOT NULL,
    metric VARCHAR NOT NULL,
    k      INTEGER,
    value  DOUBLE NOT NULL
);

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
