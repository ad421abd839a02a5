"""Share links: the owner's share / revoke actions (the run page's share panel) and the
public page /s/<token> with its outputs, for anyone holding the link.

The public side shows outputs, model and (unless hidden) the prompt: never the owner,
the run id or anything else of the account. Its output files are served through the
token too: images as copies without any metadata (media_metadata.py), PNGs then with a
recipe that points at the share page instead of the run.
"""
from __future__ import annotations

from flask import Response, abort, render_template, request, url_for
from flask_login import current_user, login_required

from .. import htmx, media_metadata, recipe, state
from ..errors import RunNotFound
from ..extensions import db
from ..files_web import send_stored, stored_file_or_404
from ..models import Run
from ..presenters.outputs import download_name, shared_output_items
from ..services import files, sharing
from ..urls import absolute_url, public_base_url
from .blueprint import bp
from .outputs_views import attachment, poster_response

#: Endpoints answered for anonymous visitors holding a link (a run's, or a grid's from
#: batch_views.py): no referrer, no indexing.
PUBLIC_ENDPOINTS = frozenset({"web.shared_run", "web.shared_output", "web.shared_poster",
                              "web.shared_batch", "web.shared_batch_output"})
#: Shared files may be cached briefly; after a revoke they stop being served.
SHARED_FILE_MAX_AGE = 60
DESCRIPTION_CHARS = 200
#: Models that draw the prompt into the picture itself, as a caption (providers/
#: local_media.py): hiding the prompt keeps it off the page and out of the file's
#: metadata, not out of the pixels, and the share panel says so.
PROMPT_IN_PIXELS_MODELS = frozenset({"local/sketch", "local/sketch-video"})


@bp.after_request
def _private_link_headers(response: Response) -> Response:
    """The token is in the URL: don't send it on as a referrer, and keep it out of search."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


@bp.app_template_global("share_url")
def share_url(run: Run) -> str | None:
    """The absolute public link of a shared run, or None when it is not shared."""
    if not run.share_token:
        return None
    return _share_page_url(run.share_token)


def _share_page_url(token: str) -> str:
    """The absolute address of the public page of the run shared under `token`."""
    return absolute_url(public_base_url(), url_for("web.shared_run", token=token))


@bp.app_template_global("shows_prompt_in_image")
def shows_prompt_in_image(run: Run) -> bool:
    """Whether the run's model writes the prompt into its outputs' pixels."""
    return run.model in PROMPT_IN_PIXELS_MODELS


# --- the owner's actions -------------------------------------------------------------------


def _panel(run: Run, error: str | None = None):
    """The share panel after an action: the fragment for htmx, the run page otherwise."""
    return htmx.fragment_or_redirect(
        url_for("web.run_page", run_id=run.id),
        lambda: render_template("web/share/_panel.html", run=run, share_error=error))


@bp.post("/runs/<run_id>/share")
@login_required
def share_run(run_id: str):
    """Share the run (a new unguessable link), or change whether its prompt is hidden."""
    hide_prompt = request.form.get("hide_prompt", "") not in ("", "0", "false", "off")
    try:
        run = sharing.share_run(db.session, current_user.id, run_id, hide_prompt=hide_prompt)
    except RunNotFound:
        abort(404)
    except sharing.NotShareable as error:
        return _panel(error.run, error.message)
    db.session.commit()
    return _panel(run)


@bp.post("/runs/<run_id>/share/revoke")
@login_required
def revoke_share(run_id: str):
    """Stop sharing: the link answers 404; sharing again makes a new link."""
    try:
        run = sharing.revoke_share(db.session, current_user.id, run_id)
    except RunNotFound:
        abort(404)
    db.session.commit()
    return _panel(run)


# --- the public page -----------------------------------------------------------------------


def _shared_or_404(token: str) -> Run:
    run = sharing.find_shared(db.session, token)
    if run is None:
        abort(404, description="This link is not shared (any more).")
    return run


@bp.get("/s/<token>")
def shared_run(token: str):
    """The public page of a shared run, with link-preview (OpenGraph/Twitter) tags."""
    run = _shared_or_404(token)
    base_url = public_base_url()
    spec = state.catalog().get(run.model)
    prompt = sharing.shared_prompt(run)
    outputs = shared_output_items(run, base_url, prompt)
    model_name = spec.name if spec is not None else run.model
    description = (prompt[:DESCRIPTION_CHARS] + ("…" if len(prompt) > DESCRIPTION_CHARS else "")
                   if prompt else f"Made with {model_name} on Runbase.")
    return render_template(
        "web/share/page.html", run=run, spec=spec, model_name=model_name, prompt=prompt,
        outputs=outputs, description=description,
        page_url=absolute_url(base_url, url_for("web.shared_run", token=token)),
        image=_preview_image(outputs, base_url),
        video=next((item for item in outputs if item["is_video"]), None))


def _preview_image(outputs: list[dict], base_url: str) -> dict | None:
    """The picture link previews show: the first image, else the first video's poster
    (chat apps show a still for a video link only when given one)."""
    image = next((item for item in outputs if not item["is_video"]), None)
    if image is not None:
        return image
    video = next((item for item in outputs if item["poster"]), None)
    return {"url": absolute_url(base_url, video["poster"])} if video else None


@bp.get("/s/<token>/outputs/<int:index>")
def shared_output(token: str, index: int):
    """One output of a shared run. Images are copies without any metadata, PNGs then
    with a recipe without the run id (and without the prompt when it is hidden); videos
    are sent as stored. With ?download=1 browsers save it under a readable name."""
    run, row = _shared_file_or_404(token, index)
    response = public_file_response(row, model=run.model, shown_input=sharing.shared_input(run),
                                    page_url=_share_page_url(run.share_token))
    if request.args.get("download"):
        attachment(response, download_name(prompt=sharing.shared_prompt(run), model=run.model,
                                           number=index + 1, path=row.name))
    return response


@bp.get("/s/<token>/outputs/<int:index>/poster")
def shared_poster(token: str, index: int):
    """The poster still of a shared video, through the token like the video itself (and
    so, like it, gone once the link is revoked). Without metadata, like every shared file."""
    _run, row = _shared_file_or_404(token, index)
    response = poster_response(row.name)
    try:
        response.set_data(media_metadata.public_copy(response.get_data(), "image/jpeg"))
    except media_metadata.MetadataError:
        abort(404)
    response.cache_control.public = True
    response.cache_control.max_age = SHARED_FILE_MAX_AGE
    return response


def _shared_file_or_404(token: str, index: int):
    """The shared run and the stored file of its output `index`; 404 for anything else."""
    run = _shared_or_404(token)
    paths = run.output_urls or []
    if index >= len(paths):
        abort(404)
    return run, stored_file_or_404(paths[index].removeprefix(files.URL_PREFIX))


def public_file_response(row, *, model: str, shown_input: dict, page_url: str) -> Response:
    """A shared output (of a run's link or a grid's) as strangers get it, cacheable.

    Images are copies without any metadata, whether or not the prompt is hidden (a
    provider's text chunks, EXIF, XMP or comments may repeat it, or anything else); PNGs
    then carry the recipe a stranger may see: `model`, `shown_input`, `page_url`. A file
    that holds no readable image is not served at all. Videos are sent as stored: players
    ask for ranges, our own are muxed without metadata (local_media), a provider's are
    served as they came."""
    if row.content_type.startswith("video/"):
        response = send_stored(row, max_age=SHARED_FILE_MAX_AGE)
    else:
        data = state.storage().read(row.name)
        if data is None:
            abort(404)
        try:
            clean = media_metadata.public_copy(data, row.content_type)
        except media_metadata.MetadataError:
            abort(404)
        if row.content_type == "image/png":
            clean = _with_public_recipe(clean, {"model": model, "input": shown_input,
                                                "run": page_url})
        response = Response(clean, mimetype=row.content_type)
    response.cache_control.public = True
    response.cache_control.max_age = SHARED_FILE_MAX_AGE
    return response


def _with_public_recipe(png: bytes, public: dict) -> bytes:
    try:
        return recipe.embed_png_recipe(png, public)
    except ValueError:
        return png  # a recipe too large to embed: the bare copy, which has none
