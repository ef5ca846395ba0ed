"""Reasons the web server itself refuses a request, beside the services' imagesim.errors.Reason
values (the same machine-readable form: match on these, never on message text)."""

from __future__ import annotations

from enum import Enum

from imagesim.client.images_root import FileReason


class WebReason(str, Enum):
    OUTSIDE_IMAGES_ROOT = FileReason.OUTSIDE_IMAGES_ROOT.value  # (client.images_root)
    IMAGE_FILE_MISSING = FileReason.IMAGE_FILE_MISSING.value
    INVALID_REQUEST = "INVALID_REQUEST"  # a parameter of the wrong type or out of range
    UPLOAD_TOO_SLOW = "UPLOAD_TOO_SLOW"  # the body did not arrive within --upload-timeout
    TOO_MANY_UPLOADS = "TOO_MANY_UPLOADS"  # --max-uploads are being handled
    BUSY = "BUSY"  # thumbnail workers or the duplicates finder are taken: retry
    NO_SUCH_ROUTE = "NO_SUCH_ROUTE"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    CROSS_SITE = "CROSS_SITE"  # an API call or form post another site's page started
    TOO_LARGE = "TOO_LARGE"  # a request body (a plan) over the server's limit
    APPLY_REFUSED = "APPLY_REFUSED"  # no quarantine, another apply running, another collection

    def __str__(self) -> str:  # the name itself, wherever a reason becomes text
        return self.value
