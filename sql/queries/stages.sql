-- Stage bookkeeping used by engine.pipeline.

-- name: stage_last_run
SELECT stage, fingerprint, settings::VARCHAR AS settings, inputs::VARCHAR AS inputs, summary::VARCHAR AS summary
FROM stage_runs
WHERE stage = $stage
ORDER BY finished_at DESC
LIMIT 1;

-- name: stage_record
INSERT INTO stage_runs (stage, fingerprint, settings, inputs, summary, finished_at)
VALUES ($stage, $fingerprint, $settings, $inputs, $summary, now());

-- name: stage_history
SELECT stage, fingerprint, summary::VARCHAR AS summary, finished_at
FROM stage_runs
ORDER BY finished_at DESC
LIMIT $limit;
