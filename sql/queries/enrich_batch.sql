-- Enrichment through the Batch API (engine.enrich.batch): batches, their requests, resuming.

-- name: batch_insert
INSERT INTO enrich_batches
    (input_file_id, batch_id, status, n_requests, n_books, source, prompt_version, run_id, created_at)
VALUES ($input_file_id, NULL, 'uploaded', $n_requests, $n_books, $source, $prompt_version, $run_id, now());

-- name: batch_insert_requests
INSERT INTO enrich_batch_requests (input_file_id, custom_id, isbns)
SELECT $input_file_id, custom_id, isbns FROM _batch_requests_incoming;

-- name: batch_set_id
UPDATE enrich_batches SET batch_id = $batch_id, status = $status WHERE input_file_id = $input_file_id;

-- name: batch_update
UPDATE enrich_batches
SET status = $status, output_file_id = $output_file_id, error_file_id = $error_file_id,
    error = coalesce($error, error),
    finished_at = CASE WHEN $terminal THEN coalesce(finished_at, now()) END
WHERE input_file_id = $input_file_id;

-- name: batch_mark_processed
UPDATE enrich_batches SET processed = true WHERE input_file_id = $input_file_id;

-- name: batch_open
-- Batches of this source and prompt version whose results are not stored yet (oldest first).
SELECT input_file_id, batch_id, status, n_requests, n_books, run_id
FROM enrich_batches
WHERE NOT processed AND source = $source AND prompt_version = $prompt_version
ORDER BY created_at, input_file_id;

-- name: batch_requests
SELECT custom_id, isbns FROM enrich_batch_requests WHERE input_file_id = $input_file_id ORDER BY custom_id;

-- name: batch_open_isbns
-- Books held by unprocessed batches of this source and prompt version: not submitted again.
SELECT DISTINCT unnest(r.isbns) AS isbn
FROM enrich_batch_requests r JOIN enrich_batches b USING (input_file_id)
WHERE NOT b.processed AND b.source = $source AND b.prompt_version = $prompt_version;

-- name: batch_books
-- Catalogue fields of the given books (for resubmission and live retries).
SELECT isbn, title, author, year, publisher
FROM books
WHERE isbn IN (SELECT unnest($isbns::VARCHAR[]))
ORDER BY isbn;

-- name: batch_list
SELECT input_file_id, batch_id, status, processed, n_requests, n_books, output_file_id,
       error_file_id, error, run_id, created_at, finished_at
FROM enrich_batches
ORDER BY created_at, input_file_id;
