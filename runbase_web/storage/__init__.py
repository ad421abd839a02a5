"""Where output files live, behind one small interface (Storage): a directory on this
machine's disk by default (local.py), or an S3-compatible bucket (s3.py) when
RUNBASE_STORAGE_URL=s3://bucket/prefix (README, "File storage")."""
from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit

from .base import SAFE_NAME, Storage, StorageUnavailable, content_type_of
from .local import LocalStorage
from .s3 import S3Storage

__all__ = ["SAFE_NAME", "Storage", "StorageUnavailable", "LocalStorage", "S3Storage",
           "content_type_of", "open_storage"]


def open_storage(url: str | None, default_root: str | os.PathLike) -> Storage:
    """The store a (checked, config.parse_storage_url) RUNBASE_STORAGE_URL names:
    `default_root` on disk when unset, file:///path, or s3://bucket/prefix."""
    if not url:
        return LocalStorage(default_root)
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStorage(unquote(parts.path))
    if parts.scheme == "s3":
        return S3Storage(parts.netloc, parts.path)
    raise ValueError(f"unknown storage URL scheme: {parts.scheme!r}")
