"""Who may call what: API keys with roles, TLS files, the safe-binding rule.

Shared by every server (the gRPC servers through imagesim.serving.auth, the web server later):
nothing here imports gRPC or a web framework.
"""

from imagesim.security.exposure import check_exposure, is_loopback
from imagesim.security.keys import ApiKeys, KeyFile, KeyFileError, bearer_token
from imagesim.security.roles import OPEN, Role, required_role
from imagesim.security.tls import ReloadingServerContext, TlsFiles

__all__ = [
    "OPEN",
    "ApiKeys",
    "KeyFile",
    "KeyFileError",
    "ReloadingServerContext",
    "Role",
    "TlsFiles",
    "bearer_token",
    "check_exposure",
    "is_loopback",
    "required_role",
]
