-- Enrichment (engine.enrich): which books to do, writing results, usage.

-- name: enrich_pending_books
-- Books without a current enrichment: none at all, or (unless only_missing) another source/prompt.
SELECT b.isbn, b.title, b.author, b.year, b.publisher
FROM books b
LEFT JOIN book_enrichment e USING (isbn)
WHERE e.isbn IS NULL
   OR (NOT $only_missing AND (e.source <> $source OR e.prompt_version <> $prompt_version))
ORDER BY b.isbn
LIMIT $limit;

-- name: enrich_count_current
SELECT count(*) AS n, max(created_at)::VARCHAR AS last_at
FROM book_enrichment
WHERE source = $source AND prompt_version = $prompt_version;

-- name: enrich_delete_incoming
DELETE FROM book_enrichment WHERE isbn IN (SELECT isbn FROM _enrich_incoming);

-- name: enrich_insert_incoming
INSERT INTO book_enrichment
    (isbn, summary, genre, category, theme, tone, audience, source, prompt_version,
     empty_fields, empty_reason, created_at)
SELECT isbn, summary, genre, category, theme, tone, audience, $source, $prompt_version,
       empty_fields, empty_reason, now()
FROM _enrich_incoming;

-- name: enrich_clear_failures
DELETE FROM enrichment_failures WHERE isbn IN (SELECT isbn FROM _enrich_incoming);

-- name: enrich_record_failure
INSERT OR REPLACE INTO enrichment_failures (isbn, source, prompt_version, reason, attempts, run_id, failed_at)
VALUES ($isbn, $source, $prompt_version, $reason, $attempts, $run_id, now());

-- name: enrich_record_request
INSERT INTO enrichment_requests
    (run_id, request_no, source, n_books, status, http_status, error, mode,
     prompt_tokens, completion_tokens, tokens_estimated, cost_usd, latency_ms, batch_id, created_at)
VALUES ($run_id, $request_no, $source, $n_books, $status, $http_status, $error, $mode,
        $prompt_tokens, $completion_tokens, $tokens_estimated, $cost_usd, $latency_ms, $batch_id, now());

-- name: enrich_run_usage
SELECT count(*) AS requests,
       count(*) FILTER (WHERE status <> 'ok') AS failed_requests,
       coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
       coalesce(sum(completion_tokens), 0) AS completion_tokens,
       coalesce(sum(cost_usd), 0) AS cost_usd
FROM enrichment_requests
WHERE run_id = $run_id;

-- name: enrich_failures
SELECT isbn, source, prompt_version, reason, attempts, failed_at
FROM enrichment_failures
ORDER BY failed_at DESC, isbn
LIMIT $limit;

-- name: enrich_summary
-- Per source and prompt version: books enriched, with empty fields, and total spend.
SELECT e.source, e.prompt_version, count(*) AS books,
       count(*) FILTER (WHERE e.empty_fields IS NOT NULL) AS with_empty_fields,
       (SELECT coalesce(sum(cost_usd), 0) FROM enrichment_requests r WHERE r.source = e.source) AS cost_usd
FROM book_enrichment e
GROUP BY e.source, e.prompt_version
ORDER BY books DESC;

-- name: enrich_delete_confidence
-- Label confidences of re-enriched books go with their old labels (called before the insert below).
DELETE FROM book_label_confidence WHERE isbn IN (SELECT isbn FROM _enrich_incoming);

-- name: enrich_insert_confidence
INSERT INTO book_label_confidence (isbn, field, label, confidence)
SELECT isbn, field, label, confidence FROM _enrich_confidence;
