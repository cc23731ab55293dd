"""The JSON API (issue 13): a Flask blueprint at /api/v1 in the dashboard's own Flask server.

Read-only, over the same serving layer as the dashboard (`app.data` -> `engine.query.Store`).
Every client value is validated by a pydantic model before it reaches the Store (bounded k, list
lengths, label lengths, ids by pattern); every error is JSON `{"error": {"code", "message"}}`.
With a token (`bookrec serve --api-token`, required off loopback) every data endpoint wants
`Authorization: Bearer <token>`, compared in constant time; the docs page and the OpenAPI
document stay open (they hold no data). The dashboard is unaffected.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import flask
import pydantic
import pydantic_core

from app import data
from app.api import schemas as s
from app.api.openapi import DOCS_HTML, openapi_document

log = logging.getLogger(__name__)
PREFIX = "/api/v1"
MAX_BODY = 256 * 1024  # bytes of a POST body
USER_ID = re.compile(r"^[0-9]{1,10}$")
ISBN = re.compile(r"^[0-9A-Za-z-]{1,20}$")
OPEN = {"api.openapi", "api.docs"}  # endpoints that need no token


class ApiError(Exception):
    """An answer with an error status: JSON {"error": {"code", "message"}}."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: str, message: str) -> flask.Response:
    body = json.dumps({"error": {"code": code, "message": message}})
    resp = flask.Response(body, status=status, mimetype="application/json")
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="bookrec"'
    return resp


def ok(model: pydantic.BaseModel) -> flask.Response:
    return flask.Response(model.model_dump_json(), mimetype="application/json")


def ok_plain(body: dict[str, Any]) -> flask.Response:
    """A response built by the hot paths below as plain dicts, in the field order and with the
    types of its schema model (so the bytes equal that model's `model_dump_json()`; tests check
    it): validating ~20 nested models per answer cost more than the rest of the request."""
    return flask.Response(
        pydantic_core.to_json(body, inf_nan_mode="null"), mimetype="application/json"
    )


def _validation_message(exc: pydantic.ValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ())) or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "; ".join(parts)


def _query(model: type[pydantic.BaseModel], lists: tuple[str, ...] = ()) -> Any:
    """The query string as `model` (422 on a wrong type, an unknown or a repeated parameter)."""
    args = flask.request.args
    values: dict[str, Any] = {}
    for key in args:
        got = args.getlist(key)
        if key in lists:
            values[key] = got[: s.MAX_LABELS + 1]  # one over the cap: pydantic says too many
        elif len(got) > 1:
            raise ApiError(422, "invalid_parameter", f"{key}: given more than once")
        else:
            values[key] = got[0]
    return model.model_validate(values)


def _user_id(raw: str) -> int:
    if not USER_ID.match(raw) or int(raw) >= 2**31:
        raise ApiError(400, "bad_user_id", "user ids are whole numbers below 2147483648")
    return int(raw)


def _isbn(raw: str) -> str:
    if not ISBN.match(raw):
        raise ApiError(400, "bad_isbn", "an ISBN is 1-20 letters, digits or dashes")
    return raw.strip().upper()


def _facets_of(row: dict[str, Any]) -> dict[str, list[str]]:
    return {f: list(row.get(f) or []) for f in data.FIELDS if row.get(f)}


def _book(row: dict[str, Any], cls: type[s.Book] = s.Book, **extra: Any) -> Any:
    return cls(
        isbn=row["isbn"],
        title=row.get("title"),
        author=row.get("author"),
        year=row.get("year"),
        image_url=row.get("image_url_m"),
        n_interactions=row.get("n_interactions"),
        facets=_facets_of(row),
        **extra,
    )


def _book_plain(row: dict[str, Any]) -> dict[str, Any]:
    """`_book(row)`'s fields as a dict (the Book schema's order; an engine row's types)."""
    return {
        "isbn": row["isbn"],
        "title": row.get("title"),
        "author": row.get("author"),
        "year": row.get("year"),
        "image_url": row.get("image_url_m"),
        "n_interactions": row.get("n_interactions"),
        "facets": _facets_of(row),
    }


def _recommendations_plain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`_recommendations` of the Store's row dicts, as plain dicts (s.Recommendation's order)."""
    out = []
    for r in rows:
        because = None
        if r.get("because_isbn"):
            because = {
                "isbn": r["because_isbn"],
                "title": r.get("because_title"),
                "similarity": r.get("because_score"),
            }
        out.append(
            {
                **_book_plain(r),
                "rank": r["rank"],
                "score": float(r["score"]),
                "model": r["model"],
                "source": r["source"],
                "reason": (
                    f"because you rated {because['title'] or because['isbn']}" if because else None
                ),
                "because": because,
            }
        )
    return out


def _recommendations(frame: Any) -> list[s.Recommendation]:
    out = []
    for r in frame.iter_rows(named=True):
        because = None
        if r.get("because_isbn"):
            because = s.Because(
                isbn=r["because_isbn"],
                title=r.get("because_title"),
                similarity=r.get("because_score"),
            )
        out.append(
            _book(
                r,
                s.Recommendation,
                rank=r["rank"],
                score=r["score"],
                model=r["model"],
                source=r["source"],
                reason=f"because you rated {because.title or because.isbn}" if because else None,
                because=because,
            )
        )
    return out


def create_blueprint(token: str | None = None) -> flask.Blueprint:
    """The API; `token` (non-empty) makes data endpoints require `Authorization: Bearer token`."""
    bp = flask.Blueprint("api", __name__, url_prefix=PREFIX)
    expected = ("Bearer " + token).encode() if token else None

    @bp.before_request
    def _auth() -> flask.Response | None:
        if expected is None or flask.request.endpoint in OPEN:
            return None
        given = flask.request.headers.get("Authorization", "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, expected):
            return error(401, "unauthorized", "send Authorization: Bearer <the server's API token>")
        return None

    @bp.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> flask.Response:
        return error(exc.status, exc.code, exc.message)

    @bp.errorhandler(pydantic.ValidationError)
    def _invalid(exc: pydantic.ValidationError) -> flask.Response:
        return error(422, "invalid_parameter", _validation_message(exc))

    @bp.errorhandler(data.UnknownEntityError)
    def _unknown(exc: data.UnknownEntityError) -> flask.Response:
        return error(404, "not_found", str(exc))  # the message carries the hint

    @bp.errorhandler(data.StageNotReadyError)
    def _not_ready(exc: data.StageNotReadyError) -> flask.Response:
        return error(404, "not_ready", str(exc))

    @bp.errorhandler(Exception)
    def _internal(exc: Exception) -> flask.Response:
        from werkzeug.exceptions import HTTPException

        if isinstance(exc, HTTPException):
            return error(exc.code or 500, exc.name.lower().replace(" ", "_"), exc.description or "")
        log.exception("API error")
        return error(500, "internal", "internal error (logged on the server)")

    def route(rule: str, **options: Any) -> Callable:
        return bp.route(rule, strict_slashes=False, **options)

    @route("/health")
    def health() -> flask.Response:
        h = data.store().health()
        return ok(s.HealthResponse(status="ok", **h))

    @route("/readers/<user_id>/recommendations")
    def reader(user_id: str) -> flask.Response:
        uid = _user_id(user_id)
        q = _query(s.ReaderQuery)
        store = data.store()
        if not store.has_user(uid):
            raise ApiError(404, "not_found", f"no reader {uid}")
        run = store.run_of(q.model)
        rows = store.recommend_rows(q.model, uid, q.k, exclude_read=q.exclude_read)
        return ok_plain(  # s.RecommendationsResponse
            {
                "user_id": uid,
                "model": run["model"],
                "run_id": run["run_id"],
                "k": q.k,
                "recommendations": _recommendations_plain(rows),
            }
        )

    @route("/recommendations", methods=["POST"])
    def fold_in() -> flask.Response:
        body = _json_body()
        req = s.FoldInRequest.model_validate(body)
        picks = list(dict.fromkeys([*req.isbns, *(req.ratings or {})]))
        if len(picks) > s.MAX_PICKS:
            raise ApiError(422, "invalid_parameter", f"at most {s.MAX_PICKS} books per request")
        if req.ratings:  # the best rated first: the 'because' book is the closest of these
            picks.sort(key=lambda i: -(req.ratings or {}).get(i, 0))
        store = data.store()
        facets = {f: tuple(v) for f, v in (req.facets or {}).items()}
        rows, info = store.fold_in_rows(req.model, picks, req.k, facets)
        return ok_plain(  # s.FoldInResponse
            {
                "user_id": None,
                "model": info["model"],
                "run_id": info["run_id"],
                "k": req.k,
                "recommendations": _recommendations_plain(rows),
                "method": info["method"],
                "exact": bool(info["exact"]),
                "used": list(info["used"]),
                "ignored": list(info["ignored"]),
            }
        )

    @route("/books/<isbn>")
    def book(isbn: str) -> flask.Response:
        if flask.request.args:
            raise ApiError(422, "invalid_parameter", "this endpoint takes no parameters")
        row = data.store().book(_isbn(isbn))
        return ok(
            _book(
                row,
                s.BookDetail,
                publisher=row.get("publisher"),
                n_explicit=row.get("n_explicit"),
                mean_rating=row.get("mean_rating"),
                image_url_large=row.get("image_url_l"),
                summary=row.get("summary"),
            )
        )

    @route("/books/<isbn>/similar")
    def similar(isbn: str) -> flask.Response:
        key = _isbn(isbn)
        q = _query(s.SimilarQuery)
        store = data.store()
        store.has_book(key)  # 404 for a book not in the catalogue
        if q.by == "content":
            if q.model is not None:
                raise ApiError(422, "invalid_parameter", "model: only with by=model")
            rows = list(store.similar_content(key, q.k).iter_rows(named=True))
        else:
            rows = store.similar_rows(key, q.model, q.k)
        items = [
            {**_book_plain(r), "rank": r["rank"], "score": float(r["score"])} for r in rows
        ]  # s.Neighbour
        if rows:
            source = rows[0]["source"]
        else:
            source = "content" if q.by == "content" else store.run_of(q.model)["model"]
        return ok_plain({"isbn": key, "by": q.by, "source": source, "similar": items})

    @route("/books")
    def books() -> flask.Response:
        q = _query(s.BrowseParams, lists=tuple(data.FIELDS))
        facets = {f: tuple(getattr(q, f)) for f in data.FIELDS if getattr(q, f)}
        page, total = data.store().browse(
            data.BrowseQuery(
                facets=facets,
                year_min=q.year_min,
                year_max=q.year_max,
                min_ratings=q.min_ratings,
                text=q.q,
                sort=q.sort,
                desc=q.desc,
                page=q.page,
                page_size=q.page_size,
            )
        )
        rows = [
            _book(
                r,
                s.BookDetail,
                publisher=r.get("publisher"),
                n_explicit=r.get("n_explicit"),
                mean_rating=r.get("mean_rating"),
            )
            for r in page.iter_rows(named=True)
        ]
        return ok(s.BrowseResponse(total=total, page=q.page, page_size=q.page_size, books=rows))

    @route("/facets")
    def facets() -> flask.Response:
        store = data.store()
        store.require("facets")
        options = store.facet_options()
        return ok(
            s.FacetsResponse(
                facets={
                    f: [s.FacetLabel(label=lbl, books=n) for lbl, n in options.get(f, [])]
                    for f in data.FIELDS
                }
            )
        )

    @bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def unknown_path(rest: str) -> flask.Response:
        # Dash's page router catches every path: without this, /api/v1/typo would get HTML
        from werkzeug.exceptions import HTTPException

        adapter = flask.current_app.url_map.bind("localhost")
        for method in ("GET", "POST"):
            try:
                endpoint, _ = adapter.match(flask.request.path, method=method)
            except HTTPException:
                continue
            if endpoint != "api.unknown_path":
                raise ApiError(405, "method_not_allowed", f"use {method} here")
        raise ApiError(404, "not_found", "no such endpoint (see /api/v1/docs)")

    @route("/openapi.json")
    def openapi() -> flask.Response:
        return flask.Response(json.dumps(openapi_document()), mimetype="application/json")

    @route("/docs")
    def docs() -> flask.Response:
        return flask.Response(DOCS_HTML, mimetype="text/html")

    return bp


def _json_body() -> Any:
    req = flask.request
    if req.mimetype != "application/json":
        raise ApiError(
            415, "unsupported_media_type", "send the body as Content-Type: application/json"
        )
    if req.content_length is not None and req.content_length > MAX_BODY:
        raise ApiError(413, "too_large", f"the body may hold at most {MAX_BODY} bytes")
    raw = req.stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(413, "too_large", f"the body may hold at most {MAX_BODY} bytes")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "malformed_json", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_parameter", "the body must be a JSON object")
    return body


def install(server: flask.Flask, token: str | None = None) -> None:
    """Mount the API on the dashboard's Flask server; unknown /api paths answer JSON too."""
    server.register_blueprint(create_blueprint(token))
    from werkzeug.exceptions import HTTPException

    previous = server.error_handler_spec.get(None, {})

    def api_http_error(exc: HTTPException) -> Any:
        if flask.request.path.startswith("/api/"):
            return error(exc.code or 500, exc.name.lower().replace(" ", "_"), exc.description or "")
        return exc

    for code in (404, 405):
        if code not in previous:
            server.register_error_handler(code, api_http_error)
