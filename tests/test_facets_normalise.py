"""Facets stage: label normalisation (KMeans over label embeddings), edge cases, idempotence, atomicity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import db, facets, pipeline
from engine.errors import StageNotReadyError
from engine.facets import normalise

FIELDS = ("genre", "category", "theme", "tone", "audience")


def enrichment(rows: list[dict]) -> pl.DataFrame:
    """book_enrichment rows: isbn plus any label fields (missing fields -> NULL)."""
    full = [
        {
            "isbn": r["isbn"],
            "summary": r.get("summary"),
            **{f: r.get(f) for f in FIELDS},
            "source": "test",
            "prompt_version": "t1",
        }
        for r in rows
    ]
    schema = {
        "isbn": pl.Utf8,
        "summary": pl.Utf8,
        **{f: pl.List(pl.Utf8) for f in FIELDS},
        "source": pl.Utf8,
        "prompt_version": pl.Utf8,
    }
    return pl.DataFrame(full, schema=schema)


def fill(con, rows: list[dict]) -> None:
    with db.transaction(con):
        db.replace_table(con, "book_enrichment", enrichment(rows))


@pytest.fixture()
def con(tmp_path: Path):
    c = db.connect(tmp_path / "facets.duckdb")
    yield c
    c.close()


def grouped_vectors(texts: list[str]) -> np.ndarray:
    """Encoder whose geometry is known: a label's group is its first word; tiny per-label jitter."""
    rng = np.random.default_rng(0)
    centres = {}
    out = []
    for t in texts:
        g = t.split()[0]
        if g not in centres:
            centres[g] = rng.standard_normal(16)
        jitter = np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(16) * 0.05
        v = centres[g] + jitter
        out.append(v / np.linalg.norm(v))
    return np.array(out, dtype=np.float32)


def test_clean_labels_trims_folds_and_drops_empties() -> None:
    raw = pl.DataFrame(
        {
            "isbn": ["a", "a", "a", "b", "b"],
            "field": ["genre"] * 5,
            "raw_label": ["  Sci-Fi ", "Sci-Fi", "", None, "science   fiction"],
        }
    )
    out = normalise.clean_labels(raw).sort("isbn")
    assert out.select("isbn", "raw_label", "key").rows() == [
        ("a", "Sci-Fi", "sci-fi"),
        ("b", "science fiction", "science fiction"),
    ]


def test_distinct_keys_counts_books_and_picks_most_used_surface_form() -> None:
    labels = normalise.clean_labels(
        pl.DataFrame(
            {
                "isbn": ["a", "b", "c", "c", "d"],
                "field": ["genre"] * 5,
                "raw_label": ["mystery", "Mystery", "Mystery", "mystery", "Mystery"],
            }
        )
    )
    keys = normalise.distinct_keys(labels)
    assert keys.rows(named=True) == [
        {"field": "genre", "key": "mystery", "n_books": 4, "display": "Mystery"}
    ]


def test_choose_clusters_finds_planted_groups_by_silhouette() -> None:
    texts = [f"{g} {i}" for g in ("red", "green", "blue", "gold") for i in range(6)]
    x = grouped_vectors(texts)
    choice = normalise.choose_clusters(x, np.ones(len(texts)), k_fixed=None, k_min=2, k_max=10)
    assert choice.k == 4 and choice.source == "silhouette"
    assert choice.silhouette > 0.8 and set(choice.scores) == set(range(2, 11))
    groups = {t.split()[0]: set() for t in texts}
    for t, a in zip(texts, choice.assignments, strict=True):
        groups[t.split()[0]].add(int(a))
    assert all(len(s) == 1 for s in groups.values()) and len(set.union(*groups.values())) == 4


@pytest.mark.parametrize(
    ("n", "k_fixed", "k", "source"),
    [
        (0, None, 0, "empty"),
        (1, None, 1, "single"),
        (1, 5, 1, "single"),
        (2, None, 2, "capped"),
        (3, 20, 3, "capped"),
        (5, 3, 3, "fixed"),
    ],
)
def test_choose_clusters_edge_cases(n: int, k_fixed: int | None, k: int, source: str) -> None:
    x = grouped_vectors([f"w{i}" for i in range(n)]) if n else np.zeros((0, 16), np.float32)
    choice = normalise.choose_clusters(x, np.ones(n), k_fixed=k_fixed)
    assert (choice.k, choice.source) == (k, source)
    assert len(choice.assignments) == n and len(set(choice.assignments.tolist())) == k


def test_candidate_ks_bounded_by_labels_and_thinned() -> None:
    assert normalise.candidate_ks(5, 2, 40, 12) == [2, 3, 4]
    ks = normalise.candidate_ks(1000, 2, 40, 12)
    assert len(ks) <= 12 and ks[0] == 2 and ks[-1] == 40


def test_cluster_named_by_most_frequent_label_and_ids_by_size() -> None:
    keys = pl.DataFrame(
        {
            "key": ["sci-fi", "science fiction", "sf", "romance"],
            "n_books": [5, 9, 1, 3],
            "display": ["Sci-Fi", "Science Fiction", "SF", "Romance"],
        }
    )
    named = normalise.name_clusters(keys, np.array([1, 1, 1, 0]))
    got = {r["key"]: (r["cluster_id"], r["label"]) for r in named.iter_rows(named=True)}
    assert got == {
        "sci-fi": (0, "Science Fiction"),
        "science fiction": (0, "Science Fiction"),
        "sf": (0, "Science Fiction"),
        "romance": (1, "Romance"),
    }


def test_stage_writes_tables_and_one_fit_gives_ids_and_names(con) -> None:
    rows = []
    for i in range(60):
        g = ["red", "green", "blue"][i % 3]
        # "g top" is the most used label of each group; "G Top" folds into it but is rarer as written
        top = [f"{g} top"] if i % 4 == 2 else [f"{g} top", f"{g.upper()} Top"] if i % 4 == 0 else []
        rows.append(
            {
                "isbn": f"b{i:03}",
                "genre": [f"{g} {i % 4}", *top],
                "tone": ["calm"] if i % 2 else None,
            }
        )
    fill(con, rows)
    out = facets.run(
        con, facets.FacetSettings(k_max=6, label_template="{}"), encoder=grouped_vectors
    )
    assert out["status"] == "done" and out["k"]["genre"] == 3
    labels = db.fetch(con, "SELECT * FROM facet_labels WHERE field = 'genre'")
    # each cluster has exactly one name and each name one cluster (same fit)
    assert labels.group_by("cluster_id").agg(pl.col("label").n_unique())["label"].max() == 1
    assert labels.group_by("label").agg(pl.col("cluster_id").n_unique())["cluster_id"].max() == 1
    assert sorted(labels["label"].unique()) == ["blue top", "green top", "red top"]
    bf = db.fetch(con, "SELECT * FROM book_facets WHERE field = 'genre'")
    assert bf.height == 60  # two raw labels of one book map to one facet: deduplicated
    # tone: half of the books have none -> no row, a single label -> one facet
    tone = db.fetch(con, "SELECT * FROM book_facets WHERE field = 'tone'")
    assert tone.height == 30 and tone["label"].unique().to_list() == ["calm"]
    runs = db.fetch(con, "SELECT field, k, k_source, n_keys FROM facet_runs ORDER BY field")
    assert runs.rows() == [
        ("audience", 0, "empty", 0),
        ("category", 0, "empty", 0),
        ("genre", 3, "silhouette", 15),
        ("theme", 0, "empty", 0),
        ("tone", 1, "single", 1),
    ]
    assert pipeline.last_run(con, "facets").summary["k"]["genre"] == 3


def test_fixed_k_larger_than_labels_is_capped(con, fake_encoder) -> None:
    fill(
        con,
        [{"isbn": f"b{i}", "genre": [["Mystery", "Romance", "Poetry"][i % 3]]} for i in range(9)],
    )
    facets.run(con, facets.FacetSettings(k_genre=20), encoder=fake_encoder)
    run = db.fetch(con, "SELECT k, k_source FROM facet_runs WHERE field = 'genre'").row(0)
    assert run == (3, "capped")
    assert sorted(db.fetch(con, "SELECT DISTINCT label FROM book_facets")["label"]) == [
        "Mystery",
        "Poetry",
        "Romance",
    ]


def test_prototype_k_and_fixed_override() -> None:
    s = facets.FacetSettings(prototype_k=True, k_tone=4)
    assert [s.k_for(f) for f in FIELDS] == [20, 20, 25, 4, 15]
    assert facets.FacetSettings().k_for("genre") is None


def test_empty_enrichment_is_a_clear_error_and_changes_nothing(con, fake_encoder) -> None:
    with pytest.raises(StageNotReadyError, match="book_enrichment is empty"):
        facets.run(con, facets.FacetSettings(), encoder=fake_encoder)
    assert pipeline.last_run(con, "facets") is None
    # labels present but every list empty: runs, writes empty outputs
    fill(con, [{"isbn": "x", "genre": [], "tone": [" "]}])
    out = facets.run(con, facets.FacetSettings(), encoder=fake_encoder)
    assert out["book_facets"] == 0 and db.fetch(con, "SELECT * FROM book_facets").is_empty()


def test_rerun_is_skipped_until_labels_change_and_reruns_are_identical(con, fake_encoder) -> None:
    fill(
        con, [{"isbn": f"b{i}", "genre": [f"g{i % 5}"], "theme": [f"t{i % 7}"]} for i in range(40)]
    )
    settings = facets.FacetSettings()
    first = facets.run(con, settings, encoder=fake_encoder)
    before = db.fetch(con, "SELECT * FROM facet_labels ORDER BY ALL")
    assert facets.run(con, settings, encoder=fake_encoder)["status"] == "up to date"
    assert (
        facets.run(con, settings, encoder=fake_encoder, force=True)["fingerprint"]
        == first["fingerprint"]
    )
    assert db.fetch(con, "SELECT * FROM facet_labels ORDER BY ALL").equals(before)
    fill(con, [{"isbn": f"b{i}", "genre": [f"g{i % 3}"]} for i in range(40)])
    assert facets.run(con, settings, encoder=fake_encoder)["status"] == "done"
    assert (
        db.fetch(
            con, "SELECT count(DISTINCT raw_label) AS n FROM facet_labels WHERE field='genre'"
        )["n"][0]
        == 3
    )


def test_failure_mid_stage_keeps_last_good_state(con, fake_encoder) -> None:
    fill(con, [{"isbn": f"b{i}", "genre": [f"g{i % 4}"]} for i in range(20)])
    facets.run(con, facets.FacetSettings(), encoder=fake_encoder)
    before = db.fetch(con, "SELECT * FROM book_facets ORDER BY ALL")
    fill(con, [{"isbn": f"c{i}", "genre": [f"h{i % 4}"]} for i in range(20)])

    def broken(texts: list[str]) -> np.ndarray:
        if any("h0" in t for t in texts):
            raise RuntimeError("encoder died")
        return fake_encoder(texts)

    with pytest.raises(RuntimeError):
        facets.run(con, facets.FacetSettings(), encoder=broken)
    assert db.fetch(con, "SELECT * FROM book_facets ORDER BY ALL").equals(before)


def test_labels_without_structure_stay_distinct_unless_too_many() -> None:
    x = np.random.default_rng(1).standard_normal((6, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    few = normalise.choose_clusters(x, np.ones(6), k_fixed=None, k_max=40)
    assert (few.k, few.source) == (6, "distinct") and few.scores  # tried, found nothing, kept them
    forced = normalise.choose_clusters(x, np.ones(6), k_fixed=None, k_max=3)
    assert forced.source == "silhouette" and forced.k <= 3


label_lists = st.lists(
    st.sampled_from(["Sci-Fi", "sci-fi", " Romance ", "", "Horror", "HORROR", "Poetry"]), max_size=4
)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(label_lists, label_lists), min_size=1, max_size=12))
def test_every_labelled_book_field_gets_facets_and_only_those(books) -> None:
    raw = pl.DataFrame(
        [
            (f"b{i}", f, lab)
            for i, (g, t) in enumerate(books)
            for f, labs in (("genre", g), ("tone", t))
            for lab in labs
        ],
        schema={"isbn": pl.Utf8, "field": pl.Utf8, "raw_label": pl.Utf8},
        orient="row",
    )
    labels = normalise.clean_labels(raw)
    fits = {
        f: normalise.normalise_field(
            labels,
            f,
            grouped_vectors,
            k_fixed=None,
            k_min=2,
            k_max=40,
            max_tries=12,
            sample=3000,
            seed=0,
            n_init=1,
        ).mapping
        for f in ("genre", "tone")
    }
    out = normalise.book_facets(labels, fits)
    expected = {(r[0], r[1]) for r in labels.select("isbn", "field").rows()}
    assert {(r[0], r[1]) for r in out.select("isbn", "field").rows()} == expected
    assert out.height == out.unique().height
    for (
        f,
        m,
    ) in fits.items():  # every raw label mapped exactly once, names are raw labels of the field
        assert m.height == labels.filter(pl.col("field") == f)["raw_label"].n_unique()
        assert set(m["label"]) <= set(m["raw_label"])


def test_every_clustering_option_reaches_normalise_field() -> None:
    import inspect

    params = inspect.signature(normalise.normalise_field).parameters
    keyword_only = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    assert set(facets.FacetSettings().field_options("genre")) == keyword_only
