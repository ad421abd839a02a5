"""Serving stored outputs at /files/generated/<name>: immutable, cacheable, unguessable."""
from __future__ import annotations

from flask import Blueprint, abort, send_file

from . import state
from .extensions import db, reads_only
from .services import files
from .storage import SAFE_NAME

bp = Blueprint("files", __name__)
#: Outputs never change once written, so clients and proxies may keep them for a year.
CACHE_SECONDS = 365 * 24 * 3600


def stored_file_or_404(name: str):
    """The recorded row of an output file on our storage; 404 for anything else."""
    if not SAFE_NAME.match(name):
        abort(404)  # never a query, never a path, for a name we could not have made
    row = files.find_file(db.session, name)
    if row is None:
        abort(404)
    return row


def send_stored(row, *, max_age: int):
    """A response streaming stored file `row` (ranges and conditional requests answered);
    404 if its bytes are missing from storage."""
    path = state.storage().path(row.name)
    if path is None:
        abort(404)
    response = send_file(path, mimetype=row.content_type, conditional=True, etag=row.sha256,
                         max_age=max_age)
    return close_when_dropped(response)


@bp.get("/files/generated/<name>")
@reads_only
def generated(name: str):
    """One output file, by its unguessable name (the name is the capability)."""
    response = send_stored(stored_file_or_404(name), max_age=CACHE_SECONDS)
    response.cache_control.public = True
    response.cache_control.immutable = True
    return response


def close_when_dropped(response):
    """`response` (a file sent by send_file) with its file closed even when the client
    goes away mid-download (see _closing)."""
    response.response = _closing(response.response)
    return response


def _closing(chunks):
    """The file's chunks, with the file always closed: when a browser drops a download
    (a page left while its images load), Werkzeug's own server abandons the response
    without calling close(); this generator's `finally` runs as soon as it is dropped."""
    try:
        yield from chunks
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
