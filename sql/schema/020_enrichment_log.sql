-- Enrichment bookkeeping (issue 4): why fields are empty, which books failed, what each request cost.
ALTER TABLE book_enrichment ADD COLUMN empty_fields VARCHAR[];   -- fields stored empty (NULL: none)
ALTER TABLE book_enrichment ADD COLUMN empty_reason VARCHAR;      -- why they are empty

CREATE TABLE enrichment_failures (
    isbn           VARCHAR PRIMARY KEY,
    source         VARCHAR NOT NULL,   -- provider:model
    prompt_version VARCHAR NOT NULL,
    reason         VARCHAR NOT NULL,
    attempts       INTEGER NOT NULL,   -- requests that included the book
    run_id         VARCHAR NOT NULL,
    failed_at      TIMESTAMP NOT NULL DEFAULT now()
);

CREATE TABLE enrichment_requests (
    run_id            VARCHAR NOT NULL,
    request_no        INTEGER NOT NULL,
    source            VARCHAR NOT NULL,
    n_books           INTEGER NOT NULL,
    status            VARCHAR NOT NULL,   -- ok | unusable (reply not parseable) | failed (no reply)
    http_status       INTEGER,
    error             VARCHAR,
    mode              VARCHAR,            -- json_schema | json_object
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    tokens_estimated  BOOLEAN NOT NULL DEFAULT false,  -- the server sent no usage; counted ourselves
    cost_usd          DOUBLE NOT NULL DEFAULT 0,       -- estimate from the configured prices
    latency_ms        DOUBLE,
    created_at        TIMESTAMP NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, request_no)
);
