"""Addresses the API's answers link to (a result's thumbnail, its "more like this")."""

from __future__ import annotations

from urllib.parse import quote


def thumbnail_url(key: str) -> str:
    return "/api/thumbnail?key=" + quote(key, safe="")


def similar_url(key: str) -> str:
    return "/?key=" + quote(key, safe="")
