"""The JSON API (app/api) through real HTTP against a running server on the fixture database.

The dashboard's Flask server (create_app) is served by werkzeug in a thread on a free port; the
token rule is checked on a second server (the API blueprint alone, same Store) and through
`bookrec serve` itself (refuses a non-loopback host without a token; a real gunicorn with one).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from app_fixtures import GENRES, USER_WITHOUT_RATINGS, build_app_db, genre_of_user, isbn_of

REPO = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token"


def call(
    base: str,
    path: str,
    *,
    method: str = "GET",
    body: object = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
    headers: dict | None = None,
):
    """(status, parsed JSON or text, headers) of one request."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, text, hdrs = resp.status, resp.read().decode(), resp.headers
    except urllib.error.HTTPError as exc:
        status, text, hdrs = exc.code, exc.read().decode(), exc.headers
    if hdrs.get_content_type() == "application/json":
        return status, json.loads(text), hdrs
    return status, text, hdrs


def _serve(flask_app) -> tuple[str, object]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server


@pytest.fixture(scope="module")
def api_db(tmp_path_factory) -> Path:
    return build_app_db(tmp_path_factory.mktemp("apidb") / "api.duckdb")


@pytest.fixture(scope="module")
def base(api_db):
    from app.main import create_app

    app = create_app(api_db)
    url, server = _serve(app.server)
    yield url
    server.shutdown()


def err(status_body, status: int, code: str | None = None):
    got, body, _ = status_body
    assert got == status, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]["message"]


# ---------------------------------------------------------------- endpoints


def test_health(base):
    status, body, _ = call(base, "/api/v1/health")
    assert status == 200 and body["status"] == "ok" and body["database"] == "api.duckdb"
    models = {r["model"]: r for r in body["runs"]}
    assert set(models) == {"lightgcn", "mf", "ncf", "popularity"}
    assert all(
        r["age_s"] > 0 and r["finished_at"].startswith("2026-01-02") for r in models.values()
    )


def test_reader_recommendations_known_answer(base):
    """A Mystery reader gets unread Mystery books, each with the Mystery book that explains it."""
    status, body, _ = call(base, "/api/v1/readers/3/recommendations?k=5&model=mf")
    assert status == 200 and body["user_id"] == 3 and body["model"] == "mf" and body["k"] == 5
    recs = body["recommendations"]
    assert [r["rank"] for r in recs] == [1, 2, 3, 4, 5]
    assert all(r["source"] == "model" and r["model"] == "mf" for r in recs)
    assert all(r["facets"]["genre"] == [genre_of_user(3)] for r in recs)
    assert all(r["reason"].startswith("because you rated ") and r["because"]["isbn"] for r in recs)
    scores = [r["score"] for r in recs]
    assert scores == sorted(scores, reverse=True)
    # the same books as the dashboard's serving layer (one Store for both)
    from app import data

    want = data.store().recommend("mf", 3, 5)["isbn"].to_list()
    assert [r["isbn"] for r in recs] == want


def test_reader_without_a_model_gets_popularity(base):
    status, body, _ = call(base, f"/api/v1/readers/{USER_WITHOUT_RATINGS}/recommendations?k=3")
    assert status == 200
    assert {r["source"] for r in body["recommendations"]} == {"popularity_fallback"}


def test_exclude_read_false_can_return_read_books(base):
    from app import data

    read = set(data.store().user_ratings(3)["isbn"].to_list())
    _, keep, _ = call(base, "/api/v1/readers/3/recommendations?k=20&model=mf&exclude_read=false")
    _, skip, _ = call(base, "/api/v1/readers/3/recommendations?k=20&model=mf")
    assert read & {r["isbn"] for r in keep["recommendations"]}
    assert not read & {r["isbn"] for r in skip["recommendations"]}


def test_fold_in_from_picked_books(base):
    """A new reader who picked three Romance books gets other Romance books (ridge on LightGCN)."""
    picks = [isbn_of(1, i) for i in range(3)]
    status, body, _ = call(
        base,
        "/api/v1/recommendations",
        method="POST",
        body={"isbns": picks, "k": 6, "model": "lightgcn"},
    )
    assert status == 200, body
    assert body["method"].startswith("ridge") and body["exact"] is False
    assert body["used"] == picks and body["ignored"] == []
    recs = body["recommendations"]
    assert len(recs) == 6 and not {r["isbn"] for r in recs} & set(picks)
    assert all(r["facets"]["genre"] == ["Romance"] and r["source"] == "model" for r in recs)
    assert all(r["because"]["isbn"] in picks for r in recs)


def test_fold_in_ratings_facets_and_unknown_books(base):
    picks = {isbn_of(2, 0): 9, isbn_of(2, 1): 3}
    status, body, _ = call(
        base,
        "/api/v1/recommendations",
        method="POST",
        body={"isbns": ["NOSUCH1"], "ratings": picks, "k": 4, "facets": {"tone": ["Suspenseful"]}},
    )
    assert status == 200, body
    assert body["ignored"] == ["NOSUCH1"] and set(body["used"]) == set(picks)
    assert all(r["facets"]["tone"] == ["Suspenseful"] for r in body["recommendations"])


def test_fold_in_empty_gets_popularity_within_facets(base):
    status, body, _ = call(
        base,
        "/api/v1/recommendations",
        method="POST",
        body={"isbns": [], "k": 5, "facets": {"genre": ["Poetry", "Mystery"]}},
    )
    assert status == 200
    recs = body["recommendations"]
    assert recs and {r["source"] for r in recs} == {"popularity_fallback"}
    assert all(r["facets"]["genre"] == ["Mystery"] for r in recs)
    from app import data

    want = data.store().popular(facets={"genre": ("Mystery",)}, k=5)["isbn"].to_list()
    assert [r["isbn"] for r in recs] == want


@pytest.mark.parametrize("model", ["mf", "ncf", "popularity"])
def test_fold_in_every_fixture_model(base, model):
    status, body, _ = call(
        base,
        "/api/v1/recommendations",
        method="POST",
        body={"isbns": [isbn_of(0, 1)], "k": 3, "model": model},
    )
    assert status == 200 and body["model"] == model and len(body["recommendations"]) == 3


def test_book_similar_browse_facets(base):
    isbn = isbn_of(0, 1)
    status, book, _ = call(base, f"/api/v1/books/{isbn}")
    assert status == 200 and book["isbn"] == isbn and book["facets"]["genre"] == ["Mystery"]
    status, book_lower, _ = call(base, f"/api/v1/books/{isbn.lower()}")
    assert status == 200 and book_lower["isbn"] == isbn
    for by in ("model", "content"):
        status, sim, _ = call(base, f"/api/v1/books/{isbn}/similar?by={by}&k=4")
        assert status == 200 and sim["by"] == by and len(sim["similar"]) == 4
        assert all(
            s["facets"]["genre"] == ["Mystery"] and s["isbn"] != isbn for s in sim["similar"]
        )
    status, page, _ = call(
        base, "/api/v1/books?genre=Romance&sort=title&desc=false&page_size=5&page=2"
    )
    assert status == 200 and page["total"] == 12 and page["page"] == 2 and len(page["books"]) == 5
    titles = [b["title"] for b in page["books"]]
    assert titles == sorted(titles) and all(
        b["facets"]["genre"] == ["Romance"] for b in page["books"]
    )
    status, hits, _ = call(base, "/api/v1/books?q=fiction%20book%2003")
    assert status == 200 and [b["isbn"] for b in hits["books"]] == [isbn_of(2, 3)]
    status, facets, _ = call(base, "/api/v1/facets")
    assert status == 200 and [f["label"] for f in facets["facets"]["genre"]] == sorted(GENRES)


def test_openapi_and_docs(base):
    status, doc, _ = call(base, "/api/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    assert {
        "/recommendations",
        "/readers/{user_id}/recommendations",
        "/books/{isbn}/similar",
        "/books",
        "/books/{isbn}",
        "/facets",
        "/health",
    } <= set(doc["paths"])
    body = doc["paths"]["/recommendations"]["post"]["requestBody"]["content"]["application/json"]
    name = body["schema"]["$ref"].rsplit("/", 1)[1]
    assert doc["components"]["schemas"][name]["properties"]["isbns"]["maxItems"] == 500
    refs = {v["$ref"].rsplit("/", 1)[1] for v in _refs(doc["paths"])}
    assert refs <= set(doc["components"]["schemas"])  # every reference resolves
    status, page, headers = call(base, "/api/v1/docs")
    assert status == 200 and headers.get_content_type() == "text/html"
    assert "/api/v1/recommendations" in page and "http" not in page.split("<body>")[0].replace(
        "http-equiv", ""
    )


def _refs(node):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node
        for v in node.values():
            yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "path,status,code",
    [
        ("/api/v1/readers/abc/recommendations", 400, "bad_user_id"),
        ("/api/v1/readers/-1/recommendations", 400, "bad_user_id"),
        ("/api/v1/readers/99999999999/recommendations", 400, "bad_user_id"),
        ("/api/v1/readers/4242/recommendations", 404, "not_found"),
        ("/api/v1/readers/3/recommendations?k=100000", 422, "invalid_parameter"),
        ("/api/v1/readers/3/recommendations?k=0", 422, "invalid_parameter"),
        ("/api/v1/readers/3/recommendations?k=ten", 422, "invalid_parameter"),
        ("/api/v1/readers/3/recommendations?k=1&k=2", 422, "invalid_parameter"),
        ("/api/v1/readers/3/recommendations?model=nosuch", 404, "not_found"),
        ("/api/v1/readers/3/recommendations?model=%27%3B%20DROP", 422, "invalid_parameter"),
        ("/api/v1/readers/3/recommendations?exclude_read=maybe", 422, "invalid_parameter"),
        ("/api/v1/readers/3/recommendations?surprise=1", 422, "invalid_parameter"),
        ("/api/v1/books/%3Cscript%3E", 400, "bad_isbn"),
        ("/api/v1/books/%00", 400, "bad_isbn"),
        ("/api/v1/books/%F0%9F%93%9A", 400, "bad_isbn"),
        ("/api/v1/books/" + "9" * 30, 400, "bad_isbn"),
        ("/api/v1/books/0000000000", 404, "not_found"),
        ("/api/v1/books/0000000000/similar", 404, "not_found"),
        (f"/api/v1/books/{isbn_of(0, 1)}/similar?by=magic", 422, "invalid_parameter"),
        (f"/api/v1/books/{isbn_of(0, 1)}/similar?k=101", 422, "invalid_parameter"),
        (f"/api/v1/books/{isbn_of(0, 1)}/similar?model=ncf", 404, "not_found"),
        ("/api/v1/books?page=0", 422, "invalid_parameter"),
        ("/api/v1/books?page_size=1000000", 422, "invalid_parameter"),
        ("/api/v1/books?year_min=nineteen", 422, "invalid_parameter"),
        ("/api/v1/books?sort=isbn;drop", 422, "invalid_parameter"),
        ("/api/v1/books?genre=" + "x" * 65, 422, "invalid_parameter"),
        ("/api/v1/books?" + "&".join([f"genre=g{i}" for i in range(30)]), 422, "invalid_parameter"),
        ("/api/v1/nosuch", 404, "not_found"),
    ],
)
def test_bad_input_gets_one_json_error(base, path, status, code):
    err(call(base, path), status, code)


def test_odd_text_in_search_is_literal(base):
    status, body, _ = call(base, "/api/v1/books?q=%27%3B%20DROP%20TABLE%20books%3B%20--")
    assert status == 200 and [b["isbn"] for b in body["books"]] == [isbn_of(0, 11)]


@pytest.mark.parametrize(
    "body,status,code",
    [
        ({"isbns": "0000000010X"}, 422, "invalid_parameter"),
        ({"isbns": [1, 2]}, 422, "invalid_parameter"),
        ({"isbns": ["<b>"]}, 422, "invalid_parameter"),
        ({"isbns": ["0"] * 501}, 422, "invalid_parameter"),
        ({"isbns": [], "k": 101}, 422, "invalid_parameter"),
        ({"isbns": [], "k": "20"}, 422, "invalid_parameter"),
        ({"isbns": [], "k": 2.5}, 422, "invalid_parameter"),
        ({"isbns": [], "model": "nosuch"}, 404, "not_found"),
        ({"isbns": [], "ratings": {"X1": 11}}, 422, "invalid_parameter"),
        ({"isbns": [], "ratings": {"X1": "9"}}, 422, "invalid_parameter"),
        ({"isbns": [], "facets": {"colour": ["red"]}}, 422, "invalid_parameter"),
        ({"isbns": [], "facets": {"genre": "Mystery"}}, 422, "invalid_parameter"),
        ({"isbns": [], "surprise": True}, 422, "invalid_parameter"),
        ([1, 2, 3], 422, "invalid_parameter"),
    ],
)
def test_bad_fold_in_bodies(base, body, status, code):
    err(call(base, "/api/v1/recommendations", method="POST", body=body), status, code)


def test_fold_in_malformed_body_type_and_size(base):
    post = "/api/v1/recommendations"
    err(call(base, post, method="POST", raw=b"{not json"), 400, "malformed_json")
    err(call(base, post, method="POST", raw=b"\xff\xfe"), 400, "malformed_json")
    err(call(base, post, method="POST", raw=b'{"isbns": []}', content_type="text/plain"), 415)
    err(
        call(
            base,
            post,
            method="POST",
            raw=b'{"isbns": []}',
            content_type="application/x-www-form-urlencoded",
        ),
        415,
    )
    err(call(base, post, method="POST", raw=b" " * (300 * 1024)), 413, "too_large")
    err(call(base, post), 405)  # GET on a POST endpoint
    err(call(base, "/api/v1/health", method="POST", body={}), 405)


def test_dashboard_is_still_served(base):
    status, page, _ = call(base, "/")
    assert status == 200 and "<html" in page.lower()


# ---------------------------------------------------------------- the token rule


@pytest.fixture(scope="module")
def guarded(base):
    """A second server: the API alone with a token, over the same process Store."""
    import flask

    from app import api

    app = flask.Flask("guarded")
    api.install(app, TOKEN)
    url, server = _serve(app)
    yield url
    server.shutdown()


def test_token_is_required_when_set(guarded):
    path = "/api/v1/readers/3/recommendations?k=2"
    err(call(guarded, path), 401, "unauthorized")
    err(call(guarded, path, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    err(call(guarded, path, headers={"Authorization": TOKEN}), 401, "unauthorized")
    err(call(guarded, path, headers={"Authorization": f"Bearer {TOKEN}x"}), 401, "unauthorized")
    err(call(guarded, path, headers={"Authorization": "Bearer \xe9t\xe9"}), 401, "unauthorized")
    status, body, headers = call(guarded, path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and len(body["recommendations"]) == 2
    err(call(guarded, "/api/v1/recommendations", method="POST", body={"isbns": []}), 401)
    # the description of the API is public; no data is
    assert call(guarded, "/api/v1/openapi.json")[0] == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bookrec(*args: str, env: dict | None = None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=120,
        **kw,
    )


def test_serve_refuses_a_public_host_without_a_token(api_db):
    env = {"BOOKREC_SERVE_API_TOKEN": ""}
    done = _bookrec(
        "serve", "--db", str(api_db), "--host", "0.0.0.0", "--port", str(_free_port()), env=env
    )
    assert done.returncode == 2, done.stderr
    assert "token" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2


def test_bookrec_serve_with_a_token(api_db):
    """A real `bookrec serve` (gunicorn, one worker): the API wants the token, the dashboard not."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "serve",
            "--db",
            str(api_db),
            "--port",
            str(port),
            "--workers",
            "1",
            "--threads",
            "2",
            "--api-token",
            TOKEN,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if call(base, "/api/v1/openapi.json")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):  # still warming
                time.sleep(0.3)
        else:
            pytest.fail("bookrec serve did not answer")
        err(call(base, "/api/v1/health"), 401, "unauthorized")
        status, body, _ = call(base, "/api/v1/health", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and body["status"] == "ok"
        assert call(base, "/")[0] == 200
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert f"{base}/api/v1" in out and TOKEN not in out


def test_the_token_comes_from_flag_toml_or_environment(tmp_path):
    """[serve] api_token and BOOKREC_SERVE_API_TOKEN satisfy the non-loopback rule; the flag wins;
    the token never shows in the settings' repr (which errors and logs may print)."""
    from engine import config
    from engine.commands.serve import ServeSettings, _check_token

    toml = tmp_path / "bookrec.toml"
    toml.write_text('[serve]\napi_token = "from-toml"\n')
    empty = tmp_path / "empty.toml"
    empty.write_text("")

    def load(overrides, file, env):
        return config.load_settings(
            ServeSettings, "serve", overrides, config_file=file, environ=env
        )

    assert load({}, toml, {}).api_token == "from-toml"
    assert load({}, toml, {"BOOKREC_SERVE_API_TOKEN": "from-env"}).api_token == "from-env"
    assert load({"api_token": "flag"}, toml, {"BOOKREC_SERVE_API_TOKEN": "e"}).api_token == "flag"
    bare = load({}, empty, {})
    with pytest.raises(config.ConfigError, match="token"):
        _check_token("0.0.0.0", bare.api_token)
    _check_token("127.0.0.1", bare.api_token)  # loopback: open
    _check_token("::1", bare.api_token)
    _check_token("0.0.0.0", load({}, toml, {}).api_token)
    assert "from-toml" not in repr(load({}, toml, {}))
