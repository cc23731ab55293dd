"""Indexes shared by the workers of `bookrec serve` (issue 14): built once beside a snapshot,
memory-mapped by every Store that serves it, and answering exactly as in-process loads."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import numpy as np
import polars as pl
import pytest

from engine import query, snapshot
from engine.query import BrowseQuery, Store
from engine.shared import Keys, SharedIndexes


def test_keys_answer_as_a_dict_does_sorted_or_not():
    for keys in (["A", "B", "C"], ["C", "A", "B"]):
        want = {k: i for i, k in enumerate(keys)}
        got = Keys(np.array(keys))
        assert len(got) == 3 and all(got[k] == i and k in got for k, i in want.items())
        assert got.get("D") is None and got.get("D", -1) == -1 and "" not in got
        assert got.get(None) is None and 3 not in got  # not a string: never a row
        with pytest.raises(KeyError):
            got["AB"]
    assert Keys(np.array([], dtype=object)).get("A") is None
    assert Keys(np.array(["0553", "0553X"])).get("0553X") == 1  # a key longer than a prefix


def test_a_key_wider_than_the_array_is_answered_without_searching(monkeypatch):
    """numpy casts a whole fixed-width array to a longer key's width before searching it (19 ms a
    lookup at 1.9 M ISBNs: most of an xl reader request, and any client can send a long ISBN)."""
    import engine.shared

    keys = Keys(np.array(["0001", "0002", "0003"]))
    assert keys.get("0002") == 1

    def no_search(*_a, **_k):
        raise AssertionError("searched")

    monkeypatch.setattr(engine.shared.np, "searchsorted", no_search)
    assert keys.get("00021") is None and "0002" + "9" * 50 not in keys


def test_frames_and_arrays_are_built_once_and_mapped(tmp_path):
    shared = SharedIndexes(tmp_path / "shared")
    frame = pl.DataFrame(
        {
            "isbn": ["B", "A", None],
            "title": ["a longer title than twelve bytes", "x", "y"],
            "genre": [["fantasy", "a much longer label here"], [], None],
            "n": [1, 2, 3],
            "mean": [1.5, None, 2.0],
        }
    )
    built = []

    def build() -> pl.DataFrame:
        built.append(1)
        return frame

    first = shared.frame("books", build)
    again = shared.frame("books", build)
    assert built == [1] and first.equals(frame) and again.equals(frame)
    assert [p.suffix for p in (tmp_path / "shared").iterdir() if not p.name.startswith(".")] == [
        ".arrow"
    ]
    arrays = shared.arrays(
        "vectors run-1",
        lambda: {"isbns": np.array(["A", "B"]), "raw": np.eye(2, dtype=np.float32), "unit": None},
    )
    assert isinstance(arrays["raw"], np.memmap) and not arrays["raw"].flags.writeable
    assert arrays["unit"] is None and arrays["isbns"].tolist() == ["A", "B"]
    assert shared.arrays("vectors run-1", lambda: pytest.fail("built twice"))["raw"].shape == (2, 2)
    odd = {"a": np.array(["x", "y" * 300], dtype=object)}
    assert shared.arrays("odd", lambda: odd) is odd  # object arrays: kept in the process
    with pytest.raises(RuntimeError):
        shared.arrays("bad", lambda: (_ for _ in ()).throw(RuntimeError("build failed")))
    left = [q.name for q in (tmp_path / "shared").iterdir() if not q.name.endswith(".lock")]
    assert not [n for n in left if "bad" in n or "odd" in n]  # nothing half-written
    local = SharedIndexes(None)  # no directory: nothing written, the build itself comes back
    assert local.frame("books", build) is frame and len(built) == 2


def test_isbn_arrays_are_fixed_width_unless_one_is_absurdly_long():
    assert query._strings(np.array(["0553", "0553X"], dtype=object)).dtype == np.dtype("<U5")
    odd = query._strings(np.array(["0553", "x" * 300], dtype=object))
    assert odd.dtype == object and Keys(odd)["x" * 300] == 1
    assert query._strings(np.array([], dtype=object)).size == 0


def test_only_a_snapshot_of_a_served_database_shares(tmp_path, monkeypatch):
    live = tmp_path / "shop.duckdb"
    snap = tmp_path / ".serving" / "shop.duckdb" / "20261202T000000-1" / "shop.duckdb"
    assert not SharedIndexes.for_database(live).enabled
    assert SharedIndexes.for_database(snap).root == snap.parent / "shared"
    monkeypatch.setenv("BOOKREC_SERVE_SHARED", "0")
    assert not SharedIndexes.for_database(snap).enabled


@pytest.fixture(scope="module")
def served(app_db, tmp_path_factory):
    """(a Store on the live fixture file, a Store on its published snapshot)."""
    where = tmp_path_factory.mktemp("served") / "app.duckdb"
    shutil.copyfile(app_db, where)
    snap = snapshot.publish(where)
    live, mapped = Store(where), Store(snap)
    live.warm()
    mapped.warm()
    yield live, mapped, snap
    live.close()
    mapped.close()


def _same(live, mapped, call):
    """`call` answers the same on both Stores: equal frames / values, or the same error."""
    try:
        want = call(live)
    except Exception as exc:  # noqa: BLE001 - the mapped store must fail the same way
        with pytest.raises(type(exc), match=str(exc).split(".")[0]):
            call(mapped)
        return
    got = call(mapped)
    if isinstance(want, tuple):
        assert len(want) == len(got)
        for w, g in zip(want, got, strict=True):
            assert w.equals(g) if isinstance(w, pl.DataFrame) else w == g
    else:
        assert want.equals(got) if isinstance(want, pl.DataFrame) else want == got


def test_a_snapshot_store_answers_as_the_live_one(served):
    live, mapped, snap = served
    assert mapped.shared.enabled and not live.shared.enabled
    files = {p.name for p in (snap.parent / "shared").iterdir() if not p.name.startswith(".")}
    assert any(f.endswith(".arrow") for f in files) and len(files) > 10
    assert mapped.book_table().equals(live.book_table())
    for q in (
        BrowseQuery(),
        BrowseQuery(m=0, sort="title", desc=False, page=2),
        BrowseQuery(m=500, text="the", min_ratings=1),
        BrowseQuery(facets={"genre": ("fantasy",)}, sort="year"),
        BrowseQuery(m=37.5),  # off the slider's stops: in the process, not shared
    ):
        (a, n), (b, m) = live.browse(q), mapped.browse(q)
        assert n == m and a.equals(b)
    users = live.frame("app_users")["user_id"].head(8).to_list()
    isbns = live.book_table()["isbn"].head(6).to_list()
    models = live.models()["model"].to_list()
    assert len(models) >= 3
    for model in models:
        for u in users:
            _same(live, mapped, lambda s, m=model, u=u: s.recommend(m, u, 8))
            _same(live, mapped, lambda s, m=model, u=u: s.recommend_rows(m, u, 8))
        for i in isbns:
            _same(live, mapped, lambda s, m=model, i=i: s.similar_model(i, m, 6))
            _same(live, mapped, lambda s, m=model, i=i: s.similar_collab(i, m, 30))
        _same(live, mapped, lambda s, m=model: s.fold_in(m, isbns[:3], 8))
    for i in isbns:
        _same(live, mapped, lambda s, i=i: s.similar_content(i, 5))
        _same(live, mapped, lambda s, i=i: s.similar_content(i, 40))  # past the lists: search
        _same(live, mapped, lambda s, i=i: s.book(i))
    for u in users:
        _same(live, mapped, lambda s, u=u: s.user(u))
        _same(live, mapped, lambda s, u=u: s.user_history(u))


def test_a_second_worker_maps_what_the_first_built(served):
    """A new process on the same snapshot queries no large table again: it maps the files."""
    _, _, snap = served
    code = textwrap.dedent(
        f"""
        from engine import query
        asked = []
        frame = query.Store.frame
        def spy(self, name, params=None):
            asked.append(name)
            return frame(self, name, params)
        query.Store.frame = spy
        store = query.Store({str(snap)!r})
        store.warm()
        big = {{"app_book_table", "app_ratings_by_user", "app_users", "app_item_embeddings",
               "app_content_embeddings", "run_recommendations", "app_item_neighbours"}}
        print(sorted(big & set(asked)))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stderr


def test_client_values_never_reach_the_shared_directory(served):
    _, mapped, snap = served
    before = sorted(p.name for p in (snap.parent / "shared").iterdir())
    for m in (1.0, 2.5, 9999.0):
        mapped.browse(BrowseQuery(m=m))
    mapped.browse(BrowseQuery(text="zz-new-text"))
    assert sorted(p.name for p in (snap.parent / "shared").iterdir()) == before
    assert query.MAX_M > 0


def test_reader_ids_are_searched_in_the_arrays_own_type(monkeypatch):
    """A Python int makes numpy cast a whole int32 array to int64 before searching it (14 ms a
    lookup over xl's 11.5 M ratings by reader); ids outside int32 sort before or after all."""
    import engine.query
    from engine.query import find

    ids = np.array([3, 5, 5, 9], dtype=np.int32)
    real = np.searchsorted
    seen = []

    def checked(a, v, side="left"):
        seen.append(type(v))
        return real(a, v, side)

    monkeypatch.setattr(engine.query.np, "searchsorted", checked)
    assert find(ids, 5) == 1 and find(ids, 5, "right") == 3 and find(ids, 10) == 4
    assert find(ids, -(2**40)) == 0 and find(ids, 2**40) == 4
    assert seen == [np.int32] * 3
