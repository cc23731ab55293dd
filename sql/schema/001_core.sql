-- Core Book-Crossing tables (DESIGN.md contracts) and stage bookkeeping.
CREATE TABLE books (
    isbn        VARCHAR PRIMARY KEY,   -- trimmed, unquoted, upper-case X
    title       VARCHAR,
    author      VARCHAR,
    year        SMALLINT,              -- NULL when missing or outside 1000..current year
    publisher   VARCHAR,
    image_url_s VARCHAR,
    image_url_m VARCHAR,
    image_url_l VARCHAR,
    isbn_kind   VARCHAR,               -- 'isbn10', 'isbn13' or 'other'
    isbn_valid  BOOLEAN                -- checksum holds (kept either way, flagged)
);

CREATE TABLE users (
    user_id INTEGER PRIMARY KEY,
    city    VARCHAR,
    state   VARCHAR,
    country VARCHAR,
    age     SMALLINT                   -- NULL when missing or outside 5..110
);

CREATE TABLE ratings (
    user_id INTEGER NOT NULL,
    isbn    VARCHAR NOT NULL,          -- may be absent from books (kept, counted)
    rating  TINYINT NOT NULL           -- 0 = implicit interaction, 1..10 explicit
    -- (user_id, isbn) is unique: engine.ingest resolves duplicates before loading. Deliberately
    -- no PRIMARY KEY: its index triples the load time of 1.15M rows and no query uses it.
);

CREATE TABLE rejected_rows (
    run_id  VARCHAR NOT NULL,
    source  VARCHAR NOT NULL,          -- 'books' | 'users' | 'ratings'
    line    BIGINT,                    -- 1-based physical line in the source file
    reason  VARCHAR NOT NULL,
    raw     VARCHAR
);

CREATE TABLE ingest_runs (
    run_id      VARCHAR PRIMARY KEY,
    started_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL,
    fingerprint VARCHAR NOT NULL,
    files       JSON NOT NULL,         -- per source: path, format, encoding, delimiter, bytes, sha256
    counts      JSON NOT NULL          -- per source: read, loaded, rejected by reason; plus derived counts
);

CREATE TABLE stage_runs (
    stage       VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    settings    JSON NOT NULL,
    inputs      JSON NOT NULL,
    summary     JSON NOT NULL,
    finished_at TIMESTAMP NOT NULL DEFAULT now()
);
