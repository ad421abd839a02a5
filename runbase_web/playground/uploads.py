"""POST /playground/files: the Playground's drop zone uploads reference images here, with
the session and its CSRF token, through the same service and limits as POST /api/v1/files.

Answers JSON in the API's shapes (the file object, or the error envelope) for uploads.js.
"""
from __future__ import annotations

from flask import current_app, jsonify
from flask_login import current_user

from .. import state
from ..api.files import uploaded_bytes
from ..errors import RunbaseError
from ..extensions import db, rollback_quietly
from ..security import body_limit
from ..services import uploads
from ..urls import public_base_url
from .blueprint import bp


def _refusal(error: RunbaseError):
    """The error envelope with the refusal's status, for the drop zone to show."""
    response = jsonify({"error": {"message": error.message, "code": error.code}})
    response.status_code = error.status
    return response


@bp.post("/files")
@body_limit("UPLOAD_MAX_BYTES")
def upload_file():
    """Store one image for the signed-in person: 201 with its id, URL, type and size."""
    if not current_user.is_authenticated:
        return _refusal(_SignInFirst("Sign in to upload images."))
    try:
        limit = current_app.config["UPLOAD_MAX_BYTES"]
        row = uploads.store_upload(db.session, state.storage(), user_id=current_user.id,
                                   data=uploaded_bytes(limit), max_bytes=limit)
    except RunbaseError as error:
        rollback_quietly()
        return _refusal(error)
    response = jsonify(uploads.file_object(row, public_base_url()))
    response.status_code = 201
    return response


class _SignInFirst(RunbaseError):
    """A visitor tried to upload: uploads belong to an account."""

    status = 401
    code = "sign_in_required"
