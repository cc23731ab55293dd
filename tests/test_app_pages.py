"""Dashboard pages: layouts and callbacks called as plain functions, query-string parsing, layering."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from typing import Any

import dash
import pytest
from app_fixtures import ODD_TITLE, USER_WITHOUT_RATINGS, build_app_db, isbn_of

from app import params

BAD_TEXT = [
    "'; DROP TABLE books; --",
    "<script>alert(1)</script>",
    "Ünïcødé ✓ 📚",
    "%_\\",
    " " * 5,
    "9" * 30,
]


def text_of(component: Any) -> str:
    """All the text a component tree would render (Dash components serialise to JSON)."""
    from plotly.utils import PlotlyJSONEncoder

    return json.dumps(component, cls=PlotlyJSONEncoder, ensure_ascii=False)


@pytest.fixture(scope="module")
def pages(app_db):
    from app.main import create_app

    create_app(app_db)
    return {
        name: importlib.import_module(f"pages.{name}")
        for name in ("overview", "browse", "reader", "similar", "metadata", "models")
    }


def test_every_layout_renders_with_and_without_query(pages):
    for name, module in pages.items():
        assert "page-title" in text_of(module.layout()), name
        bad = {
            k: "'; DROP TABLE books; --"
            for k in ("user", "isbn", "model", "genre", "q", "y0", "m", "page", "a", "run")
        }
        assert "page-title" in text_of(module.layout(**bad)), name


def test_overview_numbers_and_figures(pages):
    text = text_of(pages["overview"].layout())
    assert "Ratings: implicit vs explicit" in text and "Long tail per book" in text
    assert "rating out of range" in text and "ingest-fixture" in text


def test_browse_filters_change_the_table(pages):
    render = pages["browse"].render
    years = [1980, 2004]
    body, count, n_pages, page, url = render("", [], [], [], [], [], years, 0, 50, None, 1)
    assert count.startswith("36 books") and n_pages == 2 and url == ""
    body, count, n_pages, page, url = render(
        "", ["Romance"], [], [], [], ["Adult"], years, 0, 50, None, 1
    )
    assert (
        count.startswith("6 books")
        and "Romance Book 00" in text_of(body)
        and "Mystery Book" not in text_of(body)
    )
    assert url == "?genre=Romance&audience=Adult"
    body, count, *_ = render(
        "", [], [], [], [], [], [1995, 2004], 5, 10, {"sort": "title", "desc": False}, 1
    )
    assert "y0=1995" in _[-1] and "min=5" in _[-1] and "sort=title" in _[-1] and "m=10" in _[-1]
    for bad in BAD_TEXT:
        body, count, *_ = render(
            bad, [], [], [], [], [], years, "x'--", "nan", {"sort": "'; DROP", "desc": 1}, "z"
        )
        assert " book" in count, bad
        if bad not in ODD_TITLE:
            assert "No books match" in text_of(body) or bad.strip() == ""


def test_browse_sort_header_toggles(pages):
    next_sort = pages["browse"].next_sort
    assert next_sort("title", {"sort": "score", "desc": True}) == {"sort": "title", "desc": False}
    assert next_sort("year", None) == {"sort": "year", "desc": True}
    assert next_sort("year", {"sort": "year", "desc": True}) == {"sort": "year", "desc": False}
    assert next_sort("'; DROP", None) is None


def test_browse_query_string_round_trip(pages):
    module = pages["browse"]
    q = module.query_from(
        {
            "q": "x",
            "genre": ["A", "B"],
            "years": [1990, 2000],
            "min": "3",
            "m": "20",
            "sort": "year",
            "desc": False,
            "page": "2",
        },
        (1980, 2004),
    )
    assert (
        module.search_of(q)
        == "?q=x&genre=A&genre=B&y0=1990&y1=2000&min=3&m=20&sort=year&desc=0&page=2"
    )
    assert module.query_from({"years": [1980, 2004]}, (1980, 2004)).year_min is None


def test_reader_shows_recommendations_with_reasons(pages):
    profile, recs, history, url = pages["reader"].render("1", "lightgcn", None, None, None)
    assert "Reader 1" in text_of(profile) and "Because you rated" in text_of(recs)
    assert "Mystery Book 00" in text_of(history) and url == "?user=1&model=lightgcn"
    assert "Romance Book" not in text_of(recs).split("Science Fiction")[0]


@pytest.mark.parametrize("value", ["123456789", str(USER_WITHOUT_RATINGS), *BAD_TEXT])
def test_reader_bad_or_unknown_ids_are_friendly(pages, value):
    profile, recs, history, _ = pages["reader"].render(value, "lightgcn", ["Romance"], None, None)
    text = text_of([profile, recs])
    if value.strip() == "":
        assert "New reader" in text
    elif value.isdigit() and len(value) < 10:
        assert "popular books" in text.lower()
    else:
        assert "is not a reader id" in text
    if value != str(USER_WITHOUT_RATINGS):
        assert "Romance" in text and "Mystery Book" not in text


def test_reader_type_ahead_options(pages):
    options = pages["reader"].reader_options
    opts, hint = options("1", None)
    assert [o["value"] for o in opts][:3] == ["1", "10", "11"] and hint == ""
    assert options("'; DROP", "3") == (
        [{"label": "3", "value": "3"}],
        params.reader_id("'; DROP")[1],
    )
    opts, hint = options("987654", "1")
    assert [o["value"] for o in opts] == ["987654", "1"] and "No reader 987654" in hint
    assert options("", "12") == ([{"label": "12", "value": "12"}], "")


def test_similar_shows_neighbours_and_shared_facets(pages):
    info, collab, content, url = pages["similar"].render(isbn_of(2, 1), "lightgcn")
    assert "Science Fiction Book 01" in text_of(info) and "shares Science Fiction" in text_of(
        collab
    )
    assert (
        "Science Fiction Book" in text_of(content)
        and url == f"?isbn={isbn_of(2, 1)}&model=lightgcn"
    )
    for bad in BAD_TEXT + ["0000000NOPE"]:
        info, collab, content, _ = pages["similar"].render(bad, "lightgcn")
        assert ("No book with ISBN" in text_of(info)) or bad.strip() == "", bad


def test_similar_type_ahead_options(pages):
    options = pages["similar"].book_options
    assert options("science fiction book 0", None)[0][0]["value"] == isbn_of(2, 0)
    assert options(isbn_of(1, 2), None)[0][0]["label"].endswith(isbn_of(1, 2))
    assert options("zzzz-nothing", None) == (
        [],
        "No book matches “zzzz-nothing”: try part of a title or an author's name.",
    )
    assert options("'; DROP TABLE", None)[0][0]["label"].startswith(ODD_TITLE)
    assert (
        options("x", None)[1].startswith("Type at least two letters")
        and options("x", None)[0] is dash.no_update
    )


def test_metadata_and_models_callbacks(pages):
    heat, surface, sizes, labels, url = pages["metadata"].render(
        "genre", "tone", "genre", "audience", "tone", "genre"
    )
    assert (
        heat.data[0].type == "heatmap"
        and surface.data[0].type == "surface"
        and len(labels) == 6
        and url == ""
    )
    *_, url = pages["metadata"].render("tone", "'; DROP", None, None, None, "audience")
    assert url == "?a=tone&f=audience"
    curves, compare, url = pages["models"].render(
        ["lightgcn-fixture", "nope"], "lightgcn-fixture", "lightgcn-old"
    )
    assert (
        len(curves.data) >= 2
        and "params.lr" in text_of(compare)
        and url.startswith("?run=lightgcn-fixture&a=")
    )
    text = text_of(pages["models"].layout())
    assert "Recall@20" in text and "HR@10 (sampled)" in text


def test_models_page_shows_tuning_trials_and_importance(pages):
    from app_fixtures import TUNE_ID

    text = text_of(pages["models"].layout(tune=TUNE_ID))
    assert "Tuning" in text and "itemknn · recall@20 · 6 trials · best 0.2900" in text
    trials, importance, best = pages["models"].render_tuning(TUNE_ID)
    dots, best_line, pruned = trials.data
    assert list(dots.x) == [0, 1, 3, 4, 5] and list(best_line.y) == [0.21, 0.25, 0.25, 0.29, 0.29]
    assert list(pruned.x) == [2]
    assert list(importance.data[0].y) == ["shrink", "neighbours"]  # largest on top
    shown = text_of(best)
    assert "150" in shown and "--tuned" in shown and "validation part only" in shown
    for bad in ("nope", "'; DROP TABLE tuning_runs; --", None):
        _, _, msg = pages["models"].render_tuning(bad)
        assert "Pick a study" in text_of(msg)


def test_pages_say_what_to_run_when_stages_are_missing(tmp_path):
    path = build_app_db(tmp_path / "bare.duckdb", with_models=False, with_facets=False)
    code = (
        f"import importlib, json; from app.main import create_app; create_app({str(path)!r});"
        "out = {n: json.dumps(importlib.import_module('pages.' + n).layout(), default=str) "
        "for n in ('browse', 'reader', 'similar', 'metadata', 'models')};"
        "r = importlib.import_module('pages.reader').render('1', None, None, None, None);"
        f"s = importlib.import_module('pages.similar').render({isbn_of(0, 1)!r}, None);"
        "out['reader_cb'] = json.dumps(r, default=str); out['similar_cb'] = json.dumps(s, default=str);"
        "print(json.dumps(out))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "bookrec facets" in out["browse"] and "bookrec facets" in out["metadata"]
    assert "bookrec train" in out["models"] and "bookrec train" in out["reader_cb"]
    assert "bookrec content" in out["similar_cb"] and "bookrec train" in out["similar_cb"]


def test_params_parsing():
    assert params.reader_id(" 42 ") == (42, None)
    assert params.reader_id("") == (None, None)
    assert (
        params.reader_id("4" * 11)[1] and params.reader_id("-1")[1] and params.reader_id("1.5")[1]
    )
    assert (
        params.to_int("12abc", 3) == 3
        and params.to_int("7", lo=0, hi=5) is None
        and params.to_int("2.0") == 2
    )
    assert (
        params.to_float("nan", 50.0, lo=0, hi=10) == 50.0
        and params.to_float("1e9", 1.0, lo=0, hi=10) == 10
    )
    assert params.many(["a", " ", None, "b"]) == ["a", "b"] and params.many("x") == ["x"]
    assert params.search({"a": [1, 2], "b": None, "c": "x y&z"}) == "?a=1&a=2&c=x+y%26z"


def test_layering_rules():
    """engine never imports dash/plotly (even the serve command); the app never imports torch."""
    code = (
        "import sys, pkgutil, importlib, engine;"
        "import engine.cli, engine.query, engine.commands.serve;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dash', 'plotly', 'app'));"
        "assert not bad, bad;"
        "import app.main, app.data;"
        "assert 'torch' not in sys.modules, 'app imported torch';"
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    direct = re.compile(r"^\s*(from|import) (engine|duckdb)\b", re.MULTILINE)
    for path in (root / "app").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import) torch\b", text, re.MULTILINE), path
        # the dashboard reads data only through app.data (report.py is the static `bookrec report`)
        if path.name not in ("data.py", "report.py"):
            assert not direct.search(text), f"{path} bypasses app.data"


def test_serve_command_errors_are_one_line(tmp_path, capsys):
    import socket

    from engine.cli import main

    assert main(["serve", "--db", str(tmp_path / "missing.duckdb"), "--port", "8059"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "database not found" in err[0]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--db", str(tmp_path / "x.duckdb"), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot listen on 127.0.0.1:{port}" in err[0]


def test_2d_pages_get_the_cartesian_plotly_bundle(app_db, monkeypatch):
    """/_bookrec/plotly-2d.js serves the vendored cartesian bundle when it matches the installed
    plotly.js, and redirects to Dash's full bundle when it does not."""
    import plotly.offline

    from app.main import PLOTLY_2D, PLOTLY_FULL, bundle_version, create_app

    assert bundle_version(PLOTLY_2D) is not None
    monkeypatch.setattr(plotly.offline, "get_plotlyjs_version", lambda: bundle_version(PLOTLY_2D))
    client = create_app(app_db).server.test_client()
    got = client.get("/_bookrec/plotly-2d.js")
    assert got.status_code == 200 and got.mimetype == "text/javascript"
    assert b"plotly.js (cartesian" in got.data[:200] and len(got.data) < 2_500_000
    got.close()
    monkeypatch.setattr(plotly.offline, "get_plotlyjs_version", lambda: "0.0.1")
    client = create_app(app_db).server.test_client()
    got = client.get("/_bookrec/plotly-2d.js")
    assert got.status_code == 302 and got.location.endswith(PLOTLY_FULL)


def test_serve_settings(monkeypatch):
    from engine import config
    from engine.commands.serve import ServeSettings
    from engine.errors import ConfigError

    monkeypatch.setenv("BOOKREC_SERVE_WORKERS", "3")
    settings = config.load_settings(ServeSettings, "serve", {"port": 9000})
    assert (settings.processes, settings.port, settings.threads) == (3, 9000, 4)
    auto = config.load_settings(ServeSettings, "serve", {"workers": 0})
    assert 1 <= auto.processes <= 4
    with pytest.raises(ConfigError):
        config.load_settings(ServeSettings, "serve", {"threads": 0})
    monkeypatch.setenv("BOOKREC_SERVE_PORT", "http")
    with pytest.raises(ConfigError):
        config.load_settings(ServeSettings, "serve", {})


def test_server_gives_each_worker_its_share_of_the_cores():
    from app.server import THREAD_VARS, command, thread_env

    env = thread_env(2, {"PATH": "/bin", "OMP_NUM_THREADS": "7"})
    assert env["OMP_NUM_THREADS"] == "7"  # the user's choice stands
    share = str(max(1, (__import__("os").cpu_count() or 1) // 2))
    assert all(env[v] == share for v in THREAD_VARS if v != "OMP_NUM_THREADS")
    argv = command(__import__("pathlib").Path("x.duckdb"), "0.0.0.0", 8123, 2, 3)
    assert argv[1:3] == ["-m", "app.server"] and argv[-4:] == ["--workers", "2", "--threads", "3"]


def test_a_warm_worker_has_registered_every_script_before_its_first_request(app_db):
    """gunicorn's workers each build the app. Dash registers the script paths it may serve while
    it sets up on a worker's first request; a script request racing that setup in another thread
    got a 500 ("the path requested is not valid") and left the browser on "Loading...". A warm
    app (what `bookrec serve` builds) has registered them all before it accepts a connection."""
    from app.main import create_app

    cold = create_app(app_db)
    assert not any(cold.registered_paths.values())  # nothing until a first request
    warm = create_app(app_db, warm=True)
    index = cold.server.test_client().get("/").get_data(as_text=True)
    wanted = re.findall(r'<script src="/_dash-component-suites/([^/]+)/([^"?]+)', index)
    assert len(wanted) > 5
    for package, path in wanted:
        plain = re.sub(r"\.v[0-9_]+m[0-9]+", "", path)  # the URL carries a version fingerprint
        assert plain in warm.registered_paths[package], (package, plain)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "example.org"])
def test_debug_is_refused_off_loopback(tmp_path, capsys, host):
    """--debug serves Flask's debugger (it runs code sent to it): loopback only, one line."""
    from engine.cli import main

    db_path = build_app_db(tmp_path / "d.duckdb", with_models=False, with_facets=False)
    assert main(["serve", "--db", str(db_path), "--debug", "--host", host]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loopback only" in err[0] and host in err[0]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("", False),
    ],
)
def test_is_loopback(host, loopback):
    from engine.commands.serve import is_loopback

    assert is_loopback(host) is loopback


@pytest.mark.slow
def test_debug_server_starts_and_serves(app_db):
    """`bookrec serve --debug` (the documented development mode) starts, serves the dashboard
    with Dash's dev tools, and answers a callback; it once died on start with a traceback."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = str(__import__("pathlib").Path(sys.executable).with_name("bookrec"))
    proc = subprocess.Popen(
        [exe, "serve", "--db", str(app_db), "--debug", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline, body = time.monotonic() + 60, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.3)
        assert body is not None, (
            f"debug server never answered: {proc.poll()} {proc.stdout.read() if proc.poll() is not None else ''}"
        )
        assert '"ui": true' in body or '"ui":true' in body  # Dash's dev-tools overlay is on
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_dash-layout", timeout=5) as r:
            assert r.status == 200 and b"bookrec" in r.read()
        assert proc.poll() is None
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert "Traceback" not in out, out[-2000:]


def test_footer_shows_the_database_file_name_not_its_path(app_db):
    from app.main import create_app

    app = create_app(app_db)
    layout = text_of(app.layout)
    assert f"database: {app_db.name}" in layout
    assert str(app_db.parent) not in layout
