-- Data out (engine.export): every table as Parquet. `{table}` is a table name read from the
-- catalog by export_tables (checked and quoted by engine.export); everything else is a parameter.

-- name: export_tables
-- Base tables of the bookrec file (views and macros are bookrec's own API, not data).
SELECT table_name
FROM duckdb_tables()
WHERE database_name = current_database() AND schema_name = 'main' AND NOT temporary AND NOT internal
ORDER BY table_name;

-- name: export_columns
SELECT column_name AS name, data_type AS type
FROM duckdb_columns()
WHERE database_name = current_database() AND schema_name = 'main' AND table_name = $table
ORDER BY column_index;

-- name: export_schema_version
SELECT max(version) AS version FROM schema_migrations;

-- name: export_copy
COPY (SELECT * FROM {table}) TO $path (FORMAT parquet, COMPRESSION snappy, RETURN_FILES);

-- name: export_copy_current_runs
-- Per-run outputs of the current runs only, one Hive partition per run: {table}/run_id=<id>/.
COPY (SELECT * FROM {table} WHERE run_id IN (SELECT run_id FROM model_runs WHERE is_current))
TO $path (FORMAT parquet, COMPRESSION snappy, PARTITION_BY (run_id), FILENAME_PATTERN 'part_{i}', RETURN_FILES);

-- name: export_copy_by_split
COPY (SELECT * FROM {table}) TO $path
(FORMAT parquet, COMPRESSION snappy, PARTITION_BY (split_id), FILENAME_PATTERN 'part_{i}', RETURN_FILES);

-- name: export_copy_bucketed
-- Readers by bucket = user_id mod $buckets (non-negative), a column only the path holds:
-- Spark, Trino and DuckDB (hive_partitioning) read it back as a partition column.
COPY (SELECT *, ((user_id % $buckets) + $buckets) % $buckets AS bucket FROM {table}) TO $path
(FORMAT parquet, COMPRESSION snappy, PARTITION_BY (bucket), FILENAME_PATTERN 'part_{i}', RETURN_FILES);
