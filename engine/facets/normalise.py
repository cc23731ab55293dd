"""Label normalisation: distinct raw labels per field -> one embedding each -> KMeans -> named facets."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from threadpoolctl import threadpool_limits

FIELDS = ("genre", "category", "theme", "tone", "audience")

# texts -> L2-normalised float32 rows; engine.embed.encode in production, a fake in fast tests.
Encoder = Callable[[list[str]], np.ndarray]


def clean_labels(book_labels: pl.DataFrame) -> pl.DataFrame:
    """(isbn, field, raw_label) with whitespace collapsed, empties dropped, a case-folded `key` added."""
    raw = pl.col("raw_label").str.replace_all(r"\s+", " ").str.strip_chars()
    return (
        book_labels.lazy()
        .with_columns(raw.alias("raw_label"))
        .filter(pl.col("raw_label").is_not_null() & (pl.col("raw_label") != ""))
        .with_columns(pl.col("raw_label").str.to_lowercase().alias("key"))
        .unique(["isbn", "field", "raw_label"])
        .collect()
    )


def distinct_keys(labels: pl.DataFrame) -> pl.DataFrame:
    """Per (field, key): distinct books and the most used surface form (the key's display name)."""
    surface = (
        labels.group_by("field", "key", "raw_label")
        .agg(pl.col("isbn").n_unique().alias("n_raw"))
        .sort(["n_raw", "raw_label"], descending=[True, False])
        .group_by("field", "key", maintain_order=True)
        .agg(pl.col("raw_label").first().alias("display"))
    )
    books = labels.group_by("field", "key").agg(pl.col("isbn").n_unique().alias("n_books"))
    return books.join(surface, on=["field", "key"]).sort(["field", "key"])


@dataclass(frozen=True)
class KChoice:
    """The clustering picked for one field: assignments, k, how k was chosen, and its quality."""

    assignments: np.ndarray
    k: int
    source: str  # silhouette | distinct | fixed | capped | single | empty
    silhouette: float | None
    scores: dict[int, float] = field(default_factory=dict)


def candidate_ks(n: int, k_min: int, k_max: int, max_tries: int) -> list[int]:
    """The k values to try: k_min..min(k_max, n-1), thinned evenly to at most max_tries values."""
    hi = min(k_max, n - 1)
    lo = max(2, min(k_min, hi))
    if hi < 2:
        return []
    ks = list(range(lo, hi + 1))
    if len(ks) > max_tries:
        ks = sorted({int(round(x)) for x in np.linspace(lo, hi, max_tries)})
    return ks


def _kmeans(x: np.ndarray, w: np.ndarray, k: int, seed: int, n_init: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    with warnings.catch_warnings():
        # identical vectors (e.g. "Sci-Fi" vs "Sci Fi" after tokenising) can leave fewer distinct
        # points than k; sklearn warns and still returns k labels, which is what we want
        warnings.simplefilter("ignore")
        return KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(
            x, sample_weight=w
        )


def choose_clusters(
    x: np.ndarray,
    weights: np.ndarray,
    *,
    k_fixed: int | None,
    k_min: int = 2,
    k_max: int = 40,
    max_tries: int = 12,
    sample: int = 3000,
    seed: int = 0,
    n_init: int = 3,
    tolerance: float = 0.0,
    min_silhouette: float = 0.25,
    threads: int = 1,
) -> KChoice:
    """One KMeans fit for a field: k fixed (capped at the number of labels) or the best cosine silhouette."""
    # one BLAS/OpenMP thread: many small KMeans fits next to torch's thread pool on a busy
    # 2-core box ran 10-20x slower with the default threads (0.6 s vs 6-13 s for 330 labels)
    with threadpool_limits(threads):
        return _choose(
            x,
            weights,
            k_fixed,
            k_min,
            k_max,
            max_tries,
            sample,
            seed,
            n_init,
            tolerance,
            min_silhouette,
        )


def _choose(
    x: np.ndarray,
    weights: np.ndarray,
    k_fixed: int | None,
    k_min: int,
    k_max: int,
    max_tries: int,
    sample: int,
    seed: int,
    n_init: int,
    tolerance: float,
    min_silhouette: float,
) -> KChoice:
    n = x.shape[0]
    if n == 0:
        return KChoice(np.zeros(0, dtype=np.int64), 0, "empty", None)
    if n == 1:
        return KChoice(np.zeros(1, dtype=np.int64), 1, "single", None)
    if k_fixed is not None and k_fixed >= n:
        return KChoice(np.arange(n), n, "capped", None)
    if k_fixed is not None:
        assign = _kmeans(x, weights, k_fixed, seed, n_init)
        return KChoice(assign, k_fixed, "fixed", _silhouette(x, assign, sample, seed))
    ks = candidate_ks(n, k_min, k_max, max_tries)
    if not ks:  # two labels: silhouette is undefined, keep them apart
        return KChoice(np.arange(n), n, "capped", None)
    fits: dict[int, tuple[np.ndarray, float | None]] = {}

    def fit(k: int) -> None:
        if k not in fits:
            assign = _kmeans(x, weights, k, seed, n_init)
            fits[k] = (assign, _silhouette(x, assign, sample, seed))

    for k in ks:
        fit(k)
    # refine: the coarse grid may skip the best k; try every k between the best one's neighbours
    coarse = _pick(fits, tolerance)
    i = ks.index(coarse)
    for k in range(ks[max(i - 1, 0)], ks[min(i + 1, len(ks) - 1)] + 1):
        fit(k)
    best = _pick(fits, tolerance)
    scores = {k: (s if s is not None else float("nan")) for k, (_, s) in sorted(fits.items())}
    sil = fits[best][1]
    if n <= k_max and (sil is None or sil < min_silhouette):
        # no cluster structure (Kaufman & Rousseeuw: < 0.25 is "no substantial structure") and
        # few enough labels to show as they are: merging would only blur distinct labels
        return KChoice(np.arange(n), n, "distinct", None, scores)
    return KChoice(fits[best][0], best, "silhouette", sil, scores)


def _pick(fits: dict[int, tuple[np.ndarray, float | None]], tolerance: float) -> int:
    """The smallest k whose silhouette is within `tolerance` of the best (fewer facets when it is a wash)."""
    scored = {k: s for k, (_, s) in fits.items() if s is not None}
    if not scored:
        return min(fits)
    top = max(scored.values())
    return min(k for k, s in scored.items() if s >= top - tolerance)


def _silhouette(x: np.ndarray, assign: np.ndarray, sample: int, seed: int) -> float | None:
    from sklearn.metrics import silhouette_score

    n_used = len(np.unique(assign))
    if n_used < 2 or n_used >= x.shape[0]:
        return None
    size = (
        sample if x.shape[0] > sample else None
    )  # sampled silhouette keeps large fields O(sample^2)
    return float(silhouette_score(x, assign, metric="cosine", sample_size=size, random_state=seed))


def name_clusters(keys: pl.DataFrame, assignments: np.ndarray) -> pl.DataFrame:
    """Attach cluster ids (0 = most books) and names (the cluster's most frequent label) to keys."""
    tagged = keys.with_columns(pl.Series("fit_id", assignments, dtype=pl.Int64))
    heads = (
        tagged.sort(["n_books", "key"], descending=[True, False])
        .group_by("fit_id", maintain_order=True)
        .agg(pl.col("display").first().alias("label"), pl.col("n_books").sum().alias("weight"))
        .sort(["weight", "label"], descending=[True, False])
        .with_row_index("cluster_id")
        .select(pl.col("cluster_id").cast(pl.Int32), "fit_id", "label")
    )
    return tagged.join(heads, on="fit_id").drop("fit_id")


def _dedupe_names(named: pl.DataFrame) -> pl.DataFrame:
    """Two clusters headed by the same display name (rare: equal keys differ only in case) get suffixes."""
    dup = (
        named.select("cluster_id", "label")
        .unique()
        .with_columns(pl.col("cluster_id").rank("ordinal").over("label").alias("nth"))
    )
    fixed = dup.with_columns(
        pl.when(pl.col("nth") > 1)
        .then(pl.col("label") + " (" + pl.col("nth").cast(pl.Utf8) + ")")
        .otherwise(pl.col("label"))
        .alias("label")
    ).select("cluster_id", "label")
    return named.drop("label").join(fixed, on="cluster_id")


@dataclass(frozen=True)
class FieldResult:
    """One field's normalisation: raw label -> cluster mapping plus the run record."""

    field: str
    mapping: pl.DataFrame  # raw_label, cluster_id, label
    run: dict


def normalise_field(
    labels: pl.DataFrame,
    field_name: str,
    encode: Encoder,
    *,
    k_fixed: int | None,
    k_min: int,
    k_max: int,
    max_tries: int,
    sample: int,
    seed: int,
    n_init: int,
    tolerance: float = 0.0,
    min_silhouette: float = 0.25,
    template: str = "{}",
    weight_power: float = 0.0,
    cluster_threads: int = 1,
) -> FieldResult:
    """Cluster one field's distinct labels: each case-folded label embedded once, one KMeans fit."""
    rows = labels.filter(pl.col("field") == field_name)
    keys = distinct_keys(rows)
    texts = [template.replace("{}", k) for k in keys["key"]]
    t0 = time.perf_counter()
    vectors = encode(texts) if keys.height else np.zeros((0, 1), np.float32)
    t1 = time.perf_counter()
    # weight_power > 0 pulls centroids toward common labels (n_books ** power)
    weights = keys["n_books"].to_numpy().astype(np.float64) ** weight_power
    choice = choose_clusters(
        vectors,
        weights,
        k_fixed=k_fixed,
        k_min=k_min,
        k_max=k_max,
        max_tries=max_tries,
        sample=sample,
        seed=seed,
        n_init=n_init,
        tolerance=tolerance,
        min_silhouette=min_silhouette,
        threads=cluster_threads,
    )
    t2 = time.perf_counter()
    named = _dedupe_names(name_clusters(keys, choice.assignments)) if keys.height else None
    if named is None:
        mapping = pl.DataFrame(
            schema={"raw_label": pl.Utf8, "cluster_id": pl.Int32, "label": pl.Utf8}
        )
    else:
        raw = rows.select("key", "raw_label").unique()
        mapping = (
            raw.join(named.select("key", "cluster_id", "label"), on="key")
            .drop("key")
            .sort("raw_label")
        )
    run = {
        "field": field_name,
        "n_books": rows["isbn"].n_unique(),
        "n_raw": rows["raw_label"].n_unique(),
        "n_keys": keys.height,
        "k": choice.k,
        "k_source": choice.source,
        "silhouette": choice.silhouette,
        "k_scores": {str(k): round(v, 4) for k, v in choice.scores.items()},
        "seconds": {"embed": round(t1 - t0, 2), "cluster": round(t2 - t1, 2)},
    }
    return FieldResult(field_name, mapping, run)


def book_facets(labels: pl.DataFrame, mappings: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """(isbn, field, label): each book's raw labels replaced by their facet names, deduplicated."""
    parts = [
        labels.filter(pl.col("field") == f).join(m.select("raw_label", "label"), on="raw_label")
        for f, m in mappings.items()
    ]
    if not parts:
        return pl.DataFrame(schema={"isbn": pl.Utf8, "field": pl.Utf8, "label": pl.Utf8})
    return (
        pl.concat(parts).select("isbn", "field", "label").unique().sort(["isbn", "field", "label"])
    )


def misnamed_facets(labels: pl.DataFrame, mapping: pl.DataFrame) -> pl.DataFrame:
    """Facets whose name is not the most common raw label inside them (should be empty).

    `labels`: clean_labels output (isbn, field, raw_label, key); `mapping`: facet_labels rows
    (field, raw_label, label). A facet's raw labels are counted by distinct books per case-folded
    label; the facet's name must be (a surface form of) one with the highest count.
    Returns (field, label, top_raw_label, top_books, name_books) per offending facet.
    """
    counted = (
        labels.join(mapping.select("field", "raw_label", "label"), on=["field", "raw_label"])
        .group_by("field", "label", "key")
        .agg(pl.col("isbn").n_unique().alias("n_books"))
    )
    top = (
        counted.sort(["n_books", "key"], descending=[True, False])
        .group_by("field", "label", maintain_order=True)
        .agg(
            pl.col("key").first().alias("top_raw_label"), pl.col("n_books").max().alias("top_books")
        )
    )
    named = counted.filter(pl.col("key") == pl.col("label").str.to_lowercase()).select(
        "field", "label", pl.col("n_books").alias("name_books")
    )
    return (
        top.join(named, on=["field", "label"], how="left")
        .with_columns(pl.col("name_books").fill_null(0))
        .filter(pl.col("name_books") < pl.col("top_books"))
        .sort("field", "label")
    )
