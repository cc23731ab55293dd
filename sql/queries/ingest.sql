-- Ingest bookkeeping (engine.ingest).

-- name: ingest_run_insert
INSERT INTO ingest_runs (run_id, started_at, finished_at, fingerprint, files, counts)
VALUES ($run_id, $started_at, $finished_at, $fingerprint, $files, $counts);

-- name: ingest_last_run
SELECT run_id, started_at, finished_at, fingerprint, files::VARCHAR AS files, counts::VARCHAR AS counts
FROM ingest_runs
ORDER BY finished_at DESC
LIMIT 1;

-- name: ingest_rejected_summary
SELECT source, reason, count(*) AS n, min(line) AS first_line
FROM rejected_rows
GROUP BY source, reason
ORDER BY source, n DESC;
