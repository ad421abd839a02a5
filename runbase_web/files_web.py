"""Serving stored outputs at /files/generated/<name>: immutable, cacheable, unguessable."""
from __future__ import annotations

import time

from flask import Blueprint, abort, current_app, redirect, request, send_file

from . import state
from .extensions import db, reads_only
from .services import files
from .storage import SAFE_NAME, LocalStorage

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
    storage = state.storage()
    if isinstance(storage, LocalStorage):
        path = storage.path(row.name)
        if path is None:
            abort(404)
        response = send_file(path, mimetype=row.content_type, conditional=True,
                             etag=row.sha256, max_age=max_age)
    else:
        response = _send_from_store(storage, row, max_age)
    return close_when_dropped(response)


def _send_from_store(storage, row, max_age: int):
    """What send_file answers, for a file that is not on this disk (S3): headers from the
    file's row, conditional and range requests decided before storage is asked (a 304
    costs no request to it), and only the bytes a range wants fetched from it."""
    response = current_app.response_class([], mimetype=row.content_type,
                                          direct_passthrough=True)
    response.content_length = row.size_bytes
    response.last_modified = row.created_at
    response.set_etag(row.sha256)
    response.cache_control.no_cache = True
    if max_age > 0:
        response.cache_control.no_cache = None
        response.cache_control.public = True
    response.cache_control.max_age = max_age
    response.expires = int(time.time() + max_age)
    response.make_conditional(request, accept_ranges=True, complete_length=row.size_bytes)
    if response.status_code == 304:
        return response
    if request.method == "HEAD":
        if storage.size(row.name) is None:
            abort(404)
        return response
    if response.status_code == 206:
        chunks = storage.stream(row.name, response.content_range.start,
                                response.content_range.stop)
    else:
        chunks = storage.stream(row.name)
    if chunks is None:
        abort(404)
    response.response = chunks  # in place of the range wrapper around the empty body
    return response


@bp.get("/files/generated/<name>")
@reads_only
def generated(name: str):
    """One output file, by its unguessable name (the name is the capability): streamed,
    or, with RUNBASE_STORAGE_PRESIGN_SECONDS set, a redirect to the bucket itself."""
    row = stored_file_or_404(name)
    seconds = current_app.config.get("STORAGE_PRESIGN_SECONDS")
    if seconds:
        return _redirect_to_bucket(row, seconds)
    response = send_stored(row, max_age=CACHE_SECONDS)
    response.cache_control.public = True
    response.cache_control.immutable = True
    return response


def _redirect_to_bucket(row, seconds: int):
    """302 to a presigned URL of the object, valid `seconds`. The redirect may be kept for
    half that, so a browser following a kept one still gets a live link."""
    response = redirect(state.storage().presigned_url(row.name, seconds), code=302)
    response.cache_control.private = True
    response.cache_control.max_age = seconds // 2
    return response


def close_when_dropped(response):
    """`response` (a file sent by send_file) with its file closed even when the client
    goes away mid-download (see _Closing). Not under gunicorn, which closes what it
    abandons and sends a file it recognises with sendfile(2); elsewhere (Werkzeug's own
    server, test clients) the file closes itself once read or dropped."""
    if not request.environ.get("SERVER_SOFTWARE", "").lower().startswith("gunicorn"):
        response.response = _Closing(response.response)
    return response


class _Closing:
    """A file's chunks, with the file always closed. When a browser drops a download (a
    page left while its images load), Werkzeug's own server abandons the response without
    calling close(): the generator `__iter__` hands out then closes the file as soon as it
    is dropped. A response never iterated (a 304, a HEAD) is closed by close() as usual."""

    def __init__(self, chunks):
        self._chunks = chunks

    def __iter__(self):
        try:
            yield from self._chunks
        finally:
            self.close()

    def close(self) -> None:
        """Close the file (again is harmless)."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def __del__(self):
        # Werkzeug's server can also drop the response without close() and without its
        # iterator: when the client's connection breaks while the server drains it after
        # the body. Close the file before it is collected, not with a ResourceWarning.
        try:
            self.close()
        except Exception:  # noqa: BLE001 - nothing can be raised from a finalizer
            pass
