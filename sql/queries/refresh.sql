-- `bookrec refresh` (engine/models/refresh.py): a run derived from a model's current run, with
-- what can change without retraining recomputed. The derived run starts as a copy of its
-- source's payload; the readers whose books changed are then replaced.

-- The derived run starts as a copy of its source's payload; run inside write_run's transaction,
-- before the payload of non-current runs is pruned.

-- name: refresh_copy_item_embeddings
INSERT INTO item_embeddings SELECT $new_run, isbn, embedding FROM item_embeddings WHERE run_id = $old_run;

-- name: refresh_copy_item_neighbours
INSERT INTO item_neighbours SELECT $new_run, isbn, rank, neighbour, score FROM item_neighbours WHERE run_id = $old_run;

-- name: refresh_copy_user_embeddings
INSERT INTO user_embeddings SELECT $new_run, user_id, embedding FROM user_embeddings WHERE run_id = $old_run;

-- name: refresh_copy_recommendations
INSERT INTO recommendations SELECT $new_run, user_id, rank, isbn, score FROM recommendations WHERE run_id = $old_run;

-- name: refresh_copy_item_weights
INSERT INTO item_weights SELECT $new_run, isbn, neighbour, weight FROM item_weights WHERE run_id = $old_run;

-- name: refresh_drop_user_embeddings
-- The derived run's rows of the readers about to be written again.
DELETE FROM user_embeddings WHERE run_id = $run_id AND user_id IN (SELECT unnest($users::INTEGER[]));

-- name: refresh_drop_recommendations
DELETE FROM recommendations WHERE run_id = $run_id AND user_id IN (SELECT unnest($users::INTEGER[]));

-- name: refresh_has_item_weights
SELECT EXISTS (SELECT 1 FROM item_weights WHERE run_id = $run_id) AS has;

-- name: refresh_item_weights
SELECT isbn, neighbour, weight FROM item_weights WHERE run_id = $run_id;

-- name: refresh_run_items
-- The books a run can score: its item vectors or the rows and columns of its item weights.
SELECT isbn FROM item_embeddings WHERE run_id = $run_id
UNION SELECT isbn FROM item_weights WHERE run_id = $run_id
UNION SELECT neighbour AS isbn FROM item_weights WHERE run_id = $run_id;
