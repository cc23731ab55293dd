"""`--vocab` on the LLM paths: the Batch API sends the user's labels too, and labels a reply gives
outside the vocabulary are dropped (live and Batch API alike), never stored as if allowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import db
from engine.enrich import prompt, run, vocab
from engine.enrich.align import align, empty_reason
from engine.enrich.llm import request_body
from tests.fake_openai import FakeOpenAI
from tests.test_enrich_llm import enriched, expected, failures, llm_settings, make_db

# The fake server answers genre = the genre word in the title, tone "Dark" or "Uplifting",
# audience "Adults", theme/category free words (tests/fake_openai.labels_for).
SHELVES = """
[genre]
mystery = "whodunits, spelled in lower case on purpose"
"Science   Fiction" = "space and the future"

[tone]
Dark = ""

[audience]
adults = "grown-up readers"
"""


def shelves(tmp_path: Path) -> Path:
    path = tmp_path / "shelves.toml"
    path.write_text(SHELVES, encoding="utf-8")
    return path


def test_align_keeps_only_vocabulary_labels_matched_case_and_space_blind(tmp_path: Path) -> None:
    v = vocab.load_vocab(shelves(tmp_path))
    reply = {
        "id": "1",
        "summary": "s",
        "genre": ["  MYSTERY. ", "science fiction", "Sci-Fi", "Mystery"],
        "category": ["Whatever"],
        "theme": ["anything"],
        "tone": ["dark"],
        "audience": ["Adults", "Kids"],
    }
    found = align(["1"], [reply], v)
    labels = found.complete["1"]
    assert labels.genre == ["mystery", "Science Fiction"]  # the file's spelling, once each
    assert labels.tone == ["Dark"] and labels.audience == ["adults"]
    assert labels.category == ["Whatever"] and labels.theme == ["Anything"]  # default fields: free
    assert found.outside == {"1": {"genre": ["Sci-Fi"], "audience": ["Kids"]}}
    assert found.n_outside() == 2
    # a field left with no allowed label is empty: the book is incomplete
    only_outside = align(["1"], [{**reply, "genre": ["Romance"]}], v)
    assert only_outside.incomplete["1"][1] == ["genre"]
    assert "outside the vocabulary dropped: genre" in empty_reason(2, ["genre"], ["genre"])
    assert empty_reason(2, ["theme"], ["genre"]) == "empty in reply after 2 asks"
    # without a user's vocabulary (free labels) nothing is dropped
    free = align(["1"], [{**reply, "genre": ["Romance"]}])
    assert free.complete["1"].genre == ["Romance"] and free.outside == {}
    assert align(["1"], [reply], vocab.DEFAULT).complete["1"].genre[-1] == "Sci-Fi"


def test_live_path_stores_only_vocabulary_labels(tmp_path: Path) -> None:
    path = shelves(tmp_path)
    con = make_db(tmp_path / "live.duckdb", 12)
    with FakeOpenAI() as server:
        res = run(con, llm_settings(server, vocab=str(path)))
    assert res.stats.done == 12 and res.stats.outside_vocab > 0
    assert failures(con).is_empty()
    _check(con, path)


def _check(con, path: Path) -> None:
    titles = dict(db.fetch(con, "SELECT isbn, title FROM books").iter_rows())
    rows = enriched(con)
    assert rows.height == 12
    for row in rows.iter_rows(named=True):
        title = titles[row["isbn"]]
        free = expected(title)
        assert set(row["genre"]) <= {"mystery", "Science Fiction"}, row
        assert set(row["tone"]) <= {"Dark"} and row["audience"] == ["adults"], row
        assert row["theme"] == free["theme"] and row["category"] == free["category"]
        if "Mystery" in title:
            assert row["genre"] == ["mystery"]
        elif "Science Fiction" in title:
            assert row["genre"] == ["Science Fiction"]
        else:  # "Romance", "Fantasy", ...: outside the vocabulary -> the empty-field path
            assert row["genre"] == [] and "genre" in row["empty_fields"], row
            assert "labels outside the vocabulary dropped: genre" in row["empty_reason"], row
        if free["tone"] == ["Dark"]:
            assert row["tone"] == ["Dark"]
        else:
            assert row["tone"] == [] and "tone" in row["empty_fields"]
    assert set(rows["prompt_version"]) == {prompt.version(vocab.load_vocab(path))}


def batch_settings(server: FakeOpenAI, **kw: object):
    return llm_settings(server, batch_api=True, batch_poll_interval=0.0, **kw)


def test_batch_api_sends_the_users_vocabulary(tmp_path: Path) -> None:
    path = shelves(tmp_path)
    v = vocab.load_vocab(path)
    con = make_db(tmp_path / "batch.duckdb", 12)
    with FakeOpenAI() as server:
        res = run(con, batch_settings(server, vocab=str(path), max_attempts=1))
        upload = next(f for f in server.files.values() if f["purpose"] == "batch")
        assert server.log == []  # max_attempts 1: nothing goes live
    lines = [json.loads(x) for x in upload["data"].splitlines()]
    system = lines[0]["body"]["messages"][0]["content"]
    assert "allowed_labels" in system and '"Science Fiction":"space and the future"' in system
    books = db.fetch(con, "SELECT isbn, title, author, year, publisher FROM books ORDER BY isbn")
    refs = [prompt.BookRef(*r) for r in books.iter_rows()]
    first = [(str(n + 1), b) for n, b in enumerate(refs[:8])]
    # the live path's request, vocabulary included
    assert lines[0]["body"] == request_body(
        "gpt-4o-mini", prompt.build_messages(first, v), "json_schema", prompt.max_tokens(8), 0.0
    )
    assert res.prompt_version == prompt.version(v) != prompt.PROMPT_VERSION
    assert res.stats.outside_vocab > 0
    _check(con, path)  # filtered in the batch results too, stored with the reason (no ask left)
    assert all("after 1 asks" in r for r in enriched(con)["empty_reason"].drop_nulls().to_list())


@pytest.mark.parametrize("retry", ["live", "next-run"])
def test_batch_api_filters_replies_then_retries_as_configured(tmp_path: Path, retry: str) -> None:
    path = shelves(tmp_path)
    con = make_db(tmp_path / f"{retry}.duckdb", 12)
    with FakeOpenAI() as server:
        res = run(con, batch_settings(server, vocab=str(path), batch_retry=retry))
        live = list(server.log)
    if retry == "live":
        # books whose genre/tone were outside the vocabulary are asked again live, then stored
        assert live and all("allowed_labels" in r.system for r in live)
        assert res.stats.done == 12 and failures(con).is_empty()
        _check(con, path)
    else:
        assert live == []
        bad = failures(con)
        assert bad.height > 0 and all(
            "outside the vocabulary dropped" in r for r in bad["reason"].to_list()
        )
        stored = enriched(con)
        assert stored.height + bad.height == 12
        assert all(set(g) <= {"mystery", "Science Fiction"} for g in stored["genre"])
