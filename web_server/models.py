"""The JSON the API answers with (pydantic models: they are also the schemas at /docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    status: int = Field(description="the HTTP status code again")
    code: str = Field(description="imagesim status code name, e.g. UNAVAILABLE")
    reason: str = Field(
        description="machine-readable reason, e.g. IMAGE_UNDECODABLE, KEY_NOT_FOUND, "
        "OUTSIDE_IMAGES_ROOT: match on this"
    )
    title: str = Field(description="one sentence for people")
    message: str = Field(description="what exactly went wrong")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Neighbor(BaseModel):
    rank: int = Field(description="1 = closest")
    key: str
    distance: float = Field(description="smaller is closer (angular: sqrt(2 - 2 cos))")
    shard: str = Field(description="address of the shard that holds it")
    metadata: dict[str, str] | None = None
    thumbnail: str = Field(description="URL of its thumbnail")
    similar: str = Field(description="URL of the page searching from it")


class SearchResponse(BaseModel):
    query: str = Field(description="the uploaded file's name, or the key searched from")
    k: int
    max_distance: float | None
    neighbors: list[Neighbor]
    missing_shards: list[str] = Field(
        description="shards that did not answer (only with allow_partial)"
    )


class ItemResponse(BaseModel):
    key: str
    metadata: dict[str, str]
    dimension: int
    thumbnail: str


class ShardStats(BaseModel):
    """One shard's row, as `imagesim stats --json` prints it."""

    shard: str = Field(description="the address it was reached at")
    shard_id: str
    count: int = Field(description="live items (built + staged - hidden)")
    built_count: int
    staged: int
    hidden: int
    dimension: int
    metric: str
    generation: int
    trees: int
    built: bool
    building: bool
    index_bytes: int
    last_build_seconds: float
    last_build_error: str
    layout_version: int
    project_dims: int
    models: dict[str, int] = Field(description="items by embedding model fingerprint")
    embedded_by: dict[str, int] = Field(description="items by runtime/precision")


class StatsTotal(BaseModel):
    """The collection's totals, as `imagesim stats --json` adds them up."""

    shards: int = Field(description="how many shards")
    count: int = Field(description="items in the whole collection")
    built_count: int
    staged: int
    hidden: int
    index_bytes: int
    models: dict[str, int]
    embedded_by: dict[str, int]


class StatsResponse(BaseModel):
    shards: list[ShardStats]
    total: StatsTotal
    count: int = Field(
        description="deprecated: total.count (the items in the whole collection); "
        "removed in the next release",
        json_schema_extra={"deprecated": True},
    )


class Limits(BaseModel):
    max_image_bytes: int = Field(description="largest upload (the embedder's limit, or lower)")
    max_image_pixels: int = Field(description="most pixels of an upload (the embedder's limit)")
    max_decoded_bytes: int = Field(
        description="most bytes an upload's pixels may take decoded (the embedder's limit)"
    )
    from_embedder: bool = Field(
        description="true: read from the embedder's Info; false: its defaults, until it answers"
    )
    default_k: int
    max_k: int
    duplicates_distance: float = Field(description="default threshold of /api/duplicates")
    thumbnail_size: int
    api_keys: bool = Field(
        default=False, description="true: this server needs an API key (the page offers sign-out)"
    )


class GroupMember(BaseModel):
    key: str
    closest: float = Field(description="distance to its nearest other member found")
    thumbnail: str


class DuplicateGroupModel(BaseModel):
    size: int
    members: list[GroupMember] = Field(description="the first `members` of the group, by key")


class DuplicatesResponse(BaseModel):
    status: Literal["done", "computing"]
    max_distance: float
    items: int = Field(description="items scanned so far (done: all)")
    total: int = Field(description="items in the collection")
    groups_total: int = 0
    duplicated_items: int = 0
    page: int = 1
    pages: int = 0
    page_size: int = 0
    seconds: float = 0.0
    groups: list[DuplicateGroupModel] = []
    computing: float | None = Field(
        default=None, description="while status is computing: the threshold being computed"
    )


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: Literal["ready", "unavailable"]
    embedder: str
    shards: dict[str, str]
