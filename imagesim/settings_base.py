"""Settings declared once. Each field of a settings dataclass made with `setting(...)` is a flag;
from that one declaration come the flag (`--field-name`, or `flag=`), its environment variable
(`{PREFIX}{FLAG_NAME}`, e.g. IMAGESIM_INDEX_MAX_KEY_BYTES), the help text (`... [default D;
VARIABLE]`) and the default. The command line wins over the environment, the environment over
the declared default (MLServer's settings, without pydantic: the servers' extras lack it).
A field holding a settings dataclass (IndexLimits in ShardConfig) adds that class's flags too;
`scale` keeps a flag in another unit than its field (`--max-message-mb 64` -> 67108864 bytes).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import os
import sys
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

T = TypeVar("T")
_KEY = "imagesim.setting"
TRUE_WORDS = ("1", "true", "yes", "on")  # a switch's variable turns it on with one of these
# Metadata of a field holding a settings class that is not read from this process's flags
# (imagesim-web's backend security comes from the client's variables).
NOT_FLAGS = {"imagesim.not_flags": True}
_ANNOUNCED: set[str] = set()  # deprecated variables already said on stderr (once a process)


@dataclasses.dataclass(frozen=True)
class Setting:
    help: str
    flag: str | None = None  # default: --field-name
    group: str | None = None  # the --help section; default: the one add_arguments is given
    scale: float = 1  # field value = flag value x scale (MiB, megapixels)
    parse: Callable[[str], Any] | None = None  # flag text -> value; default: the field's type
    default_text: str | None = None  # the default in words, when a value would not say it
    choices: tuple[str, ...] | None = None
    # Old spellings still accepted, each announced as deprecated when used: flags, and
    # variables read when the setting's own is unset (both by their full names).
    old_flags: tuple[str, ...] = ()
    old_env: tuple[str, ...] = ()


def setting(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:
    """A dataclass field that is also a flag (keywords: Setting's; `factory`: a default
    computed when the settings are made)."""
    factory = kwargs.pop("factory", dataclasses.MISSING)
    shown = kwargs.pop("repr", True)  # False: a secret, never in the object's repr
    return dataclasses.field(
        default=default,
        default_factory=factory,
        repr=shown,
        metadata={_KEY: Setting(help, **kwargs)},
    )


class Declared(NamedTuple):
    name: str  # the field's
    meta: Setting
    kind: type  # the field's type, None removed
    default: Any  # in the flag's unit; MISSING: the flag is required

    @property
    def flag(self) -> str:
        return self.meta.flag or "--" + self.name.replace("_", "-")

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    def env(self, prefix: str) -> str:
        return prefix + self.dest.upper()

    def env_value(self, prefix: str, environ: Mapping[str, str] | None = None) -> str | None:
        """The setting's value in the environment (an empty variable is unset), else an old
        variable's, announced as deprecated on stderr."""
        env = os.environ if environ is None else environ
        for name in (self.env(prefix), *self.meta.old_env):
            value = env.get(name, "").strip()
            if value:
                if name != self.env(prefix) and name not in _ANNOUNCED:
                    _ANNOUNCED.add(name)
                    print(f"{name} is deprecated: set {self.env(prefix)}", file=sys.stderr)
                return value
        return None

    def default_text(self) -> str | None:
        """The default as --help and docs/settings.md show it (None: nothing to show)."""
        value = self.default
        if self.meta.default_text is not None or value in (dataclasses.MISSING, None):
            return self.meta.default_text
        if self.kind is bool:
            return None
        if isinstance(value, tuple):
            return ",".join(value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    def help(self, prefix: str) -> str:
        text = self.default_text()
        old = f" ({', '.join(self.meta.old_flags)}: deprecated)" if self.meta.old_flags else ""
        shown = "" if text is None else f"default {text}; "
        return f"{self.meta.help}{old} [{shown}{self.env(prefix)}]"


def _kind(cls: type, field: dataclasses.Field[Any]) -> type:
    hint: Any = field.type
    if isinstance(hint, str):  # from __future__ import annotations: in its module's names
        owner = next(c for c in cls.__mro__ if field.name in getattr(c, "__annotations__", {}))
        hint = eval(hint, vars(sys.modules[owner.__module__]))
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return typing.get_origin(hint) or hint


def _nested(cls: type, field: dataclasses.Field[Any]) -> type | None:
    kind = _kind(cls, field)
    if _KEY in field.metadata or "imagesim.not_flags" in field.metadata:
        return None
    return kind if field.default_factory is kind else None


def declared(
    cls: type, defaults: Mapping[str, Any] | None = None, nested: bool = True
) -> Iterator[Declared]:
    """The settings of a dataclass (and of its nested settings), in declaration order;
    `defaults` overrides declared defaults by field name (each server's --port)."""
    for field in dataclasses.fields(cls):
        inner = _nested(cls, field)
        if inner is not None and nested:
            yield from declared(inner)
        if _KEY not in field.metadata:
            continue
        meta: Setting = field.metadata[_KEY]
        if defaults and field.name in defaults:
            value = defaults[field.name]
        elif field.default_factory is not dataclasses.MISSING:
            value = field.default_factory()
        else:
            value = field.default
        if meta.scale != 1 and value is not None:
            value = value / meta.scale
        value = value.value if isinstance(value, enum.Enum) else value
        yield Declared(field.name, meta, _kind(cls, field), value)


def values(settings: Any) -> dict[str, Any]:
    """The declared settings of one object (not nested ones) by field name: what a server
    reports of its limits (`IndexLimits(**values(limits))` on the wire)."""
    return {item.name: getattr(settings, item.name) for item in declared(type(settings))}


def add_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    prefix: str,
    group: str,
    defaults: Mapping[str, Any] | None = None,
    names: Iterable[str] | None = None,
) -> None:
    """One flag per declared setting of `cls` (or of those of `names`), in --help sections by
    Setting.group (`group` when none); each defaults to its environment variable, else to the
    declaration."""
    sections = {g.title: g for g in parser._action_groups}
    wanted = None if names is None else set(names)
    for item in declared(cls, defaults):
        if wanted is not None and item.name not in wanted:
            continue
        title = item.meta.group or group
        if title not in sections:
            sections[title] = parser.add_argument_group(title)
        add = sections[title].add_argument
        value = item.env_value(prefix)
        help = item.help(prefix).replace("%", "%%")
        if item.kind is bool:
            on = (value or "").strip().lower() in TRUE_WORDS
            add(item.flag, action="store_true", default=on, help=help)
            continue
        kwargs: dict[str, Any] = {"help": help}
        if issubclass(item.kind, enum.Enum):
            kwargs["choices"] = [member.value for member in item.kind]
        elif item.meta.choices:
            kwargs["choices"] = list(item.meta.choices)
        if item.meta.parse is not None or item.meta.scale != 1 or item.kind in (int, float, Path):
            kwargs["type"] = item.meta.parse or (float if item.meta.scale != 1 else item.kind)
        if value is None and item.default is dataclasses.MISSING:
            add(item.flag, required=True, **kwargs)
        else:  # argparse converts a string default with `type`, like a command-line value
            add(item.flag, default=item.default if value is None else value, **kwargs)
        for old in item.meta.old_flags:
            add_old_flag(sections[title], old, item.flag, item.dest, **kwargs)


def add_old_flag(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    old: str,
    new: str,
    dest: str,
    **kwargs: Any,
) -> None:
    """`old`, an earlier spelling of the flag `new` (same `dest`), still accepted: hidden from
    help, it sets the same value and says on stderr that it is deprecated
    (docs/api-changes.md lists each rename). `kwargs`: the new flag's type, choices..."""
    kwargs = {k: v for k, v in kwargs.items() if k in ("type", "choices", "metavar")}
    parser.add_argument(
        old,
        dest=dest,
        action=_Deprecated,
        new=new,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
        **kwargs,
    )


class _Deprecated(argparse.Action):
    """An old spelling of a flag: sets the same value, and says the new name on stderr."""

    def __init__(self, *args: Any, new: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.new = new

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(f"{option_string} is deprecated: use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def from_env(cls: type[T], prefix: str, environ: Mapping[str, str] | None = None) -> T:
    """The settings the environment alone describes (unset: the declared defaults)."""
    fields: dict[str, Any] = {}
    for item in declared(cls, nested=False):
        value = item.env_value(prefix, environ)
        if value is None:
            continue
        if item.kind is bool:
            fields[item.name] = value.lower() in TRUE_WORDS
        else:
            parse = item.meta.parse or item.kind
            fields[item.name] = (
                parse(value) * item.meta.scale if item.meta.scale != 1 else parse(value)
            )
    return cls(**fields)


def from_args(cls: type[T], args: argparse.Namespace, **extra: Any) -> T:
    """The settings object the parsed flags describe (`extra`: fields set otherwise)."""
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        inner = _nested(cls, field)
        if inner is not None:
            fields[field.name] = from_args(inner, args)
    for item in declared(cls, nested=False):
        value = getattr(args, item.dest)
        if value is not None and item.meta.scale != 1:
            value = item.kind(value * item.meta.scale)
        elif value is not None and issubclass(item.kind, enum.Enum):
            value = item.kind(value)
        fields[item.name] = value
    return cls(**{**fields, **extra})
