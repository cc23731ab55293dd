"""engine.neighbours on faiss (issue 14): exact lists equal a brute-force sort (ties by ISBN),
the approximate index above `exact_max` keeps recall@k >= 0.95, the threshold switches, and the
dashboard's query-time content search still gives similar_books_by_content's answers."""

from __future__ import annotations

import shutil

import numpy as np
import polars as pl
import pytest

from engine import db, neighbours, query
from engine.neighbours import NeighbourSettings


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n: int, d: int, groups: int, seed: int) -> np.ndarray:
    """Unit rows around `groups` centres, noise with a power-law spectrum (like MiniLM rows)."""
    rng = np.random.default_rng(seed)
    spectrum = ((1.0 + np.arange(d)) ** -0.4).astype(np.float32)
    centres = rng.standard_normal((groups, d), dtype=np.float32) * 0.3
    x = (
        centres[rng.integers(0, groups, n)]
        + rng.standard_normal((n, d), dtype=np.float32) * spectrum
    )
    return _unit(x)


def _brute(vecs: np.ndarray, isbns: list[str], k: int) -> list[list[str]]:
    """Every row's k best others by (score rounded to 1e-6 desc, ISBN asc): the macros' order."""
    sims = np.round((vecs @ vecs.T).astype(np.float64), neighbours.DECIMALS)
    names = np.asarray(isbns)
    out = []
    for row in range(len(isbns)):
        others = np.delete(np.arange(len(isbns)), row)
        order = np.lexsort((names[others], -sims[row, others]))[:k]
        out.append(names[others[order]].tolist())
    return out


def _lists(frame: pl.DataFrame) -> dict[str, list[str]]:
    grouped = frame.sort("isbn", "rank").group_by("isbn", maintain_order=True).agg("neighbour")
    return dict(grouped.iter_rows())


def _recall(got: pl.DataFrame, want: pl.DataFrame) -> float:
    a, b = _lists(got), _lists(want)
    k = len(next(iter(b.values())))
    return float(np.mean([len(set(a[i]) & set(b[i])) / k for i in b]))


def test_exact_lists_equal_a_brute_force_sort_with_isbn_ties():
    """Groups of identical rows larger than faiss's candidate margin: ties are widened, not cut."""
    rng = np.random.default_rng(11)
    n, d, k = 400, 16, 6
    vecs = rng.standard_normal((n, d)).astype(np.float32)
    vecs[1:31] = vecs[0]  # 31 copies: every copy ties with 30 others at score 1
    vecs[40:45] = vecs[39]
    vecs[300] = -vecs[0]  # its top-k are ties too, at the far side
    vecs = _unit(vecs)
    isbns = [f"{x:09d}X" for x in rng.permutation(n)]
    got = neighbours.nearest(isbns, vecs, k, settings=NeighbourSettings(block=64))
    assert got.height == n * k and got["rank"].to_list()[:k] == list(range(1, k + 1))
    assert _lists(got) == dict(zip(isbns, _brute(vecs, isbns, k), strict=True))
    first = got.filter(pl.col("isbn") == isbns[0]).sort("rank")
    assert first["score"].to_list() == pytest.approx([1.0] * k, abs=1e-6)
    assert isbns[0] not in first["neighbour"].to_list()
    # the same through the lower-level search with a margin of 0: widening alone finds the ties
    ranks = neighbours.isbn_ranks(isbns)
    hits, _ = neighbours.exact_rows(vecs, np.arange(n), k, ranks, margin=0)
    names = np.asarray(isbns)
    assert [names[h].tolist() for h in hits] == _brute(vecs, isbns, k)


def test_exact_rows_with_float_ties_order_as_the_macro_does():
    """decimals=None: exact float comparison (the SQL macros'), equal scores by ISBN."""
    rng = np.random.default_rng(5)
    vecs = _unit(rng.standard_normal((300, 8)))
    vecs[100:140] = vecs[7]
    isbns = np.array([f"{x:010d}" for x in rng.permutation(300)])
    hits, scores = neighbours.exact_rows(
        vecs, np.array([7, 3]), 12, neighbours.isbn_ranks(isbns), decimals=None
    )
    sims = vecs @ vecs[[7, 3]].T
    for i, row in enumerate((7, 3)):
        s = sims[:, i].copy()
        s[row] = -np.inf
        assert hits[i].tolist() == query._top(s, isbns, 12).tolist()
        assert scores[i] == pytest.approx(s[hits[i]], abs=1e-6)


def test_small_inputs():
    vecs = _unit(np.random.default_rng(0).standard_normal((3, 4)))
    assert neighbours.nearest(["A"], vecs[:1], 5).is_empty()
    assert neighbours.nearest([], np.zeros((0, 4), np.float32), 5).is_empty()
    two = neighbours.nearest(["B", "A", "C"], vecs, 5)  # k capped at n - 1
    assert two.height == 6 and set(two.filter(pl.col("isbn") == "A")["neighbour"]) == {"B", "C"}


def test_zero_rows_are_neither_searched_nor_found():
    """Items nobody read in training keep a zero vector (ALS): their scores all tie at 0, so an
    exact list for one was a sort of the whole catalogue (xl: the ALS write-back never ended).
    They get no list and are nobody's neighbour; the other lists are those without them."""
    vecs = _clustered(400, 16, groups=8, seed=4)
    isbns = [f"{i:010d}" for i in range(400)]
    zero = np.arange(0, 400, 3)
    with_zeros = vecs.copy()
    with_zeros[zero] = 0
    got = neighbours.nearest(isbns, with_zeros, 10, settings=NeighbourSettings(exact_max=100))
    dead = {isbns[i] for i in zero}
    assert not dead & set(got["isbn"]) and not dead & set(got["neighbour"])
    live = [i for i in range(400) if i % 3]
    alone = neighbours.nearest([isbns[i] for i in live], vecs[live], 10)
    assert _recall(got, alone) >= 0.95 and got.height == alone.height


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_above_the_threshold_keeps_recall(kind):
    """Above a lowered exact_max the approximate index answers, with recall@20 >= 0.95."""
    n, k = 6000, 20
    vecs = _clustered(n, 48, groups=60, seed=1)
    isbns = [f"{i:010d}" for i in np.random.default_rng(2).permutation(n)]
    said: list[str] = []
    approx = neighbours.nearest(
        isbns,
        vecs,
        k,
        settings=NeighbourSettings(exact_max=1000, approximate=kind),
        progress=said.append,
    )
    assert said and all("approximate" in m for m in said)
    exact = neighbours.nearest(isbns, vecs, k, settings=NeighbourSettings(exact_max=n))
    assert approx.height == n * k
    assert approx.filter(pl.col("isbn") == pl.col("neighbour")).is_empty()
    assert _recall(approx, exact) >= 0.95
    # each list is best first, as the exact lists are
    drops = approx.with_columns(d=pl.col("score").diff().over("isbn")).filter(pl.col("d") > 1e-6)
    assert drops.is_empty()


def test_threshold_switch_and_setting_from_the_environment(monkeypatch):
    n = 500
    vecs = _clustered(n, 16, groups=10, seed=3)
    isbns = [f"{i:05d}" for i in range(n)]

    def kind(settings: NeighbourSettings | None) -> str:
        said: list[str] = []
        neighbours.nearest(isbns, vecs, 5, settings=settings, progress=said.append)
        return said[-1].split()[1]

    assert kind(NeighbourSettings(exact_max=n)) == "(exact):"
    assert kind(NeighbourSettings(exact_max=n - 1)) == "(approximate):"
    assert NeighbourSettings().exact_max == 200_000 and kind(None) == "(exact):"
    monkeypatch.setenv("BOOKREC_NEIGHBOURS_EXACT_MAX", str(n - 1))
    assert neighbours.load().exact_max == n - 1 and kind(None) == "(approximate):"
    # an index that cannot reach min_recall on its sample is dropped for the exact search
    said: list[str] = []
    strict = NeighbourSettings(exact_max=0, min_recall=1.01)
    got = neighbours.nearest(isbns, vecs, 5, settings=strict, progress=said.append)
    assert "sample recall@5" in said[0] and all("(exact)" in m for m in said[1:])
    assert got.equals(neighbours.nearest(isbns, vecs, 5, settings=NeighbourSettings(exact_max=n)))
    # ... unless that exact search is too big: then no lists (the dashboard searches per request)
    said.clear()
    huge = NeighbourSettings(exact_max=0, min_recall=1.01, exact_fallback_max=n - 1)
    assert neighbours.nearest(isbns, vecs, 5, settings=huge, progress=said.append).is_empty()
    assert "no lists" in said[-1] and f"{n:,} rows" in said[-1]


def test_threads_setting_is_applied_and_restored():
    import faiss

    before = faiss.omp_get_max_threads()
    seen: list[int] = []
    vecs = _clustered(300, 8, groups=5, seed=4)
    neighbours.nearest(
        [str(i) for i in range(300)],
        vecs,
        3,
        threads=1,
        progress=lambda _m: seen.append(faiss.omp_get_max_threads()),
    )
    assert seen and set(seen) == {1} and faiss.omp_get_max_threads() == before


def test_query_time_content_search_agrees_with_the_macro(app_db, tmp_path):
    """Without precomputed lists the dashboard searches the content vectors with faiss: the
    answers equal similar_books_by_content's, ties included (copies of one vector)."""
    copy = tmp_path / "ties.duckdb"
    shutil.copy(app_db, copy)
    con = db.connect(copy)
    emb = db.fetch(con, "SELECT isbn, embedding FROM book_content_embeddings ORDER BY isbn")
    vecs = np.stack(emb["embedding"].to_numpy()).astype(np.float32)
    vecs[5:12] = vecs[4]  # eight books share a vector: their scores tie exactly
    frame = emb.with_columns(embedding=pl.Series(vecs).cast(pl.Array(pl.Float32, vecs.shape[1])))
    con.register("new_vectors", frame.to_arrow())
    con.execute(
        "UPDATE book_content_embeddings e SET embedding = n.embedding "
        "FROM new_vectors n WHERE n.isbn = e.isbn"
    ).fetchall()
    con.execute("DELETE FROM book_content_neighbours").fetchall()
    con.close()
    store = query.Store(copy)
    try:
        assert store._content_neighbours() is None
        for isbn in emb["isbn"].to_list()[::3] + emb["isbn"].to_list()[4:12]:
            for k in (1, 3, 10, 40):
                got = store.similar_content(isbn, k)
                with store.cursor() as cur:
                    want = db.fetch(
                        cur,
                        "SELECT isbn, similarity FROM similar_books_by_content($i, k := $k) "
                        "ORDER BY rank",
                        {"i": isbn, "k": k},
                    )
                assert got["isbn"].to_list() == want["isbn"].to_list(), (isbn, k)
                assert got["score"].to_list() == pytest.approx(
                    want["similarity"].to_list(), abs=1e-5
                )
    finally:
        store.close()


def test_more_probes_within_the_work_of_the_exact_fallback():
    """The recall check may double nprobe up to the work of the exact search it would fall back
    to (exact_fallback_max rows), not only up to that of exact_max rows."""
    n, k = 6000, 10
    vecs = _clustered(n, 16, groups=30, seed=4)
    ranks = neighbours.isbn_ranks([f"{i:06d}" for i in range(n)])

    def probes(fallback: int) -> int:
        s = NeighbourSettings(exact_max=100, nprobe=4, min_recall=1.01, exact_fallback_max=fallback)
        index = neighbours._approximate_index(vecs, s)
        neighbours._checked(index, vecs, k, ranks, s)
        return index.nprobe

    assert probes(fallback=n) == 32  # doubled to a quarter of its 155 lists
    assert probes(fallback=100) == 4  # an exact search of 100 rows is cheaper than 8 probes


def test_the_recall_check_counts_tied_rows_as_hits():
    """Rows that tie with the exact k-th score are as near as the ISBN-first ones the exact
    lists keep: an index returning other tied rows passes the check (xl's ALS vectors)."""
    groups, size, k = 100, 60, 10  # 60 copies of each direction: 59 others tie at score 1
    rng = np.random.default_rng(5)
    vecs = np.repeat(_unit(rng.standard_normal((groups, 16)).astype(np.float32)), size, axis=0)
    n = groups * size
    ranks = neighbours.isbn_ranks([f"{i:06d}" for i in rng.permutation(n)])
    s = NeighbourSettings(exact_max=100, nprobe=1, exact_fallback_max=n)
    index = neighbours._approximate_index(vecs, s)
    assert neighbours._checked(index, vecs, k, ranks, s) == 1.0 and index.nprobe == 1
    # the ISBN-first lists differ: the 19 candidates a search returns are some of the 59 ties
    fast, cand = index.search(vecs[:50], k + 9)
    exact, _ = neighbours.exact_rows(vecs, np.arange(50), k, ranks)
    top, _, _ = neighbours._ordered(np.arange(50), cand, fast, ranks, k, 6, np.zeros(50))
    assert np.mean([len(set(a) & set(b)) / k for a, b in zip(top, exact, strict=True)]) < 0.9
