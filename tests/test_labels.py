"""bench/labels.py on a slice of bookcover30 (real books): it runs, the mapping is complete, and the
labeller beats the naive baseline measured in the same run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from engine.enrich import vocab

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "bookcover30"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_labels", ROOT / "bench" / "labels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mapping_covers_every_default_genre_and_all_30_categories() -> None:
    bench = _bench()
    assert set(bench.DEFAULT_TO_BOOKCOVER30) == set(vocab.GENRE)
    if not DATA.exists():
        pytest.skip("../shared/data/bookcover30 is absent")
    _, cats = bench.load_books(DATA)
    assert set(bench.DEFAULT_TO_BOOKCOVER30.values()) == set(cats) and len(set(cats)) == 30
    # the --vocab file of the bench names exactly the 30 categories
    assert set(vocab.load_vocab(bench.VOCAB_FILE).labels("genre")) == set(cats)


def test_strip_brackets_keeps_the_title() -> None:
    bench = _bench()
    assert bench.strip_brackets("Mockingjay (The Hunger Games, Book 3)") == "Mockingjay"
    assert bench.strip_brackets("SQL [2nd Edition] for Dummies") == "SQL for Dummies"
    assert bench.strip_brackets("(Untitled)") == "(Untitled)"  # never an empty view


@pytest.mark.realdata
@pytest.mark.slow
def test_labeller_beats_the_naive_baseline_on_a_slice() -> None:
    if not DATA.exists():
        pytest.skip("../shared/data/bookcover30 is absent")
    bench = _bench()
    books, cats = bench.load_books(DATA, limit=300)  # 10 per category
    assert len(books) == 300 and len(set(cats)) == 30
    out = bench.measure(books, cats)
    rows = {r["variant"]: r for r in out["rows"]}
    naive = rows["naive: cosine with the 30 names (baseline)"]
    print(f"bookcover30 slice: naive top-1 {naive['top1']:.3f}, labeller {out['names_top1']:.3f}, "
          f"default vocabulary mapped {out['mapped_top1']:.3f}")  # fmt: skip
    assert 0.1 < naive["top1"] < 0.6  # far above chance (0.033): the yardstick reads the data right
    assert out["names_top1"] > naive["top1"]
    assert out["mapped_top1"] > out["mapped"][0]["top1"]  # beats zs1's ranking through the mapping
    assert sum(b["n"] for b in out["buckets"]) == 300
