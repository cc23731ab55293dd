"""`bookrec enrich` end to end through the CLI entry point (fake server, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import db
from engine.cli import main
from tests.fake_openai import FakeOpenAI
from tests.test_enrich_llm import KEY, make_db


@pytest.fixture()
def book_db(tmp_path: Path) -> Path:
    path = tmp_path / "cli.duckdb"
    make_db(path, 20).close()
    return path


def test_cli_dry_run_prints_estimate_and_sends_nothing(
    book_db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeOpenAI() as server:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        assert main(["enrich", "--db", str(book_db), "--dry-run", "--batch-size", "4"]) == 0
        assert server.log == []
    out = capsys.readouterr().out
    assert "dry run" in out and "~5 requests" in out and "$" in out and KEY not in out


def test_cli_enriches_resumes_and_reports(
    book_db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAI(script=["500"]) as server:
        args = ["enrich", "--db", str(book_db), "--base-url", server.base_url, "--limit", "12"]
        assert main(args) == 0
        assert main(["enrich", "--db", str(book_db), "--base-url", server.base_url]) == 0
        assert main(["enrich", "--db", str(book_db), "--base-url", server.base_url]) == 0
        assert len(set(server.requested_isbns())) == 20
    out = capsys.readouterr()
    assert (
        "12 enriched, 0 failed" in out.out
        and "8 enriched" in out.out
        and "up to date (20 books" in out.out
    )
    assert KEY not in out.out + out.err
    con = db.connect(book_db)
    assert db.fetch(con, "SELECT count(*) FROM book_enrichment").item() == 20
    assert db.query(con, "stage_last_run", {"stage": "enrich"}).height == 1


def test_cli_bad_key_is_one_line_without_traceback(
    book_db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAI(fault_for=lambda _n, _t: "401") as server:
        code = main(["enrich", "--db", str(book_db), "--base-url", server.base_url])
    err = capsys.readouterr().err
    assert code == 6 and "Traceback" not in err and KEY not in err
    last = err.strip().splitlines()[-1]  # (above it, at most the progress bar's last frame)
    assert last.startswith("bookrec: error:") and "HTTP 401" in last and err.count("error") == 1


def test_cli_openai_without_key_or_url_is_a_config_error(
    book_db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert main(["enrich", "--db", str(book_db), "--provider", "openai"]) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err


def test_kill_9_mid_run_loses_only_in_flight_batches(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    n = 120
    path = tmp_path / "kill.duckdb"
    make_db(path, n).close()
    with FakeOpenAI(latency=0.15) as server:
        env = {**os.environ, "OPENAI_API_KEY": KEY, "BOOKREC_ENRICH_CONCURRENCY": "2"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine.cli",
                "enrich",
                "--db",
                str(path),
                "--base-url",
                server.base_url,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while len(server.ok_requests()) < 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        con = db.connect(path)  # DuckDB replays its WAL: committed batches survive
        committed = set(db.fetch(con, "SELECT isbn FROM book_enrichment")["isbn"])
        assert 8 <= len(committed) < n and len(committed) % 8 == 0
        asked_before = len(server.log)
        server.log.clear()
        from engine.enrich import EnrichSettings, run

        run(con, EnrichSettings(provider="openai", base_url=server.base_url, api_key=KEY))
        again = server.requested_isbns()
    assert committed.isdisjoint(again) and len(again) == n - len(committed)
    assert asked_before * 8 - len(committed) <= 2 * 8  # lost: at most the 2 batches in flight
    rows = db.fetch(con, "SELECT isbn FROM book_enrichment")
    assert rows.height == n and rows["isbn"].n_unique() == n
