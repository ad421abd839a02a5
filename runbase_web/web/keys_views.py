"""Settings → API keys: list, create (shown once), edit, disable/enable, delete."""
from __future__ import annotations

from flask import abort, flash, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from ..errors import RunbaseError
from ..extensions import db
from ..services import keys
from .blueprint import bp


def _keys_page(*, new_key: str | None = None, errors: dict | None = None, status: int = 200):
    """The keys page; a just-created key is shown in full this once and never cached."""
    page = render_template("web/keys.html", keys=keys.list_keys(db.session, current_user.id),
                           new_key=new_key, errors=errors or {},
                           name=request.form.get("name", "") if errors else "",
                           remaining=keys.remaining_limit)
    response = make_response(page, status)
    if new_key:
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/settings/keys")
@login_required
def api_keys():
    """The account's API keys: name, prefix, created, last used, spent."""
    return _keys_page()


@bp.post("/settings/keys")
@login_required
def create_api_key():
    """Create a key and show it once (rendered, not redirected: it must not sit in a
    cookie or a flash message waiting for the next page)."""
    try:
        _key, full_key = keys.create_key(db.session, current_user.id,
                                         request.form.get("name", ""))
    except RunbaseError as error:  # refused before anything was written
        return _keys_page(errors={error.field or "name": error.message}, status=422)
    db.session.commit()
    return _keys_page(new_key=full_key, status=201)


@bp.post("/settings/keys/<int:key_id>/delete")
@login_required
def delete_api_key(key_id: int):
    """Delete one of the account's keys; it stops authenticating at once."""
    if not keys.delete_key(db.session, current_user.id, key_id):
        abort(404)
    db.session.commit()
    flash("API key deleted. Requests using it are now refused.", "info")
    return redirect(url_for("web.api_keys"), 303)


def _own_key_or_404(key_id: int):
    key = keys.get_key(db.session, current_user.id, key_id)
    if key is None:
        abort(404)
    return key


def _edit_page(key, *, errors: dict | None = None, status: int = 200):
    """The edit form: the stored settings, or what was typed when there are errors."""
    if errors:
        values = {field: request.form.get(field, "") for field in ("name", "ip_allowlist", "spend_limit")}
    else:
        values = {"name": key.name, "ip_allowlist": "\n".join(key.ip_allowlist or []),
                  "spend_limit": keys.limit_text(key.spend_limit_micros)}
    return render_template("web/keys_edit.html", key=key, values=values, errors=errors or {},
                           remaining=keys.remaining_limit(key),
                           max_ips=keys.MAX_ALLOWED_IPS), status


@bp.get("/settings/keys/<int:key_id>/edit")
@login_required
def edit_api_key(key_id: int):
    """Edit one key: name, IP allowlist, lifetime spend limit."""
    return _edit_page(_own_key_or_404(key_id))


@bp.post("/settings/keys/<int:key_id>/edit")
@login_required
def update_api_key(key_id: int):
    """Save a key's settings; invalid input re-renders the form (422) with field errors."""
    key = _own_key_or_404(key_id)
    try:
        settings = keys.parse_settings(request.form.get("name", ""),
                                       request.form.get("ip_allowlist", ""),
                                       request.form.get("spend_limit", ""))
        keys.update_settings(db.session, key, settings)
    except keys.KeySettingsError as error:  # refused before anything was written
        return _edit_page(key, errors=error.errors, status=422)
    db.session.commit()
    flash(f"Saved the settings of “{key.name}”.", "success")
    return redirect(url_for("web.api_keys"), 303)


def _set_disabled(key_id: int, disabled: bool):
    key = keys.set_disabled(db.session, current_user.id, key_id, disabled)
    if key is None:
        abort(404)
    db.session.commit()
    flash(f"“{key.name}” is disabled: requests using it are refused; runs it already "
          "started still finish." if disabled else f"“{key.name}” is enabled again.", "info")
    back_to_edit = request.form.get("back") == "edit"
    return redirect(url_for("web.edit_api_key", key_id=key_id) if back_to_edit
                    else url_for("web.api_keys"), 303)


@bp.post("/settings/keys/<int:key_id>/disable")
@login_required
def disable_api_key(key_id: int):
    """Disable a key: it stops authenticating at once (401 invalid_api_key)."""
    return _set_disabled(key_id, True)


@bp.post("/settings/keys/<int:key_id>/enable")
@login_required
def enable_api_key(key_id: int):
    """Enable a disabled key again."""
    return _set_disabled(key_id, False)
