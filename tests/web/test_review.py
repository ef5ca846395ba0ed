"""The duplicates review over HTTP (plans, edits, apply into the quarantine) and the outliers
API: real processes on loopback over a collection of their own (an apply moves its files)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imagesim.client.collection import Collection
from imagesim.client.quarantine import LOCK_NAME
from imagesim.client.review_plan import Action, plan_from_json
from tests.support.web import WebProcess
from tests.web.conftest import start_secure_web, tls_client

DISTANCE = 0.04


@pytest.fixture
def http(review_web: WebProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=review_web.url, timeout=120) as client:
        yield client


def plan_of(http: httpx.Client, edits: list | None = None, rule: str = "largest") -> dict:
    answer = http.post(
        "/api/review/plan",
        json={"max_distance": DISTANCE, "keep_rule": rule, "edits": edits or []},
    )
    assert answer.status_code == 200, answer.text
    assert "attachment" in answer.headers["content-disposition"]
    return answer.json()


def test_the_plan_is_the_cli_plan_with_the_persons_edits(http, review_stack):
    root = review_stack[0]
    plan = plan_from_json(plan_of(http))  # a valid plan, as `imagesim apply` reads it
    assert plan.images_root == str(root.resolve())
    assert plan.groups and all(len(g.members) >= 2 for g in plan.groups)
    group = next(g for g in plan.groups if len(g.members) >= 3)
    number = plan.groups.index(group)
    others = [m.key for m in group.members if m.key != group.keep]
    new_keep, untick = others[0], others[1]

    edited = plan_from_json(plan_of(http, [{"group": number, "keep": new_keep, "skip": [untick]}]))
    actions = {m.key: m.action for m in edited.groups[number].members}
    assert edited.groups[number].keep == new_keep
    assert actions[new_keep] is Action.KEEP
    assert actions[untick] is Action.SKIP
    assert actions[group.keep] is Action.MOVE  # the old keeper moves now
    assert [g.keep for g in edited.groups if g is not edited.groups[number]] == [
        g.keep for g in plan.groups if g is not group
    ]
    # another rule proposes other keepers for some group, never a second implementation
    shortest = plan_from_json(plan_of(http, rule="shortest-path"))
    assert all(
        g.keep == min((m.key for m in g.members), key=lambda k: (len(k), k))
        for g in shortest.groups
    )


@pytest.mark.parametrize(
    ("edits", "words"),
    [
        ([{"group": 10_000, "keep": "x"}], "there is no group"),
        ([{"group": 0, "keep": "not-a-member.jpg"}], "is not one of its members"),
        ([{"group": 0, "keep": "a", "extra": 1}], "Extra inputs"),
    ],
)
def test_bad_edits_are_refused_with_a_reason(http, edits, words):
    answer = http.post("/api/review/plan", json={"max_distance": DISTANCE, "edits": edits})
    assert answer.status_code in (400, 422), answer.text
    assert words in answer.json()["error"]["message"]


def test_a_body_over_the_limit_is_refused_before_it_is_read(http):
    from imagesim.web.review import MAX_BODY_BYTES

    answer = http.post(
        "/api/review/apply",
        content=b"{" + b" " * MAX_BODY_BYTES + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["reason"] == "TOO_LARGE"


def test_a_cross_site_apply_is_refused(http):
    plan = plan_of(http)
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        answer = http.post("/api/review/apply", json=plan, headers=headers)
        assert answer.status_code == 403
        assert answer.json()["error"]["reason"] == "CROSS_SITE"


def test_apply_moves_the_files_removes_the_items_and_offers_the_manifest(http, review_stack):
    root, _, shards, quarantine = review_stack
    assert http.get("/api/review/config").json()["apply"] is True  # keyless loopback: one user
    data = plan_of(http)
    plan = plan_from_json(data)
    group = plan.groups[0]
    untick = next(m.key for m in group.members if m.action is Action.MOVE)
    data = plan_of(http, [{"group": 0, "keep": group.keep, "skip": [untick]}])
    moving = [m.key for m in plan_from_json(data).moves()]
    assert moving and untick not in moving

    answer = http.post("/api/review/apply", json=data)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert sorted(m["key"] for m in result["moved"]) == sorted(moving)
    assert result["items_removed"] == len(moving)
    for key in moving:
        assert not (root / key).exists() and not Path(key).exists()
    assert all(Path(m["to"]).is_file() and Path(m["to"]).is_relative_to(quarantine)
               for m in result["moved"])  # fmt: skip
    assert Path(untick if Path(untick).is_absolute() else root / untick).exists()
    with Collection(shards.split(",")) as collection:
        assert sorted(collection.missing(moving)) == sorted(moving)
        assert not collection.missing([group.keep, untick])
    manifest = http.get(result["manifest_url"])
    assert manifest.status_code == 200
    assert manifest.json()["format"] == "imagesim-quarantine-manifest"
    assert http.get("/api/review/manifest", params={"name": "../plan.json"}).status_code == 404

    # The plan again: nothing left to move (files gone), nothing touched twice.
    again = http.post("/api/review/apply", json=data).json()
    assert again["items_removed"] == 0


def test_one_apply_at_a_time_a_second_is_409(http, review_stack):
    quarantine = review_stack[3]
    data = plan_of(http)
    fd = os.open(quarantine / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as an apply under way holds it
        answer = http.post("/api/review/apply", json=data)
    finally:
        os.close(fd)
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["reason"] == "APPLY_REFUSED" and "another apply" in error["message"]


def test_a_plan_for_another_images_root_is_refused(http, tmp_path):
    data = plan_of(http)
    data["images_root"] = str(tmp_path)
    answer = http.post("/api/review/apply", json=data)
    assert answer.status_code == 409
    assert answer.json()["error"]["reason"] == "APPLY_REFUSED"


def test_without_a_quarantine_there_is_no_apply(web):
    with httpx.Client(base_url=web.url, timeout=120) as client:
        config = client.get("/api/review/config").json()
        assert config["apply"] is False and "--quarantine" in config["why_not"]
        data = plan_of(client)
        answer = client.post("/api/review/apply", json=data)
        assert answer.status_code == 409
        assert answer.json()["error"]["reason"] == "APPLY_REFUSED"


def test_a_read_key_sees_the_plan_but_may_not_apply(review_stack, pki, tmp_path):
    root, embedder, shards, quarantine = review_stack
    server = start_secure_web(
        tmp_path / "web.log", (embedder, shards), root, pki, "--quarantine", str(quarantine)
    )
    try:
        for role, may in (("read", False), ("write", True)):
            headers = {"Authorization": f"Bearer {pki.keys[role]}"}
            with httpx.Client(
                base_url=server.url, verify=tls_client(pki), headers=headers, timeout=120
            ) as client:
                config = client.get("/api/review/config").json()
                assert config["apply"] is may
                data = plan_of(client)
                if not may:
                    assert "write key" in config["why_not"]
                    answer = client.post("/api/review/apply", json=data)
                    assert answer.status_code == 403
                    assert answer.json()["error"]["reason"] == "ROLE_REQUIRED"
                    name = "imagesim-manifest-0123456789abcdef.json"
                    refused = client.get("/api/review/manifest", params={"name": name})
                    assert refused.status_code == 403
    finally:
        server.stop()


def test_outliers_lists_the_most_isolated_pictures_with_their_score(http):
    answer = http.get("/api/outliers", params={"n": 5})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    scores = [o["score"] for o in body["outliers"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    first = body["outliers"][0]
    assert first["thumbnail"].startswith("/api/thumbnail?key=")
    assert http.get(first["thumbnail"]).status_code == 200
    assert http.get("/api/outliers", params={"n": 0}).status_code == 422
    assert http.get("/outliers").status_code == 200
