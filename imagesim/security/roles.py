"""Roles and the role each RPC needs.

`read` < `write` < `admin`: a key with a role may do everything the roles below it may.
Methods are named as gRPC puts them on the wire ("/package.Service/Method"); the web server maps
its routes onto the same roles.
"""

from __future__ import annotations

from enum import IntEnum


class Role(IntEnum):
    READ = 1
    WRITE = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(
                f"unknown role {name!r} (roles: {', '.join(r.label for r in cls)})"
            ) from None

    def allows(self, needed: Role) -> bool:
        return self >= needed


# Calls anyone may make, with or without a key: load balancers and orchestrators probe health.
OPEN = "open"

_EMBEDDER = "/imagesim.v1.Embedder/"
_INDEX = "/imagesim.v1.Index/"
METHOD_ROLES: dict[str, Role | str] = {
    _EMBEDDER + "Embed": Role.READ,
    _EMBEDDER + "EmbedStream": Role.READ,
    _EMBEDDER + "Info": Role.READ,
    _INDEX + "Search": Role.READ,
    _INDEX + "Get": Role.READ,
    _INDEX + "Contains": Role.READ,
    _INDEX + "Scan": Role.READ,
    _INDEX + "Stats": Role.READ,
    _INDEX + "Add": Role.WRITE,
    _INDEX + "AddStream": Role.WRITE,
    _INDEX + "Remove": Role.WRITE,
    _INDEX + "Build": Role.ADMIN,
    _INDEX + "SetLayout": Role.ADMIN,
    # Reflection describes the API: whoever may read may look at it.
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": Role.READ,
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo": Role.READ,
    "/grpc.health.v1.Health/Check": OPEN,
    "/grpc.health.v1.Health/Watch": OPEN,
}


def required_role(method: str) -> Role | str:
    """The role `method` needs, or OPEN. A method nobody listed needs admin: a new RPC is
    closed until it is given its role here."""
    return METHOD_ROLES.get(method, Role.ADMIN)
