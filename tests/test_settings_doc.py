"""docs/settings.md's table is the declarations' one (tools/settings_doc.py): a flag, variable
or default changed in the code without the docs fails here (and the other way round)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def settings_doc():
    spec = importlib.util.spec_from_file_location("settings_doc", ROOT / "tools/settings_doc.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_table_is_the_declarations_table():
    tool = settings_doc()
    text = tool.DOC.read_text()
    assert tool.render(text) == text, "docs/settings.md is stale: run python tools/settings_doc.py"


def test_the_table_follows_the_convention():
    tool = settings_doc()
    table = tool.table()
    assert "| `--max-key-bytes` | `IMAGESIM_INDEX_MAX_KEY_BYTES` |  | 1024 |  |" in table
    assert "| `--port` | `IMAGESIM_<PROC>_PORT` | 50051 | 50061 | 8080 |" in table
    assert "| `--max-message-mb` | `IMAGESIM_<PROC>_MAX_MESSAGE_MB` | 64 | 64 |  |" in table


def test_operations_links_the_table():
    assert "(settings.md)" in (ROOT / "docs/operations.md").read_text()
