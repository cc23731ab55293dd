"""Facets stage: raw enrichment labels -> human-named facets (facet_labels, book_facets, facet_runs).

`run(con, settings)` is `bookrec facets`; `engine.facets.content.run` is `bookrec content`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import duckdb
import polars as pl

from engine import config, db, pipeline
from engine.errors import StageNotReadyError
from engine.facets.normalise import FIELDS, Encoder, book_facets, clean_labels, normalise_field

# k per field used by the prototype (seaborn notebooks); `prototype_k = true` applies them.
PROTOTYPE_K = {"genre": 20, "category": 20, "theme": 25, "tone": 20, "audience": 15}


@dataclass(frozen=True)
class FacetSettings:
    """Settings of `bookrec facets` ([facets] in bookrec.toml, BOOKREC_FACETS_*)."""

    model: str = "all-MiniLM-L6-v2"  # any SentenceTransformer name or local path
    k_genre: int | None = None  # None: chosen by silhouette (or PROTOTYPE_K with prototype_k)
    k_category: int | None = None
    k_theme: int | None = None
    k_tone: int | None = None
    k_audience: int | None = None
    prototype_k: bool = False
    k_min: int = 2
    k_max: int = 40
    k_tries: int = 12  # at most this many k values are fitted per field
    silhouette_sample: int = 3000
    k_tolerance: float = 0.01  # prefer the smallest k whose silhouette is this close to the best
    min_silhouette: float = (
        0.25  # below it (and <= k_max labels) every distinct label is its own facet
    )
    label_template: str = "a {} book"  # what is embedded per label; context sharpens short labels
    weight_power: float = (
        0.0  # KMeans sample weight = n_books ** power (0: every label counts once)
    )
    n_init: int = 3
    seed: int = 0
    batch_size: int = 256
    threads: int | None = None  # torch threads for embedding (None: torch's default)
    cluster_threads: int = (
        1  # BLAS/OpenMP threads for KMeans + silhouette (1 is fastest for small fits)
    )

    def __post_init__(self) -> None:
        for f in FIELDS:
            k = getattr(self, f"k_{f}")
            if k is not None and k < 1:
                raise ValueError(f"k_{f} must be at least 1")
        if not 2 <= self.k_min <= self.k_max:
            raise ValueError("need 2 <= k_min <= k_max")
        if "{}" not in self.label_template:
            raise ValueError("label_template must contain {} (where the label goes)")

    def field_options(self, field: str) -> dict:
        """Keyword arguments of normalise.normalise_field for one field."""
        return {
            "k_fixed": self.k_for(field),
            "k_min": self.k_min,
            "k_max": self.k_max,
            "max_tries": self.k_tries,
            "sample": self.silhouette_sample,
            "seed": self.seed,
            "n_init": self.n_init,
            "tolerance": self.k_tolerance,
            "min_silhouette": self.min_silhouette,
            "template": self.label_template,
            "weight_power": self.weight_power,
            "cluster_threads": self.cluster_threads,
        }

    def k_for(self, field: str) -> int | None:
        """The fixed k for a field, or None when silhouette chooses it."""
        k = getattr(self, f"k_{field}")
        return k if k is not None else (PROTOTYPE_K[field] if self.prototype_k else None)


def load(overrides: dict | None = None) -> FacetSettings:
    """FacetSettings from bookrec.toml [facets], BOOKREC_FACETS_* and CLI overrides."""
    return config.load_settings(FacetSettings, "facets", overrides)


def default_encoder(model: str, batch_size: int, threads: int | None) -> Encoder:
    """engine.embed.encode bound to a model: texts -> unit-length float32 rows."""
    from engine import embed

    return partial(embed.encode, batch_size=batch_size, model=model, threads=threads)


def model_label(model: str) -> str:
    """Provenance name of the embedding model (never a local path)."""
    from engine import embed

    return embed.model_label(model)


def _inputs(con: duckdb.DuckDBPyConnection) -> dict:
    digest = db.query(con, "facets_enrichment_digest").row(0, named=True)
    return {"enrich": pipeline.upstream(con, "enrich"), **digest}


def run(
    con: duckdb.DuckDBPyConnection,
    settings: FacetSettings,
    *,
    force: bool = False,
    encoder: Encoder | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Normalise every field's labels and swap facet_labels/book_facets/facet_runs in atomically."""
    say = progress or (lambda _msg: None)
    inputs = _inputs(con)
    if inputs["n_books"] == 0:
        raise StageNotReadyError(
            "book_enrichment is empty: no labels to turn into facets",
            where="book_enrichment",
            hint="Run `bookrec enrich` first",
        )
    params = config.as_dict(settings)
    fp = pipeline.fingerprint(params, inputs)
    if not force and pipeline.is_current(con, "facets", fp):
        return {"status": "up to date", "fingerprint": fp}
    t0 = time.perf_counter()
    labels = clean_labels(db.query(con, "facets_book_labels"))
    seconds = {"read": round(time.perf_counter() - t0, 2)}
    encode = encoder or default_encoder(settings.model, settings.batch_size, settings.threads)
    results = []
    for field in FIELDS:
        res = normalise_field(labels, field, encode, **settings.field_options(field))
        say(_describe(res.run))
        results.append(res)
    mappings = {r.field: r.mapping for r in results}
    labels_out = pl.concat(
        [
            r.mapping.select(pl.lit(r.field).alias("field"), "raw_label", "cluster_id", "label")
            for r in results
        ]
    )
    facets_out = book_facets(labels, mappings)
    label = encoder_label(settings, encoder)
    runs = pl.DataFrame(
        [
            {
                **{c: v for c, v in r.run.items() if c != "seconds"},
                "k_scores": json.dumps(r.run["k_scores"]),
                "model": label,
                "seed": settings.seed,
            }
            for r in results
        ],
        schema={
            "field": pl.Utf8,
            "n_books": pl.Int32,
            "n_raw": pl.Int32,
            "n_keys": pl.Int32,
            "k": pl.Int32,
            "k_source": pl.Utf8,
            "silhouette": pl.Float64,
            "k_scores": pl.Utf8,
            "model": pl.Utf8,
            "seed": pl.Int32,
        },
    )
    for r in results:
        seconds[r.field] = r.run["seconds"]
    summary = {
        "books": labels["isbn"].n_unique() if labels.height else 0,
        "raw_labels": labels_out.height,
        "book_facets": facets_out.height,
        "k": {r.field: r.run["k"] for r in results},
        "silhouette": {r.field: r.run["silhouette"] for r in results},
        "seconds": seconds,
    }
    t0 = time.perf_counter()
    with db.transaction(con):
        db.replace_table(con, "facet_labels", labels_out)
        db.replace_table(con, "book_facets", facets_out)
        db.replace_table(con, "facet_runs", runs)
        seconds["write"] = round(time.perf_counter() - t0, 2)
        pipeline.record(con, "facets", fp, params, inputs, summary)
    return {"status": "done", "fingerprint": fp, **summary}


def name_check(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Facets whose name is not the most common raw label inside them (empty when all is well)."""
    from engine.facets.normalise import misnamed_facets

    labels = clean_labels(db.query(con, "facets_book_labels"))
    mapping = db.fetch(con, "SELECT field, raw_label, label FROM facet_labels")
    return misnamed_facets(labels, mapping)


def encoder_label(settings: FacetSettings, encoder: Encoder | None) -> str:
    """The model name recorded with the run; injected encoders (tests) are named as such."""
    return (
        model_label(settings.model) if encoder is None else getattr(encoder, "__name__", "custom")
    )


def _describe(run: dict) -> str:
    sil = f", silhouette {run['silhouette']:.3f}" if run["silhouette"] is not None else ""
    return (
        f"{run['field']}: {run['n_raw']} raw labels ({run['n_keys']} distinct) on {run['n_books']} books"
        f" -> {run['k']} facets ({run['k_source']}{sil})"
    )


def report_data(con: duckdb.DuckDBPyConnection) -> dict[str, pl.DataFrame]:
    """Everything the facets report draws, read through named queries (used by app.report)."""
    if db.fetch(con, "SELECT count(*) AS n FROM book_facets")["n"][0] == 0:
        raise StageNotReadyError(
            "no facets yet", where="book_facets", hint="Run `bookrec facets` first"
        )
    return {
        "runs": db.query(con, "facet_runs_all"),
        "counts": db.query(con, "facet_counts_all"),
        "alignment": db.query(con, "facet_alignment", {"field": "genre"}),
        "triples": db.query(
            con, "facet_triples", {"x_field": "genre", "y_field": "audience", "z_field": "tone"}
        ),
        **{
            f"pair:{a}:{b}": db.query(con, "facet_pair_counts", {"field_a": a, "field_b": b})
            for a, b in REPORT_PAIRS
        },
    }


# Field pairs drawn as co-occurrence heatmaps in the report.
REPORT_PAIRS = [
    ("genre", "tone"),
    ("genre", "audience"),
    ("genre", "theme"),
    ("category", "audience"),
    ("theme", "tone"),
]
