"""A facet's name is the most common raw label inside it (issue 12), checked on stage runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from engine import db, facets
from engine.facets import normalise
from tests.test_facets_normalise import fill, grouped_vectors


@pytest.fixture()
def con(tmp_path: Path):
    c = db.connect(tmp_path / "names.duckdb")
    yield c
    c.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_facet_is_named_after_its_most_common_raw_label(con, seed: int) -> None:
    rng = np.random.default_rng(seed)
    groups = ["crime", "love", "space", "food", "war"]
    variants = [f"{g} {w}" for g in groups for w in ("story", "novel", "tale", "Story", "books")]
    weights = 1.0 / np.arange(1, len(variants) + 1)  # Zipf: some surface forms far more common
    rng.shuffle(weights)
    weights /= weights.sum()
    rows = []
    for i in range(300):
        picked = rng.choice(len(variants), size=rng.integers(1, 4), replace=False, p=weights)
        tones = ["Dark", "dark", "Light"]
        rows.append(
            {
                "isbn": f"b{i:04}",
                "genre": [variants[j] for j in picked],
                "tone": [tones[rng.integers(0, 3)]],
            }
        )
    fill(con, rows)
    out = facets.run(
        con, facets.FacetSettings(k_max=8, label_template="{}"), encoder=grouped_vectors
    )
    assert out["status"] == "done"
    bad = facets.name_check(con)
    assert bad.is_empty(), bad
    assert (
        db.fetch(con, "SELECT count(DISTINCT label) FROM facet_labels WHERE field = 'genre'").item()
        <= 8
    )


def test_check_catches_a_facet_named_after_a_rare_label() -> None:
    labels = normalise.clean_labels(
        pl.DataFrame(
            {
                "isbn": ["a", "b", "c", "c"],
                "field": ["genre"] * 4,
                "raw_label": ["Mystery", "Mystery", "Crime", "Mystery"],
            }
        )
    )
    mapping = pl.DataFrame(
        {
            "field": ["genre", "genre"],
            "raw_label": ["Mystery", "Crime"],
            "label": ["Crime", "Crime"],
        }
    )
    bad = normalise.misnamed_facets(labels, mapping)
    assert bad.rows() == [("genre", "Crime", "mystery", 3, 1)]
    good = mapping.with_columns(pl.lit("Mystery").alias("label"))
    assert normalise.misnamed_facets(labels, good).is_empty()
