-- Precomputed nearest books (issue 6: the similar-books page at full catalogue size). Both lists
-- are ordered as the macros order them (score desc, ties to 1e-6 by ISBN); engine/neighbours.py.

-- book_content_neighbours: for every book in book_content_embeddings, its `neighbours` (setting,
-- default 20) nearest other books by content cosine, rank 1 first, as similar_books_by_content
-- answers. Written by `bookrec content` with the embeddings.
CREATE TABLE book_content_neighbours (
    isbn      VARCHAR NOT NULL,
    rank      SMALLINT NOT NULL,
    neighbour VARCHAR NOT NULL,
    score     FLOAT NOT NULL
);

-- item_neighbours: for every item of a current run with item embeddings, its 20 nearest items by
-- cosine of those embeddings, as similar_books_run answers. Written with the run; pruned with it.
CREATE TABLE item_neighbours (
    run_id    VARCHAR NOT NULL,
    isbn      VARCHAR NOT NULL,
    rank      SMALLINT NOT NULL,
    neighbour VARCHAR NOT NULL,
    score     FLOAT NOT NULL
);
