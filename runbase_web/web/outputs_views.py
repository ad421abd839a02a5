"""A run's output files as the output component offers them: a download under a
readable file name, and the poster still of a video.

Both answer exactly whom the file itself answers: a download is the owner's (like the
run page it comes from), a poster is reachable by whoever holds the video's unguessable
name (like /files/generated/<name>)."""
from __future__ import annotations

from flask import Response, abort
from flask_login import current_user, login_required

from .. import posters, state
from ..extensions import db, reads_only
from ..files_web import CACHE_SECONDS, send_stored, stored_file_or_404
from ..presenters.outputs import output_items, stored_name
from ..services import runs
from ..urls import public_base_url
from .blueprint import bp


def attachment(response: Response, filename: str) -> Response:
    """`response` saved by browsers as a file named `filename` instead of shown."""
    response.headers.set("Content-Disposition", "attachment", filename=filename)
    return response


@bp.get("/runs/<run_id>/outputs/<int:index>/download")
@reads_only
@login_required
def download_output(run_id: str, index: int):
    """One output of the signed-in account's run, as a download with a readable name."""
    run = runs.get_run(db.session, current_user.id, run_id)
    items = output_items(run, public_base_url())
    if index >= len(items):
        abort(404)
    name = stored_name(items[index]["src"])
    if name is None:
        abort(404)
    response = send_stored(stored_file_or_404(name), max_age=0)
    response.cache_control.private = True
    return attachment(response, items[index]["filename"])


def poster_response(name: str) -> Response:
    """The JPEG poster of stored video `name` (made on first use); 404 for anything that
    is not a stored video ffmpeg can read."""
    row = stored_file_or_404(name)
    if not row.content_type.startswith("video/"):
        abort(404)
    try:
        still = posters.poster_jpeg(state.storage(), row.name)
    except posters.PosterError:
        abort(404)
    if still is None:
        abort(404)
    return Response(still, mimetype="image/jpeg")


@bp.get("/files/generated/<name>/poster")
@reads_only
def output_poster(name: str):
    """A video output's poster, by the video's unguessable name (the name is the
    capability, as for the video), cached like the video since neither ever changes."""
    response = poster_response(name)
    response.cache_control.public = True
    response.cache_control.immutable = True
    response.cache_control.max_age = CACHE_SECONDS
    return response
