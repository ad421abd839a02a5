"""Output files: store bytes under an unguessable name and record them."""
from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import StoredFile
from ..storage import Storage

#: Public URL path of generated files (/files/generated/<unguessable>.<ext>).
URL_PREFIX = "/files/generated/"
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp",
              "video/mp4": "mp4", "video/webm": "webm"}
#: Endings of video outputs: ours, and those a provider's URL may carry.
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov")


def store_output(session: Session, storage: Storage, *, user_id: int, run_id: str,
                 data: bytes, content_type: str) -> StoredFile:
    """Write one output and record it; returns the row (its URL path is `url_path(row)`)."""
    extension = EXTENSIONS.get(content_type)
    if extension is None:
        raise ValueError(f"unsupported output type {content_type}")
    name = f"{secrets.token_urlsafe(24)}.{extension}"
    storage.save(name, data)
    row = StoredFile(name=name, run_id=run_id, user_id=user_id, content_type=content_type,
                     size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    session.add(row)
    return row


def url_path(row: StoredFile) -> str:
    """The path part of a file's public URL."""
    return URL_PREFIX + row.name


def is_video(path: str) -> bool:
    """Whether an output's path (or URL) names a video, by its ending."""
    return path.lower().endswith(VIDEO_EXTENSIONS)


def find_file(session: Session, name: str) -> StoredFile | None:
    """The recorded file with this public name."""
    return session.scalar(select(StoredFile).where(StoredFile.name == name))


def discard_run_files(session: Session, storage: Storage, run_id: str) -> None:
    """Delete a run's files, e.g. when the run ended some other way while we stored them."""
    for row in session.scalars(select(StoredFile).where(StoredFile.run_id == run_id)):
        storage.delete(row.name)
        session.delete(row)
