-- Enrichment through the OpenAI Batch API (issue 14: `bookrec enrich --batch-api`).
-- One row per uploaded JSONL input file / batch. The row is written as soon as the file is
-- uploaded (batch_id still NULL) and updated when the batch is created and at every poll, so a
-- killed run resumes polling instead of paying for the same books twice; a row whose batch_id is
-- NULL is matched again by listing the account's batches (input_file_id) before creating one.
CREATE TABLE enrich_batches (
    input_file_id  VARCHAR PRIMARY KEY,
    batch_id       VARCHAR,               -- NULL between upload and batch creation
    output_file_id VARCHAR,
    error_file_id  VARCHAR,
    status         VARCHAR NOT NULL,      -- uploaded | validating | in_progress | finalizing | completed | expired | failed | cancelling | cancelled
    processed      BOOLEAN NOT NULL DEFAULT false,  -- results stored (in the transaction that stored them)
    n_requests     INTEGER NOT NULL,
    n_books        INTEGER NOT NULL,
    source         VARCHAR NOT NULL,      -- openai:<model>
    prompt_version VARCHAR NOT NULL,
    run_id         VARCHAR NOT NULL,      -- the run that submitted it
    error          VARCHAR,               -- why a batch failed, when it did
    created_at     TIMESTAMP NOT NULL DEFAULT now(),
    finished_at    TIMESTAMP
);

-- Which books each request (JSONL line, `custom_id`) of a batch holds, in prompt order: local
-- ids "1".."n" of the request are these ISBNs, as in the live path.
CREATE TABLE enrich_batch_requests (
    input_file_id VARCHAR NOT NULL,
    custom_id     VARCHAR NOT NULL,
    isbns         VARCHAR[] NOT NULL,
    PRIMARY KEY (input_file_id, custom_id)
);

-- Batch lines are recorded as requests too; live requests have batch_id NULL.
ALTER TABLE enrichment_requests ADD COLUMN batch_id VARCHAR;
