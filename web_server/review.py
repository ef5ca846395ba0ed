"""Reviewing a collection: the duplicates page's plans (keepers, unticked members, download)
and their apply (move to the quarantine folder), and the outliers (the routes are in
imagesim.web.routes.review and .outliers).

Thin over the client library: `review_plan.make_plan` proposes the keepers, `edit_group` takes
a person's choices, `plan_from_json` checks every plan that comes in, `quarantine.apply_plan`
moves the files and writes the manifest (`imagesim undo MANIFEST` puts everything back), and
`outliers.find_outliers` ranks the isolated items.

Limits. A plan request carries at most MAX_EDITS group edits; a plan posted to apply at most
MAX_PLAN_GROUPS groups and MAX_PLAN_MEMBERS members in all; either body at most MAX_BODY_BYTES
(413 beyond, read no further). Apply needs the `write` role (auth.WRITE_PATHS; keyless mode is a
single local user: allowed), a --quarantine folder (409 APPLY_REFUSED without one), and a plan
made for this collection and this --images-root. One apply at a time: the quarantine's lock
refuses a second (409 APPLY_REFUSED).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from imagesim.client.images_root import MAX_KEY_CHARS, ImagesRoot
from imagesim.client.outliers import OutlierReport, find_outliers
from imagesim.client.quarantine import apply_plan
from imagesim.client.review_plan import KeepRule, Plan, edit_group, make_plan, plan_from_json
from imagesim.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from imagesim.web.backend import Backend
from imagesim.web.duplicate_jobs import DuplicateJobs, Progress
from imagesim.web.reasons import WebReason
from imagesim.web.settings import WebSettings
from imagesim.web.urls import similar_url, thumbnail_url

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_EDITS = 5_000
MAX_SKIPS = 200  # the page shows at most 200 members of a group
MAX_PLAN_GROUPS = 20_000
MAX_PLAN_MEMBERS = 50_000
MAX_OUTLIERS = 200
MANIFEST_NAME = re.compile(r"imagesim-manifest-[0-9a-f]{16}\.json")
Signature = Callable[[], tuple[tuple, int]]


class GroupEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    group: int = Field(ge=0, description="the group's place in the plan, 0-based")
    keep: str = Field(min_length=1, max_length=MAX_KEY_CHARS)
    skip: list[Annotated[str, Field(max_length=MAX_KEY_CHARS)]] = Field(
        default=[], max_length=MAX_SKIPS
    )


class PlanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_distance: float = Field(ge=0, le=1e6, allow_inf_nan=False)
    keep_rule: KeepRule = KeepRule.LARGEST
    edits: list[GroupEdit] = Field(default=[], max_length=MAX_EDITS)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body, 413 as soon as it is over `limit` bytes."""
    too_large = InvalidArgument(
        f"the request body is over the limit of {limit:,} bytes", reason=WebReason.TOO_LARGE
    )
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(
            f"the body is not JSON: {exc}", reason=WebReason.INVALID_REQUEST
        ) from None


def check_size(data: Any) -> None:
    """Refuse a plan over the group and member limits before it is parsed field by field."""
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list):
        return  # plan_from_json says what is wrong
    members = sum(len(g.get("members") or []) for g in groups if isinstance(g, dict))
    if len(groups) > MAX_PLAN_GROUPS or members > MAX_PLAN_MEMBERS:
        raise InvalidArgument(
            f"the plan has {len(groups):,} groups and {members:,} members; the web server "
            f"applies at most {MAX_PLAN_GROUPS:,} groups and {MAX_PLAN_MEMBERS:,} members "
            "(apply a larger plan with imagesim apply)",
            reason=WebReason.TOO_LARGE,
        )


def refused(message: str) -> FailedPrecondition:
    return FailedPrecondition(message, reason=WebReason.APPLY_REFUSED)


class Outliers:
    """The most isolated items, computed once per collection state (one scan at a time)."""

    def __init__(self, backend: Backend, signature: Signature, timeout: float) -> None:
        self.backend = backend
        self.signature = signature
        self.timeout = timeout
        self._lock = threading.Lock()
        self._last: tuple[tuple, OutlierReport] | None = None

    def get(self) -> OutlierReport:
        state, _ = self.signature()
        last = self._last
        if last is not None and last[0] == state:
            return last[1]
        if not self._lock.acquire(blocking=False):
            raise Unavailable("the outliers are being computed", reason=WebReason.BUSY)
        try:
            report = find_outliers(self.backend.collection, MAX_OUTLIERS, timeout=self.timeout)
            self._last = (state, report)
            return report
        finally:
            self._lock.release()


def metadata_reader(backend: Backend) -> Callable[[str], dict[str, str]]:
    def metadata_of(key: str) -> dict[str, str]:
        return dict(backend.item(key).metadata)

    return metadata_of


def build_plan(
    wanted: PlanRequest,
    settings: WebSettings,
    backend: Backend,
    jobs: DuplicateJobs,
    images: ImagesRoot,
) -> Plan:
    """The plan of the groups at `wanted.max_distance`, the keepers its rule chooses, then the
    person's edits; read back as a download would be."""
    answer = jobs.get(wanted.max_distance, settings.duplicates_wait)
    if isinstance(answer, Progress):
        raise Unavailable(
            "the groups at this distance are still being found: try again",
            reason=WebReason.BUSY,
        )
    plan = make_plan(
        answer,
        metadata_reader(backend),
        backend.collection.layout.shard_ids,
        images,
        wanted.keep_rule,
    )
    for edit in wanted.edits:
        edit_group(plan, edit.group, edit.keep, edit.skip)
    return plan_from_json(plan.to_json())  # what a download is read back as


def apply(data: Any, settings: WebSettings, backend: Backend, images: ImagesRoot) -> dict[str, Any]:
    """Apply a posted plan: move its files into the quarantine folder, remove their items."""
    if settings.quarantine is None:
        raise refused("this server has no quarantine folder (imagesim-web --quarantine DIR)")
    check_size(data)
    plan = plan_from_json(data)
    if Path(plan.images_root).resolve() != Path(images.root).resolve():
        raise refused(f"the plan is for the images in {plan.images_root[:200]}, not this server's")
    try:
        outcome = apply_plan(plan, backend.collection, settings.quarantine, settings.quarantine)
    except FailedPrecondition as exc:  # another apply running, another collection
        raise refused(exc.message) from None
    return {
        "moved": [{"key": e.key, "to": e.dst} for e in outcome.done],
        "skipped": [{"key": key, "why": why} for key, why in outcome.skipped],
        "items_removed": outcome.items,
        "manifest": outcome.manifest.name,
        "manifest_url": "/api/review/manifest?name=" + outcome.manifest.name,
    }


def config(settings: WebSettings, may_write: bool) -> dict[str, Any]:
    """What the duplicates page may offer a caller (`may_write`: holds a write key)."""
    configured = settings.quarantine is not None
    why = ""
    if not configured:
        why = "This server has no quarantine folder (imagesim-web --quarantine DIR)."
    elif not may_write:
        why = "Moving files needs a write key; this key may only read."
    return {
        "apply": configured and may_write,
        "why_not": why,
        "keep_rules": [r.value for r in KeepRule],
        "limits": {"edits": MAX_EDITS, "groups": MAX_PLAN_GROUPS, "members": MAX_PLAN_MEMBERS},
    }


def manifest_path(settings: WebSettings, name: str) -> Path:
    """The manifest an apply wrote into the quarantine folder under `name` (404 otherwise)."""
    if settings.quarantine is None or not MANIFEST_NAME.fullmatch(name):
        raise NotFound("no such manifest")
    path = settings.quarantine / name
    if not path.is_file():
        raise NotFound("no such manifest")
    return path


def outliers_response(report: OutlierReport, n: int) -> dict[str, Any]:
    return {
        "items": report.items,
        "neighbors": report.neighbors,
        "outliers": [
            {
                "key": o.key,
                "score": o.score,
                "nearest": [{"key": k, "distance": d} for k, d in o.nearest],
                "thumbnail": thumbnail_url(o.key),
                "similar": similar_url(o.key),
            }
            for o in report.outliers[:n]
        ],
    }
