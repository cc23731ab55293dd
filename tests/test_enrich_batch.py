"""`bookrec enrich --batch-api` against the fake server's Files and Batches API (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from engine import db
from engine.cli import main
from engine.enrich import prompt, run
from engine.enrich.llm import request_body
from engine.errors import ConfigError, ProviderError
from tests.fake_openai import FakeOpenAI
from tests.test_enrich_llm import KEY, enriched, expected, failures, llm_settings, make_db


class Killed(Exception):
    pass


def batch_settings(server: FakeOpenAI, **kw: object):
    return llm_settings(server, batch_api=True, batch_poll_interval=0.0, **kw)


def titles(con) -> dict[str, str]:
    return dict(db.fetch(con, "SELECT isbn, title FROM books").iter_rows())


def assert_labels_are_the_books_own(con) -> None:
    names = titles(con)
    for row in enriched(con).iter_rows(named=True):
        want = expected(names[row["isbn"]])
        assert {f: row[f] for f in want} == want, row["isbn"]


def batches(con) -> pl.DataFrame:
    return db.query(con, "batch_list")


def isbn(i: int) -> str:
    return f"{i:09d}X"


def test_happy_path_one_batch_same_requests_as_live_half_price(tmp_path: Path) -> None:
    con = make_db(tmp_path / "db.duckdb", 20)
    with FakeOpenAI() as server:
        result = run(
            con, batch_settings(server, price_input_per_mtok=1.0, price_output_per_mtok=2.0)
        )
        assert server.log == []  # no live chat request
        assert server.count("upload") == 1 and server.count("create") == 1
        upload = next(f for f in server.files.values() if f["purpose"] == "batch")
    lines = [json.loads(x) for x in upload["data"].splitlines()]
    assert len(lines) == 3 and [ln["url"] for ln in lines] == ["/v1/chat/completions"] * 3
    books = db.fetch(con, "SELECT isbn, title, author, year, publisher FROM books ORDER BY isbn")
    refs = [prompt.BookRef(*r) for r in books.iter_rows()]
    first = [(str(n + 1), b) for n, b in enumerate(refs[:8])]
    # byte for byte the live path's request body (prompt, structured output, max_tokens)
    assert lines[0]["body"] == request_body(
        "gpt-4o-mini", prompt.build_messages(first), "json_schema", prompt.max_tokens(8), 0.0
    )
    assert lines[0]["custom_id"] == f"{isbn(0)}+8" and lines[2]["custom_id"] == f"{isbn(16)}+4"

    ok = enriched(con)
    assert ok.height == 20 and set(ok["source"]) == {"openai:gpt-4o-mini"}
    assert_labels_are_the_books_own(con)  # matched by custom_id + id although lines came shuffled
    assert failures(con).is_empty()
    b = batches(con)
    assert b["status"].to_list() == ["completed"] and b["processed"].to_list() == [True]
    assert b["n_requests"].to_list() == [3] and b["n_books"].to_list() == [20]
    req = db.fetch(con, "SELECT * FROM enrichment_requests ORDER BY request_no")
    assert req.height == 3 and set(req["batch_id"]) == {b["batch_id"][0]}
    half = (req["prompt_tokens"] * 1.0 + req["completion_tokens"] * 2.0) / 1e6 * 0.5
    assert req["cost_usd"].to_list() == pytest.approx(half.to_list())
    assert result.stats.cost_usd == pytest.approx(req["cost_usd"].sum())
    assert result.batch["submitted"] == 1 and result.batch["lines_ok"] == 3
    stored = str(b.to_dicts()) + str(req.to_dicts())
    assert KEY not in stored


def test_requests_are_split_by_count_and_by_file_size(tmp_path: Path) -> None:
    con = make_db(tmp_path / "db.duckdb", 40)
    with FakeOpenAI() as server:
        run(con, batch_settings(server, batch_size=4, batch_max_requests=3))
        sizes = [
            len(f["data"].splitlines()) for f in server.files.values() if f["purpose"] == "batch"
        ]
    assert sizes == [3, 3, 3, 1] and enriched(con).height == 40

    con2 = make_db(tmp_path / "db2.duckdb", 40)
    with FakeOpenAI() as server:
        run(con2, batch_settings(server, batch_size=4, batch_max_bytes=4_000))
        files = [f for f in server.files.values() if f["purpose"] == "batch"]
    assert len(files) > 2 and all(f["bytes"] <= 4_000 for f in files)
    assert sum(len(f["data"].splitlines()) for f in files) == 10 and enriched(con2).height == 40

    con3 = make_db(tmp_path / "db3.duckdb", 8)
    with FakeOpenAI() as server:
        with pytest.raises(ConfigError, match="more than batch_max_bytes"):
            run(con3, batch_settings(server, batch_max_bytes=500))
        assert server.calls == []


def test_a_killed_run_resumes_polling_and_never_resubmits(tmp_path: Path) -> None:
    con = make_db(tmp_path / "db.duckdb", 20)

    def kill_on_first_poll(kind: str, info: dict) -> None:
        if kind == "polled":
            raise Killed

    with FakeOpenAI(batch_polls=3) as server:
        with pytest.raises(Killed):
            run(con, batch_settings(server), on_batch_event=kill_on_first_poll)
        row = batches(con).row(0, named=True)
        assert row["batch_id"] == "batch_0001" and not row["processed"]
        assert enriched(con).is_empty()
        result = run(con, batch_settings(server))
        assert server.count("upload") == 1 and server.count("create") == 1  # not resubmitted
        assert server.count("retrieve") == 3 and server.log == []
    assert result.batch["resumed"] == 1 and result.batch["submitted"] == 0
    assert enriched(con).height == 20
    assert db.fetch(con, "SELECT count(*) AS n FROM enrichment_requests").item() == 3  # paid once
    assert_labels_are_the_books_own(con)


def test_a_kill_between_creating_and_recording_finds_the_batch_again(tmp_path: Path) -> None:
    con = make_db(tmp_path / "db.duckdb", 12)

    def kill_after_create(kind: str, info: dict) -> None:
        if kind == "created":
            raise Killed

    with FakeOpenAI() as server:
        with pytest.raises(Killed):
            run(con, batch_settings(server), on_batch_event=kill_after_create)
        assert batches(con)["batch_id"].to_list() == [None]  # the id never reached the database
        run(con, batch_settings(server))
        assert server.count("create") == 1 and server.count("list") == 1
    assert batches(con)["batch_id"].to_list() == ["batch_0001"] and enriched(con).height == 12


def test_an_expired_batch_resubmits_only_the_books_it_never_ran(tmp_path: Path) -> None:
    con = make_db(tmp_path / "db.duckdb", 32)
    with FakeOpenAI(batch_script=["expired", None]) as server:
        result = run(con, batch_settings(server, batch_size=4))
        assert server.log == []  # expired work goes to a new batch, not live
        second = server.batch_isbns("batch_0002")
    # 8 requests: the first 4 answered, 3 batch_expired error lines, the last one missing
    assert second == [isbn(i) for i in range(16, 32)]
    assert batches(con)["status"].to_list() == ["expired", "completed"]
    assert result.batch["expired"] == 1 and result.batch["resubmitted"] == 16
    assert enriched(con).height == 32 and failures(con).is_empty()
    assert_labels_are_the_books_own(con)


def live_leftovers() -> set[str]:
    # 5 requests of 4: line 0 missing, line 1 an error line, line 2's reply drops its last book,
    # line 3's reply leaves theme/tone empty for its first book.
    return {isbn(i) for i in range(8)} | {isbn(11), isbn(12)}


def test_partial_output_is_retried_live_with_the_live_rules(tmp_path: Path) -> None:
    con = make_db(tmp_path / "db.duckdb", 20)
    with FakeOpenAI(batch_script=["partial"]) as server:
        result = run(con, batch_settings(server, batch_size=4))
        live = server.requested_isbns()
    assert set(live) == live_leftovers() and len(live) == 10  # each asked live once, nothing else
    ok = enriched(con)
    assert ok.height == 20 and failures(con).is_empty()
    assert ok.filter(pl.col("empty_fields").is_not_null()).is_empty()
    assert_labels_are_the_books_own(con)  # the empty fields of book 12 were filled live
    b = result.batch
    assert (b["lines_ok"], b["lines_failed"], b["lines_missing"], b["retried_live"]) == (
        3,
        1,
        1,
        10,
    )
    req = db.fetch(con, "SELECT * FROM enrichment_requests ORDER BY request_no")
    assert req.filter(pl.col("batch_id").is_not_null()).height == 4  # 3 answers + 1 error line
    assert req.filter(pl.col("batch_id").is_null()).height == len(server.log)
    assert req["request_no"].n_unique() == req.height


def test_partial_output_left_for_the_next_run(tmp_path: Path) -> None:
    con = make_db(tmp_path / "db.duckdb", 20)
    with FakeOpenAI(batch_script=["partial", None]) as server:
        result = run(con, batch_settings(server, batch_size=4, batch_retry="next-run"))
        assert server.log == []
        failed = failures(con)
        assert set(failed["isbn"]) == live_leftovers() and result.batch["left_for_next_run"] == 10
        reasons = dict(failed.select("isbn", "reason").iter_rows())
        assert "missing from the batch output" in reasons[isbn(0)]
        assert "HTTP 500" in reasons[isbn(4)]
        assert "missing from 1 replies" in reasons[isbn(11)]
        assert "empty in reply: theme, tone" in reasons[isbn(12)]
        assert enriched(con).height == 10
        run(con, batch_settings(server, batch_size=4, batch_retry="next-run"))
        assert set(server.batch_isbns("batch_0002")) == live_leftovers()
        assert server.log == []
    assert enriched(con).height == 20 and failures(con).is_empty()
    assert_labels_are_the_books_own(con)


def test_a_failed_batch_records_its_reason_for_every_book(tmp_path: Path) -> None:
    con = make_db(tmp_path / "db.duckdb", 10)
    with FakeOpenAI(batch_script=["failed"]) as server:
        result = run(con, batch_settings(server))
        assert server.log == []
    failed = failures(con)
    assert failed.height == 10 and enriched(con).is_empty()
    assert set(failed["reason"]) == {"batch failed: model_not_found: The model is not available"}
    assert batches(con)["status"].to_list() == ["failed"] and result.batch["failed"] == 1


def test_dry_run_estimates_at_the_batch_price_and_sends_nothing(tmp_path: Path) -> None:
    con = make_db(tmp_path / "db.duckdb", 20)
    with FakeOpenAI() as server:
        live = run(con, llm_settings(server, dry_run=True))
        result = run(con, batch_settings(server, dry_run=True, batch_max_requests=2))
        assert server.calls == [] and server.log == []
    assert result.est_requests == live.est_requests == 3 and result.est_batches == 2
    assert result.est_cost_usd == pytest.approx(live.est_cost_usd * 0.5) and result.est_cost_usd > 0
    assert batches(con).is_empty() and enriched(con).is_empty()


def test_a_server_without_the_batch_api_gets_one_line_and_live_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "db.duckdb"
    make_db(path, 12).close()
    with FakeOpenAI(batches_supported=False) as server:  # like vLLM / llama.cpp's chat server
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("BOOKREC_ENRICH_BATCH_POLL_INTERVAL", "0")
        assert main(["enrich", "--db", str(path), "--batch-api"]) == ProviderError.exit_code
        err = capsys.readouterr().err
        errors = [ln for ln in err.splitlines() if ln.startswith("bookrec: error:")]
        assert len(errors) == 1 and "no Batch API" in errors[0] and "Drop --batch-api" in errors[0]
        assert "Traceback" not in err
        assert main(["enrich", "--db", str(path)]) == 0  # the live path through OPENAI_BASE_URL
        assert len(server.ok_requests()) == 2
    con = db.connect(path)
    assert enriched(con).height == 12 and batches(con).is_empty()


def test_cli_batch_api_reports_and_dry_run_says_the_price_is_configurable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "db.duckdb"
    make_db(path, 20).close()
    with FakeOpenAI(batch_script=["expired"]) as server:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("BOOKREC_ENRICH_BATCH_POLL_INTERVAL", "0")
        assert main(["enrich", "--db", str(path), "--batch-api", "--dry-run"]) == 0
        assert server.calls == []
        assert main(["enrich", "--db", str(path), "--batch-api"]) == 0
    out = capsys.readouterr().out
    assert "in 1 Batch API batches" in out and "batch_price_factor" in out
    assert "20 enriched, 0 failed" in out and "1 expired (4 books resubmitted)" in out
    assert KEY not in out


def test_batch_api_needs_the_openai_provider(tmp_path: Path) -> None:
    con = make_db(tmp_path / "db.duckdb", 4)
    from engine.enrich import EnrichSettings

    with pytest.raises(ConfigError, match="--batch-api needs the openai provider"):
        run(con, EnrichSettings(provider="zero-shot", batch_api=True))
