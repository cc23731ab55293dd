-- Facets stage bookkeeping and content embeddings (issue 5).

-- facet_runs: the clustering chosen per field by the last `bookrec facets` (replaced each run).
CREATE TABLE facet_runs (
    field       VARCHAR PRIMARY KEY,    -- genre | category | theme | tone | audience
    n_books     INTEGER NOT NULL,       -- books with at least one label in the field
    n_raw       INTEGER NOT NULL,       -- distinct raw labels (after trimming)
    n_keys      INTEGER NOT NULL,       -- distinct case/space-folded labels actually embedded
    k           INTEGER NOT NULL,       -- clusters = facets
    k_source    VARCHAR NOT NULL,       -- silhouette | distinct (no structure: labels kept) | fixed | capped (fewer labels than k) | single | empty
    silhouette  DOUBLE,                 -- cosine silhouette of the chosen fit (NULL when undefined)
    k_scores    JSON,                   -- {k: silhouette} for every k tried
    model       VARCHAR NOT NULL,
    seed        INTEGER NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT now()
);

-- book_content_embeddings: one unit-length MiniLM vector per book from title, author, facets, summary.
CREATE TABLE book_content_embeddings (
    isbn      VARCHAR PRIMARY KEY,
    text_hash VARCHAR NOT NULL,         -- hash of the embedded text + model: unchanged books are reused
    model     VARCHAR NOT NULL,
    embedding FLOAT[384] NOT NULL
);

-- user_content_profiles: unit-length mean of the content embeddings of each reader's books.
CREATE TABLE user_content_profiles (
    user_id   INTEGER PRIMARY KEY,
    n_books   INTEGER NOT NULL,
    embedding FLOAT[384] NOT NULL
);
