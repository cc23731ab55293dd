-- Fold-in (issue 13): the item-item weights of item-based runs (table item_weights, 060).

-- name: foldin_prune_item_weights
-- Weights are kept for current runs only, like embeddings and top-N lists.
DELETE FROM item_weights WHERE run_id NOT IN (SELECT run_id FROM model_runs WHERE is_current);
