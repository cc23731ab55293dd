"""A small dashboard database with planted structure, written through engine.db (all migrations).

Three taste communities (Mystery, Romance, Science Fiction): readers 1-10, 11-20 and 21-30 read
only books of their genre, and the model embeddings say so (genre direction + small noise), so
every answer has a known shape: a Mystery reader is recommended unread Mystery books because of
a Mystery book they rated, a Mystery book's neighbours are Mystery books, and so on.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from engine import db, neighbours
from engine.models import runs as model_runs

CONTENT_NEIGHBOURS = 8  # precomputed content neighbours per fixture book
ITEM_NEIGHBOURS = 6  # precomputed collaborative neighbours per item of a run
GENRES = ["Mystery", "Romance", "Science Fiction"]
TONES = {"Mystery": "Dark", "Romance": "Romantic", "Science Fiction": "Suspenseful"}
AUDIENCE = ["Adult", "Young Adult"]
PER_GENRE = 12
DEAD_COVER = "http://127.0.0.1:9/cover.jpg"  # port 9 refuses at once: the placeholder must show
ODD_TITLE = 'Café <b>&amp;</b> "Quotes" \'; DROP TABLE books; --'
UNKNOWN_USER_IN_RATINGS = 500  # rates books but has no row in `users`
USER_WITHOUT_RATINGS = 99


def isbn_of(genre_index: int, i: int) -> str:
    """The ISBN of the i-th book of a genre: '0G0000III' + 'X'."""
    return f"0{genre_index}{i:07d}X"


def genre_of_user(user_id: int) -> str:
    """Readers 1-10 read Mystery, 11-20 Romance, 21-30 Science Fiction."""
    return GENRES[(user_id - 1) // 10]


def build_app_db(
    path: Path, *, seed: int = 7, with_models: bool = True, with_facets: bool = True
) -> Path:
    """Write the fixture database at `path` and return it (closed, ready to open read-only)."""
    rng = np.random.default_rng(seed)
    path = Path(path)
    path.unlink(missing_ok=True)
    books, ratings = _catalogue(rng)
    con = db.connect(path)
    with db.transaction(con):
        db.replace_table(con, "books", books)
        db.replace_table(con, "users", _users())
        db.replace_table(con, "ratings", ratings)
        _ingest(con)
        if with_facets:
            _facets(con, books)
        if with_models:
            _models(con, rng, books, ratings)
    con.close()
    return path


def _catalogue(rng: np.random.Generator) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows, rates = [], []
    for g, genre in enumerate(GENRES):
        for i in range(PER_GENRE):
            isbn = isbn_of(g, i)
            title = ODD_TITLE if (g, i) == (0, 11) else f"{genre} Book {i:02d}"
            cover = [DEAD_COVER, "", None][i % 3]
            rows.append(
                {
                    "isbn": isbn,
                    "title": title,
                    "author": f"{genre.split()[0]} Writer {i % 4}",
                    "year": 1980 + 2 * i + g,
                    "publisher": f"{genre} Press",
                    "image_url_s": cover,
                    "image_url_m": cover,
                    "image_url_l": cover,
                    "isbn_kind": "isbn10",
                    "isbn_valid": True,
                }
            )
    for user in range(1, 31):
        g = GENRES.index(genre_of_user(user))
        # each reader reads the genre's popular head (books 0-4) plus two others; book 11 stays rare
        picks = list(range(5)) + [5 + (user % 3), 8 + (user % 3)]
        for i in picks:
            rating = 0 if (user + i) % 3 == 0 else int(10 - i // 2 - (user % 2))
            rates.append({"user_id": user, "isbn": isbn_of(g, i), "rating": rating})
    rates += [
        {"user_id": UNKNOWN_USER_IN_RATINGS, "isbn": isbn_of(0, 0), "rating": 9},
        {"user_id": 1, "isbn": "0000000NOPE", "rating": 5},
    ]  # an ISBN missing from `books`
    books = pl.DataFrame(rows, schema_overrides={"year": pl.Int16})
    ratings = pl.DataFrame(
        rates, schema={"user_id": pl.Int32, "isbn": pl.String, "rating": pl.Int8}
    )
    return books, ratings


def _users() -> pl.DataFrame:
    ids = [*range(1, 31), USER_WITHOUT_RATINGS]
    return pl.DataFrame(
        {
            "user_id": ids,
            "city": ["springfield"] * len(ids),
            "state": [None] * len(ids),
            "country": [["usa", "canada", "germany"][u % 3] for u in ids],
            "age": [None if u % 4 == 0 else 18 + u % 50 for u in ids],
        },
        schema={
            "user_id": pl.Int32,
            "city": pl.String,
            "state": pl.String,
            "country": pl.String,
            "age": pl.Int16,
        },
    )


def _ingest(con) -> None:  # noqa: ANN001 - a DuckDB connection
    t = datetime(2026, 1, 1, 12, 0)
    db.replace_table(
        con,
        "ingest_runs",
        pl.DataFrame(
            [
                {
                    "run_id": "ingest-fixture",
                    "started_at": t,
                    "finished_at": t + timedelta(seconds=3),
                    "fingerprint": "fixture",
                    "files": json.dumps({"books": {"path": "Books.csv"}}),
                    "counts": json.dumps(
                        {
                            "books": {"loaded": 36},
                            "ratings": {"loaded": 212},
                            "users": {"loaded": 31},
                        }
                    ),
                }
            ]
        ),
    )
    db.replace_table(
        con,
        "rejected_rows",
        pl.DataFrame(
            {
                "run_id": ["ingest-fixture"] * 3,
                "source": ["books", "ratings", "ratings"],
                "line": [7, 12, 19],
                "reason": ["too few columns", "rating out of range", "rating out of range"],
                "raw": ['"0001";"only"', "1;0002;11", "2;0003;-1"],
            }
        ),
    )


def _facets(con, books: pl.DataFrame) -> None:  # noqa: ANN001
    rows, labels, enrich = [], [], []
    for r in books.iter_rows(named=True):
        genre = GENRES[int(r["isbn"][1])]
        i = int(r["isbn"][2:9])
        audience = AUDIENCE[i % 2]
        rows += [
            (r["isbn"], "genre", genre),
            (r["isbn"], "tone", TONES[genre]),
            (r["isbn"], "audience", audience),
        ]
        enrich.append(
            {
                "isbn": r["isbn"],
                "summary": f"A {genre.lower()} story for {audience.lower()} readers.",
                "genre": [genre.lower()],
                "tone": [TONES[genre].lower()],
                "audience": [audience],
                "category": ["fiction"],
                "theme": [],
                "source": "fixture",
                "prompt_version": "v1",
            }
        )
    for field, names in (("genre", GENRES), ("tone", list(TONES.values())), ("audience", AUDIENCE)):
        for cid, name in enumerate(names):
            labels += [
                {"field": field, "raw_label": name, "cluster_id": cid, "label": name},
                {
                    "field": field,
                    "raw_label": name.lower() + " books",
                    "cluster_id": cid,
                    "label": name,
                },
            ]
    db.replace_table(
        con, "book_facets", pl.DataFrame(rows, schema=["isbn", "field", "label"], orient="row")
    )
    db.replace_table(con, "facet_labels", pl.DataFrame(labels))
    db.replace_table(con, "book_enrichment", pl.DataFrame(enrich))
    vecs = _genre_vectors(np.random.default_rng(3), books, 384, noise=0.02)
    vecs = (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).astype(np.float32)
    db.replace_table(
        con,
        "book_content_embeddings",
        pl.DataFrame(
            {
                "isbn": books["isbn"],
                "text_hash": "fixture",
                "model": "fixture",
                "embedding": pl.Series(vecs).cast(pl.Array(pl.Float32, 384)),
            }
        ),
    )
    # what `bookrec content` precomputes for the dashboard
    db.replace_table(
        con,
        "book_content_neighbours",
        neighbours.nearest(books["isbn"].to_list(), vecs, CONTENT_NEIGHBOURS),
    )


def _genre_vectors(
    rng: np.random.Generator, books: pl.DataFrame, dim: int, noise: float
) -> np.ndarray:
    """Rows = genre direction (one-hot on the first axes) + Gaussian noise, float32."""
    out = noise * rng.standard_normal((books.height, dim)).astype(np.float32)
    for k, isbn in enumerate(books["isbn"]):
        out[k, int(isbn[1])] += 1.0
    return out


def _models(con, rng: np.random.Generator, books: pl.DataFrame, ratings: pl.DataFrame) -> None:  # noqa: ANN001
    t = datetime(2026, 1, 2, 9, 0)
    runs, curves = [], []
    users = list(range(1, 31))
    specs = [
        ("lightgcn", "embedding", 0.31),
        ("mf", "embedding", 0.27),
        ("ncf", "topn", 0.22),
        ("popularity", "topn", 0.1),
    ]
    for n, (model, scoring, recall) in enumerate(specs):
        run_id = f"{model}-fixture"
        metrics = {
            "recall@20": recall,
            "valid_recall@20": recall * 1.1,  # what picks the default model (LightGCN here)
            "ndcg@20": recall * 0.8,
            "precision@20": recall / 8,
            "hit@20": recall * 2,
            "recall@10": recall * 0.7,
            "ndcg@10": recall * 0.6,
            "coverage@20": 0.5,
            "sampled_hr@10": 0.6 + n / 20,
            "sampled_ndcg@10": 0.4 + n / 20,
        }
        runs.append(
            {
                "run_id": run_id,
                "model": model,
                "params": json.dumps({"dim": 8, "epochs": 5, "lr": 0.001 * (n + 1), "seed": 0}),
                "metrics": json.dumps(metrics),
                "data_fingerprint": "fixture",
                "split_id": "split-fixture",
                "scoring": scoring,
                "dim": 8 if scoring == "embedding" else None,
                "timings": json.dumps({"fit": 1.5 + n}),
                "started_at": t + timedelta(hours=n),
                "finished_at": t + timedelta(hours=n, minutes=5),
                "is_current": True,
            }
        )
        if scoring == "embedding":
            for epoch in range(1, 6):
                curves += [
                    {
                        "run_id": run_id,
                        "epoch": epoch,
                        "part": "train",
                        "metric": "loss",
                        "k": None,
                        "value": 0.7 / epoch,
                    },
                    {
                        "run_id": run_id,
                        "epoch": epoch,
                        "part": "valid",
                        "metric": "recall",
                        "k": 20,
                        "value": recall * (1 - 0.5**epoch),
                    },
                ]
            curves.append(
                {
                    "run_id": run_id,
                    "epoch": -1,
                    "part": "test",
                    "metric": "recall",
                    "k": 20,
                    "value": recall,
                }
            )
            items = _genre_vectors(rng, books, 8, noise=0.05)
            # popularity inside the genre: earlier books score a little higher for everyone
            items[:, 7] = (
                np.array([1.0 - int(i[2:9]) / 20 for i in books["isbn"]], dtype=np.float32) * 0.3
            )
            user_vecs = np.zeros((len(users), 8), dtype=np.float32)
            for k, u in enumerate(users):
                user_vecs[k, GENRES.index(genre_of_user(u))] = 2.0
                user_vecs[k, 7] = 1.0
            user_vecs += 0.01 * rng.standard_normal(user_vecs.shape).astype(np.float32)
            item_frame = pl.DataFrame(
                {
                    "run_id": run_id,
                    "isbn": books["isbn"],
                    "embedding": pl.Series(items).cast(pl.List(pl.Float32)),
                }
            )
            db.append_table(con, "item_embeddings", item_frame)
            # what a run with item embeddings writes beside them (engine.models.runs.write_run)
            db.append_table(
                con, "item_neighbours", model_runs.item_neighbours(item_frame, k=ITEM_NEIGHBOURS)
            )
            db.append_table(
                con,
                "user_embeddings",
                pl.DataFrame(
                    {
                        "run_id": run_id,
                        "user_id": pl.Series(users, dtype=pl.Int32),
                        "embedding": pl.Series(user_vecs).cast(pl.List(pl.Float32)),
                    }
                ),
            )
        elif model == "ncf":
            recs = []
            for u in users:
                g = GENRES.index(genre_of_user(u))
                recs += [
                    {
                        "run_id": run_id,
                        "user_id": u,
                        "rank": r + 1,
                        "isbn": isbn_of(g, i),
                        "score": 1.0 - r / 20,
                    }
                    for r, i in enumerate(range(PER_GENRE))
                ]
            db.append_table(
                con,
                "recommendations",
                pl.DataFrame(recs, schema_overrides={"user_id": pl.Int32, "rank": pl.Int32}),
            )
        else:
            db.append_table(
                con,
                "recommendations",
                pl.DataFrame(
                    {
                        "run_id": run_id,
                        "user_id": pl.Series([None] * 6, dtype=pl.Int32),
                        "rank": pl.Series(range(1, 7), dtype=pl.Int32),
                        "isbn": [isbn_of(g, i) for i in range(2) for g in range(3)],
                        "score": [6.0 - r for r in range(6)],
                    }
                ),
            )
    runs.append(
        {
            **runs[0],
            "run_id": "lightgcn-old",
            "is_current": False,
            "started_at": t - timedelta(days=1),
            "finished_at": t - timedelta(days=1) + timedelta(minutes=5),
            "metrics": json.dumps({"recall@20": 0.2, "sampled_hr@10": 0.5}),
            "params": json.dumps({"dim": 8, "epochs": 3, "lr": 0.01, "seed": 0}),
        }
    )
    curves += [
        {
            "run_id": "lightgcn-old",
            "epoch": e,
            "part": "train",
            "metric": "loss",
            "k": None,
            "value": 0.9 / e,
        }
        for e in (1, 2, 3)
    ]
    db.replace_table(con, "model_runs", pl.DataFrame(runs))
    db.replace_table(con, "run_metrics", pl.DataFrame(curves, schema_overrides={"k": pl.Int32}))
    db.replace_table(
        con,
        "splits",
        pl.DataFrame(
            [
                {
                    "split_id": "split-fixture",
                    "method": "holdout",
                    "settings": "{}",
                    "fingerprint": "fixture",
                    "summary": "{}",
                    "is_current": True,
                }
            ]
        ),
    )
    _tuning(con)


TUNE_ID = "tune-itemknn-fixture"


def _tuning(con) -> None:  # noqa: ANN001
    """A stored `bookrec tune` study: 6 trials of two parameters, one pruned, best = trial 4."""
    values = [0.21, 0.25, None, 0.24, 0.29, 0.27]
    trials = [
        {
            "tune_id": TUNE_ID,
            "number": n,
            "state": "pruned" if v is None else "complete",
            "value": v,
            "params": json.dumps({"neighbours": 50 + 25 * n, "shrink": 10.0 * n}),
            "best_epoch": None,
            "intermediate": "{}",
            "seconds": 1.5,
            "finished_at": datetime(2026, 1, 3, 9, n),
        }
        for n, v in enumerate(values)
    ]
    db.replace_table(con, "tuning_trials", pl.DataFrame(trials))
    run = {
        "tune_id": TUNE_ID,
        "model": "itemknn",
        "split_id": "split-fixture",
        "metric": "recall@20",
        "space": json.dumps({"neighbours": ["int", 10, 500], "shrink": ["float", 0, 1000]}),
        "space_hash": "fixture",
        "sampler": "tpe",
        "seed": 2020,
        "started_at": datetime(2026, 1, 3, 9, 0),
        "updated_at": datetime(2026, 1, 3, 9, 6),
        "n_trials": 6,
        "best_trial": 4,
        "best_value": 0.29,
        "best_params": json.dumps({"neighbours": 150, "shrink": 40.0}),
        "importance": json.dumps({"neighbours": 0.7, "shrink": 0.3}),
        "seconds": 9.0,
    }
    db.replace_table(con, "tuning_runs", pl.DataFrame([run]))
