"""The HTML pages (their scripts and styles are the static files create_app mounts)."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


def page(name: str) -> FileResponse:
    return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


@router.get("/")
def search_page() -> FileResponse:
    return page("index.html")


@router.get("/duplicates")
def duplicates_page() -> FileResponse:
    return page("duplicates.html")


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


@router.get("/outliers")
def outliers_page() -> FileResponse:
    return page("outliers.html")
