-- Fold-in for new readers (issue 13, the JSON API): what an item-based model needs to score a
-- reader it has never seen from the books they picked. For every current run of a model whose
-- score is linear in the reader's row x (item-kNN, RP3beta, EASE, GF-CF, ChebyCF: score = x W),
-- the item-item weights W: row `isbn` (a book the reader has) -> column `neighbour` (a scored
-- book). Item-kNN and RP3beta store their own sparse W (exact; above foldin.MAX_WEIGHTS entries
-- each row's largest only, see the run's params); the dense models (EASE, GF-CF,
-- ChebyCF) keep the `top-k` largest weights per row (approximate; engine/foldin.py).
-- Written with the run by `bookrec train` (engine/models/stage.py), pruned with it.
CREATE TABLE item_weights (
    run_id    VARCHAR NOT NULL,
    isbn      VARCHAR NOT NULL,
    neighbour VARCHAR NOT NULL,
    weight    FLOAT NOT NULL
);
