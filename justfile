# bookrec tasks. `just` alone lists them. Every recipe sets itself up first (fast when done).

set shell := ["bash", "-euo", "pipefail", "-c"]
set export

bin := justfile_directory() / ".venv/bin"
HF_HUB_OFFLINE := "1"
BOOKREC_DB := env_var_or_default("BOOKREC_DB", "data/bookrec.duckdb")

# List the recipes
default:
    @{{bin}}/just --list --unsorted 2>/dev/null || just --list --unsorted

# Create .venv and install bookrec with its test extras (CPU torch first); quick when done
setup:
    @.ci/setup

# The whole product on sample data: generate, ingest, enrich offline, facets, tune + train, evaluate, serve
demo size="small": setup (sample size) (ingest-sample size) enrich facets content train-all evaluate serve

# Generate deterministic sample data (small|medium|full|xl) into data/sample/<size>
sample size="small": setup
    {{bin}}/bookrec sample --size {{size}} --out data/sample/{{size}}

# 10x Book-Crossing (2.7M books, 11.5M ratings) in its own DB: sample, ingest, split, popularity / ALS / item-kNN judged on 20k sampled readers, evaluate (about an hour on 2 cores: ALS ~17 min with its neighbour lists, item-kNN ~20 min, 21.5 GB at its peak; then `bookrec serve --db data/xl/bookrec.duckdb`; bench/xl.py times each stage)
xl out="data/xl": setup
    {{bin}}/bookrec sample --size xl --out {{out}}/sample
    {{bin}}/bookrec ingest --books {{out}}/sample/Books.csv --ratings {{out}}/sample/Ratings.csv --users {{out}}/sample/Users.csv --db {{out}}/bookrec.duckdb
    {{bin}}/bookrec split --db {{out}}/bookrec.duckdb
    BOOKREC_EVALUATE_BATCH_SIZE=128 BOOKREC_EVALUATE_MAX_USERS=20000 {{bin}}/bookrec train --model popularity --db {{out}}/bookrec.duckdb
    BOOKREC_EVALUATE_BATCH_SIZE=128 BOOKREC_EVALUATE_MAX_USERS=20000 BOOKREC_ALS_DIM=64 {{bin}}/bookrec train --model als --db {{out}}/bookrec.duckdb
    BOOKREC_EVALUATE_BATCH_SIZE=128 BOOKREC_EVALUATE_MAX_USERS=20000 {{bin}}/bookrec train --model itemknn --db {{out}}/bookrec.duckdb
    BOOKREC_EVALUATE_BATCH_SIZE=128 BOOKREC_EVALUATE_MAX_USERS=20000 {{bin}}/bookrec evaluate --db {{out}}/bookrec.duckdb

# Ingest Book-Crossing CSVs (any known format) into the DuckDB file
ingest books ratings users: setup
    {{bin}}/bookrec ingest --books {{books}} --ratings {{ratings}} --users {{users}}

# Append a day's ratings to the ingested database (upsert; same file twice adds nothing), e.g. `just ingest-append new.csv --books b.csv`
ingest-append ratings *args: setup
    {{bin}}/bookrec ingest --append --ratings {{ratings}} {{args}}

# Ingest the generated sample data of one size
ingest-sample size="small": setup
    {{bin}}/bookrec ingest --books data/sample/{{size}}/Books.csv --ratings data/sample/{{size}}/Ratings.csv --users data/sample/{{size}}/Users.csv

# Ingest the real Book-Crossing subset in ../shared/data/bookcrossing
ingest-real: setup
    {{bin}}/bookrec ingest --books ../shared/data/bookcrossing/Books.csv --ratings ../shared/data/bookcrossing/Ratings.csv --users ../shared/data/bookcrossing/Users.csv

# Enrich every book (OpenAI-compatible API if OPENAI_API_KEY/OPENAI_BASE_URL is set, else offline zero-shot)
enrich *args: setup
    {{bin}}/bookrec enrich {{args}}

# Normalise enrichment labels into facets (SentenceTransformer + KMeans per field)
facets *args: setup
    {{bin}}/bookrec facets {{args}}

# Embed each book's content (title, author, facets, summary) for content similarity and cold start
content *args: setup
    {{bin}}/bookrec content {{args}}

# Train one model (hybrid|itemknn|rp3beta|ease|als|bpr|gfcf|chebycf|mf|lightgcn|ncf|popularity), e.g. `just train hybrid --tuned`
train model="hybrid" *args: setup
    {{bin}}/bookrec train --model {{model}} {{args}}

# Tune a model's settings on the validation part (Optuna), e.g. `just tune itemknn --trials 30`
tune model *args: setup
    {{bin}}/bookrec tune --model {{model}} {{args}}

# Tune the fast models briefly, train every model on the split, refit the validation winner on all data
train-all trials="8": setup
    for m in hybrid itemknn rp3beta ease; do {{bin}}/bookrec tune --model $m --trials {{trials}} --timeout 60; done
    for m in hybrid itemknn rp3beta ease; do {{bin}}/bookrec train --model $m --tuned; done
    for m in popularity gfcf chebycf als mf lightgcn ncf; do {{bin}}/bookrec train --model $m; done
    {{bin}}/bookrec train --model best --final

# Serve new ratings without retraining: refit counting models, fold in changed and new readers (e.g. after `just ingest-append`)
refresh *args: setup
    {{bin}}/bookrec refresh {{args}}

# Full-ranking leaderboard of the current runs (sampled metric shown apart)
evaluate: setup
    {{bin}}/bookrec evaluate --all

# Recommendations for one reader, e.g. `just recommend 276847`
recommend user *args: setup
    {{bin}}/bookrec recommend --user {{user}} {{args}}

# Every table (and the current runs' embeddings) as Parquet for Spark/Trino/DuckDB, e.g. `just export data/export --overwrite`
export out="data/export" *args: setup
    {{bin}}/bookrec export --format parquet --out {{out}} {{args}}

# Static HTML analysis report (co-occurrence heatmaps, 3D surface, distributions)
report out="data/report": setup
    {{bin}}/bookrec report --out {{out}}

# Serve the Dash dashboard on http://127.0.0.1:8050
serve *args: setup
    {{bin}}/bookrec serve {{args}}

# Dataset numbers and the last run of every stage
status: setup
    {{bin}}/bookrec status

# Run the test suite (browser tests skip when chromium is absent)
test *args: setup
    {{bin}}/python -m pytest {{args}}

# Run the benchmarks in bench/ (slow; figures go to docs/BENCHMARKS.md by hand)
bench: setup
    {{bin}}/pip install -q -e ".[test,bench]"
    for b in bench/*.py; do echo "== $b"; {{bin}}/python "$b"; done

# Lint and format-check with ruff
lint: setup
    {{bin}}/ruff check engine app tests bench
    {{bin}}/ruff format --check engine app tests bench
