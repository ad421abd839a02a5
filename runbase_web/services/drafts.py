"""Playground forms kept for a visitor who pressed Run before signing in: stored on the
server (a file under the data directory, named by an unguessable token), so a long
prompt never travels in a URL or a cookie. The views keep the token in the browser's
session; the draft comes back once, after sign-up or sign-in."""
from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

#: Drafts older than this are deleted when the next one is saved.
MAX_AGE_SECONDS = 24 * 3600
#: A form larger than this is not kept (the prompt alone is at most 4000 characters).
MAX_BYTES = 64 * 1024


def _folder(data_dir: str | Path) -> Path:
    return Path(data_dir) / "drafts"


def save(data_dir: str | Path, draft: dict[str, Any]) -> str | None:
    """Store a draft and return its token (None when it is too large to keep)."""
    body = json.dumps(draft, ensure_ascii=False)
    if len(body.encode("utf-8")) > MAX_BYTES:
        return None
    folder = _folder(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    _prune(folder)
    token = secrets.token_urlsafe(24)
    (folder / f"{token}.json").write_text(body, encoding="utf-8")
    return token


def take(data_dir: str | Path, token: str | None) -> dict[str, Any] | None:
    """The draft saved under `token`, removed from the store; None if there is none."""
    if not token or not token.replace("-", "").replace("_", "").isalnum() or len(token) > 64:
        return None
    path = _folder(data_dir) / f"{token}.json"
    try:
        draft = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    path.unlink(missing_ok=True)
    return draft if isinstance(draft, dict) else None


def _prune(folder: Path) -> None:
    """Delete drafts nobody came back for."""
    cutoff = time.time() - MAX_AGE_SECONDS
    for path in folder.glob("*.json"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
        except OSError:
            continue
