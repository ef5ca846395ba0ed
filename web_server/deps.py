"""What the routes get through `Depends`: the objects create_app keeps on `app.state` (one set
per application), and what the caller's key allows.

A route names what it needs by type (`backend: BackendDep`); tests and other applications
get their own objects because nothing here is a module global.
"""

from typing import Annotated

from fastapi import Depends, Query, Request

from imagesim.client.images_root import MAX_KEY_CHARS, ImagesRoot
from imagesim.security import KeyFile, Role
from imagesim.web.auth import caller_may
from imagesim.web.backend import Backend
from imagesim.web.duplicate_jobs import DuplicateJobs
from imagesim.web.review import Outliers
from imagesim.web.settings import WebSettings
from imagesim.web.thumbnails import ThumbnailCache


def get_settings(request: Request) -> WebSettings:
    settings: WebSettings = request.app.state.settings
    return settings


def get_keys(request: Request) -> KeyFile | None:
    """The key file (None: keyless mode)."""
    keys: KeyFile | None = request.app.state.keys
    return keys


def get_backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def get_images(request: Request) -> ImagesRoot:
    images: ImagesRoot = request.app.state.images
    return images


def get_jobs(request: Request) -> DuplicateJobs:
    jobs: DuplicateJobs = request.app.state.jobs
    return jobs


def get_thumbnails(request: Request) -> ThumbnailCache:
    thumbnails: ThumbnailCache = request.app.state.thumbnails
    return thumbnails


def get_outliers(request: Request) -> Outliers:
    outliers: Outliers = request.app.state.outliers
    return outliers


def may_read(request: Request) -> bool:
    """Whether the caller holds a read key (True in keyless mode: one local user)."""
    return caller_may(request.scope, Role.READ)


def may_write(request: Request) -> bool:
    """Whether the caller holds a write key (True in keyless mode)."""
    return caller_may(request.scope, Role.WRITE)


SettingsDep = Annotated[WebSettings, Depends(get_settings)]
KeysDep = Annotated[KeyFile | None, Depends(get_keys)]
BackendDep = Annotated[Backend, Depends(get_backend)]
ImagesDep = Annotated[ImagesRoot, Depends(get_images)]
JobsDep = Annotated[DuplicateJobs, Depends(get_jobs)]
ThumbnailsDep = Annotated[ThumbnailCache, Depends(get_thumbnails)]
OutliersDep = Annotated[Outliers, Depends(get_outliers)]
MayRead = Annotated[bool, Depends(may_read)]
MayWrite = Annotated[bool, Depends(may_write)]

# A query parameter several routes share.
Key = Annotated[str, Query(min_length=1, max_length=MAX_KEY_CHARS, description="item key")]
