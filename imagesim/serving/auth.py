"""API-key authorization for every gRPC server: one interceptor, roles from imagesim.security.

`authorization: Bearer KEY` on each call. No key or an unknown key: UNAUTHENTICATED
(reason UNAUTHENTICATED_CALLER); a key without the role the method needs: PERMISSION_DENIED
(reason ROLE_REQUIRED, metadata {"role": needed}). Health is open. Runs before the call takes a
handler thread or a stream slot, and before the request is parsed.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from imagesim.errors import Reason
from imagesim.security import OPEN, KeyFile, Role, bearer_token, required_role
from imagesim.serving.errors import abort, rich_status
from imagesim.serving.handlers import Behavior, metadata_value, wrap_handler

log = logging.getLogger(__name__)


def _refusal(status: Any):
    def wrap(_behavior: Behavior, _requests: bool, _responses: bool) -> Behavior:
        def refuse(_request: Any, context: grpc.ServicerContext) -> Any:
            abort(context, status)

        return refuse

    return wrap


class ApiKeyInterceptor(grpc.ServerInterceptor):
    def __init__(self, keys: KeyFile) -> None:
        self.keys = keys

    def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        needed = required_role(method)
        if needed == OPEN:
            return continuation(handler_call_details)
        assert isinstance(needed, Role)
        header = metadata_value(handler_call_details.invocation_metadata, "authorization")
        token = bearer_token(header if isinstance(header, str) else None)
        role = self.keys.role_of(token)
        name = method.rsplit("/", 1)[-1]
        if role is not None and role.allows(needed):
            return continuation(handler_call_details)
        if role is None:
            status = rich_status(
                grpc.StatusCode.UNAUTHENTICATED,
                "unknown API key"
                if token
                else "an API key is needed: send 'authorization: "
                "Bearer KEY' (imagesim: --api-key or IMAGESIM_API_KEY)",
                Reason.UNAUTHENTICATED_CALLER,
            )
        else:
            status = rich_status(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{name} needs the '{needed.label}' role; this key has '{role.label}'",
                Reason.ROLE_REQUIRED,
                {"role": needed.label},
            )
        log.debug("refused %s (status %d)", method, status.code)
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # UNIMPLEMENTED: the method list is public (the .proto)
        return wrap_handler(handler, _refusal(status), deserialize=False)
