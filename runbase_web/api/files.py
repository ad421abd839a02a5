"""POST /api/v1/files (upload a reference image) and GET /api/v1/files/<name> (its bytes,
for its owner only)."""
from __future__ import annotations

from flask import current_app, g, jsonify, request
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from .. import state
from ..errors import InvalidInput, MissingApiKey, NotFound
from ..extensions import db, reads_only
from ..files_web import send_stored
from ..security import body_limit
from ..services import uploads
from ..urls import public_base_url
from .auth import authenticate_request, require_key
from .blueprint import bp

#: Owners' browsers may keep a file a day; `private`: never a shared cache.
CACHE_SECONDS = 24 * 3600


def uploaded_bytes(limit: int) -> bytes:
    """The bytes of the request's `file` part, at most one past `limit` (enough to tell a
    file that is too large); InvalidInput when there is no such part."""
    try:
        upload = request.files.get("file")
    except RequestEntityTooLarge:
        raise uploads.too_large(limit) from None
    if upload is None:
        raise InvalidInput("Send the image as a multipart/form-data part named 'file'.",
                           field="file")
    upload.stream.seek(0)  # the view may run twice (a dropped database connection)
    return upload.stream.read(limit + 1)


@bp.post("/files")
@body_limit("UPLOAD_MAX_BYTES")
@require_key
def upload_file():
    """Store an image for use in `image_urls`: 201 with its id, URL, type and size."""
    limit = current_app.config["UPLOAD_MAX_BYTES"]
    row = uploads.store_upload(db.session, state.storage(), user_id=g.caller.user_id,
                               data=uploaded_bytes(limit), max_bytes=limit)
    response = jsonify(uploads.file_object(row, public_base_url()))
    response.status_code = 201
    response.headers["Location"] = uploads.url_path(row)
    return response


def _reader_id() -> int:
    """Who asks for a file: the Bearer key's account when an Authorization header is sent
    (an invalid key is refused as everywhere in the API), else the signed-in browser's;
    neither is 401 `missing_api_key`."""
    if request.headers.get("Authorization"):
        return authenticate_request().user_id
    if current_user.is_authenticated:
        return current_user.id
    raise MissingApiKey("Send your API key as 'Authorization: Bearer sk-...', or sign in.")


@bp.get("/files/<name>")
@reads_only
def get_file(name: str):
    """An uploaded file's bytes, for its owner's key or session; 404 for any other account
    (whether the file exists or not), 401 without a key or session.

    The one API route that also takes the session cookie, so the Playground can show the
    owner's thumbnails: a GET that changes nothing, so CSRF does not apply, and the cookie
    is SameSite=Lax and the answer same-origin only, so other sites cannot embed it."""
    row = uploads.owned_file(db.session, _reader_id(), name)
    if row is None:
        raise NotFound("No such file.")
    response = send_stored(row, max_age=CACHE_SECONDS)
    response.cache_control.private = True
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    response.vary.add("Authorization")
    response.vary.add("Cookie")
    return response
