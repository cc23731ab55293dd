"""The API's OpenAPI 3.1 document (built from the pydantic models) and its static docs page."""

from __future__ import annotations

import functools
import html
from typing import Any

from pydantic.json_schema import models_json_schema

from app.api import schemas as s

REF = "#/components/schemas/{model}"

# (method, path, summary, query model or None, body model or None, response model, errors)
ENDPOINTS: list[tuple[str, str, str, Any, Any, Any, tuple[int, ...]]] = [
    ("get", "/health", "Database, current runs and their age", None, None, s.HealthResponse, ()),
    (
        "get",
        "/readers/{user_id}/recommendations",
        "A known reader's recommendations, with reason and source",
        s.ReaderQuery,
        None,
        s.RecommendationsResponse,
        (400, 404, 422),
    ),
    (
        "post",
        "/recommendations",
        "Fold-in: recommendations for a new reader from the books they picked",
        None,
        s.FoldInRequest,
        s.FoldInResponse,
        (400, 404, 413, 415, 422),
    ),
    ("get", "/books", "Browse and search books", s.BrowseParams, None, s.BrowseResponse, (422,)),
    ("get", "/books/{isbn}", "One book", None, None, s.BookDetail, (400, 404)),
    (
        "get",
        "/books/{isbn}/similar",
        "Similar books by a model's item vectors (item-based models: their stored item-item "
        "weights) or by content",
        s.SimilarQuery,
        None,
        s.SimilarResponse,
        (400, 404, 422),
    ),
    (
        "get",
        "/facets",
        "Facet labels per field with their book counts",
        None,
        None,
        s.FacetsResponse,
        (404,),
    ),
]
ERRORS = {
    400: "Bad id or malformed JSON",
    401: "Missing or wrong API token",
    404: "Unknown reader, book or model, or a stage that has not run",
    413: "Body too large",
    415: "Body is not application/json",
    422: "A parameter of the wrong type or out of range",
}


def _parameters(path: str, query: Any, defs: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name in ("user_id", "isbn"):
        if "{" + name + "}" in path:
            schema = (
                {"type": "string", "pattern": "^[0-9]{1,10}$"}
                if name == "user_id"
                else {"type": "string", "pattern": "^[0-9A-Za-z-]{1,20}$"}
            )
            out.append({"name": name, "in": "path", "required": True, "schema": schema})
    if query is not None:
        schema = query.model_json_schema(ref_template=REF)
        defs.update(schema.pop("$defs", {}))
        for name, prop in schema.get("properties", {}).items():
            out.append({"name": name, "in": "query", "required": False, "schema": prop})
    return out


@functools.cache
def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1 for /api/v1 (computed once per process)."""
    models = [(m, "serialization") for m in (s.ErrorResponse,)]
    for _, _, _, _, body, resp, _ in ENDPOINTS:
        models.append((resp, "serialization"))
        if body is not None:
            models.append((body, "validation"))
    _, top = models_json_schema(models, ref_template=REF)
    defs: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, Any] = {}
    for method, path, summary, query, body, resp, errors in ENDPOINTS:
        op: dict[str, Any] = {
            "summary": summary,
            "parameters": _parameters(path, query, defs),
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {
                        "application/json": {"schema": {"$ref": REF.format(model=resp.__name__)}}
                    },
                },
                **{
                    str(code): {
                        "description": ERRORS[code],
                        "content": {
                            "application/json": {
                                "schema": {"$ref": REF.format(model="ErrorResponse")}
                            }
                        },
                    }
                    for code in (*errors, 401)
                },
            },
            "security": [{"bearer": []}, {}],
        }
        if body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": REF.format(model=body.__name__)}}
                },
            }
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bookrec JSON API",
            "version": "1",
            "description": "Read-only recommendations, fold-in for new readers, books and facets.",
        },
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "required when the server listens beyond loopback",
                }
            },
        },
    }


def _docs_html() -> str:
    rows = "\n".join(
        f"<tr><td><code>{m.upper()}</code></td><td><code>/api/v1{html.escape(p)}</code></td>"
        f"<td>{html.escape(summary)}</td><td>{html.escape(', '.join(_parameter_names(q, b)))}</td></tr>"
        for m, p, summary, q, b, _, _ in ENDPOINTS
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>bookrec JSON API</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.4rem;text-align:left}}
code{{background:#f4f4f4;padding:0 .2rem}}</style></head>
<body><h1>bookrec JSON API <small>v1</small></h1>
<p>Read-only. Errors are <code>{{"error": {{"code", "message"}}}}</code> with status 400, 401, 404,
413, 415 or 422. When the server listens beyond loopback, send
<code>Authorization: Bearer &lt;token&gt;</code>. The machine-readable description is
<a href="/api/v1/openapi.json">/api/v1/openapi.json</a> (OpenAPI 3.1).</p>
<table><thead><tr><th>method</th><th>path</th><th>what</th><th>parameters</th></tr></thead>
<tbody>
{rows}
</tbody></table>
<h2>Example</h2>
<pre>curl -s -X POST -H 'Content-Type: application/json' \\
  -d '{{"isbns": ["0316666343", "0385504209"], "k": 10}}' http://127.0.0.1:8050/api/v1/recommendations</pre>
</body></html>
"""


def _parameter_names(query: Any, body: Any) -> list[str]:
    model = query or body
    return list(model.model_fields) if model is not None else []


DOCS_HTML = _docs_html()
