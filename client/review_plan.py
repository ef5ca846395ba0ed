"""Duplicate review plans: one keeper per near-duplicate group, the rest marked to move.

A plan is a JSON file a person can read and edit (change a group's `keep`, set a member's
`action` to `skip`), then hand to `quarantine.apply_plan`. It names the collection it was made
for (its shard ids), the images root its keys resolve under, the rule that chose the keepers, and
each member's file size and modification time as they were on disk when the plan was made: a
file that changed since is not moved. `load_plan` refuses a plan edited into nonsense with a
message naming the group and the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from imagesim.atomic import write_text_atomic
from imagesim.client.duplicates import DuplicateReport
from imagesim.client.images_root import ImagesRoot
from imagesim.errors import ImagesimError, InvalidArgument

FORMAT = "imagesim-duplicates-plan"
VERSION = 1


class KeepRule(str, Enum):
    """Which member of a group is kept (ties go to the shortest, then the first key)."""

    LARGEST = "largest"  # most pixels, then the largest file
    OLDEST = "oldest"  # earliest modification time
    NEWEST = "newest"  # latest modification time
    SHORTEST_PATH = "shortest-path"  # the shortest key


class Action(str, Enum):
    KEEP = "keep"
    MOVE = "move"  # to the quarantine folder (or deleted, with --delete)
    SKIP = "skip"  # left alone: a person unticked it, or its file is missing


@dataclass
class Member:
    key: str
    action: Action
    file_size: int = 0  # on disk when the plan was made (0: no file)
    mtime_ns: int = 0
    pixels: int = 0  # width x height from the item's metadata (0: unknown)
    closest: float = 0.0  # distance to its nearest other member
    note: str = ""


@dataclass
class Group:
    keep: str
    members: list[Member]


@dataclass
class Plan:
    shard_ids: list[str]
    images_root: str
    keep_rule: KeepRule
    max_distance: float
    groups: list[Group] = field(default_factory=list)
    created: str = ""

    def moves(self) -> list[Member]:
        return [m for g in self.groups for m in g.members if m.action is Action.MOVE]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["keep_rule"] = self.keep_rule.value
        for group in data["groups"]:
            for member in group["members"]:
                member["action"] = member["action"].value
        return {"format": FORMAT, "version": VERSION, **data}


def _sort_key(rule: KeepRule) -> Callable[[Member], tuple[Any, ...]]:
    tie = lambda m: (len(m.key), m.key)  # noqa: E731
    if rule is KeepRule.LARGEST:
        return lambda m: (-m.pixels, -m.file_size, *tie(m))
    if rule is KeepRule.OLDEST:
        return lambda m: (m.mtime_ns, *tie(m))
    if rule is KeepRule.NEWEST:
        return lambda m: (-m.mtime_ns, *tie(m))
    return tie


def choose_keeper(members: Iterable[Member], rule: KeepRule) -> str:
    """The key the rule keeps among the members whose file is there."""
    present = [m for m in members if m.action is not Action.SKIP]
    return min(present, key=_sort_key(rule)).key if present else ""


def _pixels(metadata: dict[str, str]) -> int:
    try:
        return int(metadata.get("width", 0)) * int(metadata.get("height", 0))
    except ValueError:
        return 0


def make_plan(
    report: DuplicateReport,
    metadata_of: Callable[[str], dict[str, str]],
    shard_ids: Iterable[str],
    images: ImagesRoot,
    rule: KeepRule = KeepRule.LARGEST,
) -> Plan:
    """A plan for every group of `report`: each member's file is looked up under the images
    root now (size, mtime); a member without a file is marked `skip`."""
    plan = Plan(
        sorted(shard_ids),
        images.root,
        rule,
        report.max_distance,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    for group in report.groups:
        members = []
        for key, closest in zip(group.keys, group.closest, strict=True):
            member = Member(key, Action.MOVE, closest=round(closest, 6))
            member.pixels = _pixels(metadata_of(key))
            try:
                stat = os.stat(images.path_of(key))
                member.file_size, member.mtime_ns = stat.st_size, stat.st_mtime_ns
            except (OSError, ImagesimError) as exc:
                member.action, member.note = Action.SKIP, f"no file: {exc}"
            members.append(member)
        keeper = choose_keeper(members, rule)
        for member in members:
            if member.key == keeper:
                member.action = Action.KEEP
        plan.groups.append(Group(keeper, members))
    return plan


def edit_group(plan: Plan, number: int, keep: str, skip: Iterable[str] = ()) -> None:
    """A person's choice for group `number` (0-based): keep `keep`, leave the members in
    `skip` alone (unticked), move the others. A member without a file stays `skip`.
    InvalidArgument if the group, the keeper or a skipped key is not there."""
    if not 0 <= number < len(plan.groups):
        raise InvalidArgument(f"there is no group {number + 1} (the plan has {len(plan.groups)})")
    group = plan.groups[number]
    where = f"group {number + 1}"
    by_key = {m.key: m for m in group.members}
    skipped = set(skip)
    for key in (keep, *skipped):
        if key not in by_key:
            raise InvalidArgument(f"{where}: {key[:200]!r} is not one of its members")
    if keep in skipped:
        raise InvalidArgument(f"{where}: the kept member {keep[:200]!r} cannot be skipped too")
    if by_key[keep].note:  # no file to keep
        raise InvalidArgument(f"{where}: {keep[:200]!r} cannot be kept: {by_key[keep].note}")
    for member in group.members:
        if member.key == keep:
            member.action = Action.KEEP
        elif member.note or member.key in skipped:
            member.action = Action.SKIP
        else:
            member.action = Action.MOVE
    group.keep = keep


def save_plan(plan: Plan, path: Path) -> None:
    """Write the plan atomically (a reader never sees half a file)."""
    write_text_atomic(path, json.dumps(plan.to_json(), indent=2, ensure_ascii=False) + "\n")


def _field(where: str, data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidArgument(f"{where}: '{name}' must be {kind.__name__}, not {value!r}")
    return value


def plan_from_json(data: Any) -> Plan:
    """A plan from its JSON form, checked field by field (InvalidArgument naming the place)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidArgument(f'not a duplicates plan (no "format": "{FORMAT}")')
    if data.get("version") != VERSION:
        raise InvalidArgument(
            f"plan version {data.get('version')!r}; this imagesim reads {VERSION}"
        )
    try:
        rule = KeepRule(data.get("keep_rule"))
    except ValueError:
        raise InvalidArgument(f"unknown keep_rule {data.get('keep_rule')!r}") from None
    shard_ids = _field("plan", data, "shard_ids", list)
    max_distance = data.get("max_distance")
    if not isinstance(max_distance, (int, float)) or isinstance(max_distance, bool):
        raise InvalidArgument(f"plan: 'max_distance' must be a number, not {max_distance!r}")
    plan = Plan(
        [str(s) for s in shard_ids],
        _field("plan", data, "images_root", str),
        rule,
        float(max_distance),
        created=str(data.get("created", "")),
    )
    seen: set[str] = set()
    for number, raw in enumerate(_field("plan", data, "groups", list), 1):
        where = f"group {number}"
        if not isinstance(raw, dict):
            raise InvalidArgument(f"{where} is not an object")
        keep = _field(where, raw, "keep", str)
        members = []
        for entry in _field(where, raw, "members", list):
            if not isinstance(entry, dict):
                raise InvalidArgument(f"{where}: a member is not an object")
            key = _field(where, entry, "key", str)
            try:
                action = Action(entry.get("action"))
            except ValueError:
                raise InvalidArgument(
                    f"{where}: {key!r} has action {entry.get('action')!r} (keep, move or skip)"
                ) from None
            if key in seen:
                raise InvalidArgument(f"{where}: {key!r} is in two groups")
            seen.add(key)
            members.append(
                Member(
                    key,
                    action,
                    _field(where, entry, "file_size", int),
                    _field(where, entry, "mtime_ns", int),
                    int(entry.get("pixels", 0) or 0),
                    float(entry.get("closest", 0.0) or 0.0),
                    str(entry.get("note", "")),
                )
            )
        kept = [m.key for m in members if m.action is Action.KEEP]
        if kept != [keep]:
            raise InvalidArgument(
                f"{where}: 'keep' is {keep!r} but the members marked keep are {kept}: "
                "exactly one member is kept, and it is the one 'keep' names"
            )
        plan.groups.append(Group(keep, members))
    return plan


def load_plan(path: Path) -> Plan:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgument(f"cannot read the plan {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{path} is not valid JSON: {exc}") from None
    return plan_from_json(data)
