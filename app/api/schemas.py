"""Request and response models of the JSON API (pydantic v2); the OpenAPI document is built from them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

MAX_K = 100  # books one answer may hold
MAX_PICKS = 500  # books a fold-in request may name (engine.foldin.MAX_PICKS)
MAX_LABELS = 20  # facet labels per field in one request
MAX_PAGE = 10_000

Isbn = Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z-]{1,20}$")]
ModelName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,32}$")]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Field_ = Literal["genre", "category", "theme", "tone", "audience"]
Facets = Annotated[
    dict[Field_, Annotated[list[Label], Field(max_length=MAX_LABELS)]],
    Field(description="facet field -> labels (OR within a field, AND across fields)"),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- requests


class ReaderQuery(Strict):
    """GET /readers/{user_id}/recommendations query string."""

    k: int = Field(10, ge=1, le=MAX_K)
    model: ModelName | None = None
    exclude_read: bool = True


class FoldInRequest(Strict):
    """POST /recommendations body: the books a new or anonymous reader picked."""

    isbns: list[Isbn] = Field(default_factory=list, max_length=MAX_PICKS)
    ratings: (
        Annotated[dict[Isbn, Annotated[StrictInt, Field(ge=0, le=10)]], Field(max_length=MAX_PICKS)]
        | None
    ) = Field(
        None,
        description="optional ratings (0-10) of picked books; books rated here count as picked. "
        "Models are trained on binary interactions, so ratings only pick the 'because' book.",
    )
    k: StrictInt = Field(20, ge=1, le=MAX_K)
    model: ModelName | None = None
    facets: Facets | None = None
    exclude_read: StrictBool = True


class SimilarQuery(Strict):
    by: Literal["model", "content"] = "model"
    k: int = Field(10, ge=1, le=MAX_K)
    model: ModelName | None = None


class BrowseParams(Strict):
    """GET /books query string (facet fields may repeat: ?genre=Mystery&genre=Poetry)."""

    q: str = Field("", max_length=100)
    genre: list[Label] = Field(default_factory=list, max_length=MAX_LABELS)
    category: list[Label] = Field(default_factory=list, max_length=MAX_LABELS)
    theme: list[Label] = Field(default_factory=list, max_length=MAX_LABELS)
    tone: list[Label] = Field(default_factory=list, max_length=MAX_LABELS)
    audience: list[Label] = Field(default_factory=list, max_length=MAX_LABELS)
    year_min: int | None = Field(None, ge=0, le=3000)
    year_max: int | None = Field(None, ge=0, le=3000)
    min_ratings: int = Field(0, ge=0, le=1_000_000)
    sort: Literal[
        "score", "mean_rating", "n_explicit", "n_interactions", "year", "title", "author"
    ] = "score"
    desc: bool = True
    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: int = Field(20, ge=1, le=MAX_K)


# ---------------------------------------------------------------- responses


class Book(BaseModel):
    isbn: str
    title: str | None = None
    author: str | None = None
    year: int | None = None
    image_url: str | None = None
    n_interactions: int | None = None
    facets: dict[str, list[str]] = Field(default_factory=dict)


class BookDetail(Book):
    publisher: str | None = None
    n_explicit: int | None = None
    mean_rating: float | None = None
    image_url_large: str | None = None
    summary: str | None = None


class Because(BaseModel):
    isbn: str
    title: str | None = None
    similarity: float | None = None


class Recommendation(Book):
    rank: int
    score: float
    model: str
    source: Literal["model", "popularity_fallback"]
    reason: str | None = Field(None, description="'because you rated X' when there is one")
    because: Because | None = None


class RecommendationsResponse(BaseModel):
    user_id: int | None = None
    model: str = Field(description="the model asked for (or the default model)")
    run_id: str
    k: int
    recommendations: list[Recommendation]


class FoldInResponse(RecommendationsResponse):
    method: str = Field(description="how the new reader was scored")
    exact: bool = Field(
        description="this answer equals the trained model's scores for the same history (the "
        "stored weights of the picked books were not pruned)"
    )
    used: list[str] = Field(description="picked ISBNs the model knows")
    ignored: list[str] = Field(description="picked ISBNs the model does not know")


class Neighbour(Book):
    rank: int
    score: float


class SimilarResponse(BaseModel):
    isbn: str
    by: Literal["model", "content"]
    source: str = Field(description="the model, or 'content'")
    similar: list[Neighbour]


class BrowseResponse(BaseModel):
    total: int
    page: int
    page_size: int
    books: list[BookDetail]


class FacetLabel(BaseModel):
    label: str
    books: int


class FacetsResponse(BaseModel):
    facets: dict[str, list[FacetLabel]]


class RunHealth(BaseModel):
    model: str
    run_id: str
    scoring: str
    finished_at: str | None
    age_s: float | None
    has_item_weights: bool


class HealthResponse(BaseModel):
    status: Literal["ok"]
    database: str
    books: int
    ratings: int
    runs: list[RunHealth]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
