-- LLM / zero-shot enrichment of books (issue: enrichment).
CREATE TABLE book_enrichment (
    isbn           VARCHAR PRIMARY KEY,
    summary        VARCHAR,
    genre          VARCHAR[],
    category       VARCHAR[],
    theme          VARCHAR[],
    tone           VARCHAR[],
    audience       VARCHAR[],
    source         VARCHAR NOT NULL,   -- provider:model
    prompt_version VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL DEFAULT now()
);
