"""Settings → Webhooks (signing secret, how to verify, recent deliveries), a run's
delivery log, and Resend."""
from __future__ import annotations

from flask import abort, current_app, flash, make_response, redirect, render_template, url_for
from flask_login import current_user, login_required

from .. import state
from ..extensions import db
from ..htmx import is_htmx, vary_on_htmx
from ..services import runs, webhooks
from .blueprint import bp

#: How many deliveries the settings page lists.
RECENT_DELIVERIES = 20

#: Shown on the settings page; tests run it against real deliveries, so it stays correct.
VERIFY_SNIPPET = '''\
import base64, hashlib, hmac, time

def verify(secret, headers, body, tolerance=300):
    """True if a Runbase webhook is authentic. `body` is the raw request body (bytes);
    `headers` must look names up case-insensitively (e.g. Flask's request.headers)."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        return False
    try:
        if abs(time.time() - int(timestamp)) > tolerance:
            return False  # too old or too new: a replay
    except ValueError:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, candidate.partition(",")[2])
               for candidate in signatures.split() if candidate.startswith("v1,"))
'''

USAGE_SNIPPET = '''\
@app.post("/runbase-webhook")
def runbase_webhook():
    if not verify(RUNBASE_WEBHOOK_SECRET, request.headers, request.get_data()):
        abort(401)
    if already_handled(request.headers["webhook-id"]):  # retries and Resend reuse the id
        return "", 200
    run = request.get_json()  # the run object, as GET /api/v1/runs/<id> returns it
    ...
    return "", 200
'''


@bp.get("/settings/webhooks")
@login_required
def webhook_settings():
    """The signing secret (created on first visit), how to verify, recent deliveries."""
    secret = webhooks.ensure_secret(db.session, current_user.id)
    db.session.commit()
    recent = webhooks.recent_deliveries(db.session, current_user.id, RECENT_DELIVERIES)
    page = render_template(
        "web/webhooks/settings.html", secret=secret, deliveries=recent,
        attempts=webhooks.attempts_of(db.session, [d.id for d in recent]),
        verify_snippet=VERIFY_SNIPPET, usage_snippet=USAGE_SNIPPET,
        public_url=current_app.config.get("PUBLIC_URL"))
    response = make_response(page)
    response.headers["Cache-Control"] = "no-store"  # the page holds the secret
    return response


@bp.post("/settings/webhooks/rotate")
@login_required
def rotate_webhook_secret():
    """Replace the signing secret; every attempt from now on is signed with the new one."""
    webhooks.rotate_secret(db.session, current_user.id)
    db.session.commit()
    flash("New signing secret created. Deliveries from now on are signed with it: "
          "update your receivers.", "success")
    return redirect(url_for("web.webhook_settings"), 303)


def _run_log(run_id: str):
    """The delivery log fragment of one of the user's runs; 404 for anyone else's."""
    run = runs.get_run(db.session, current_user.id, run_id)  # anyone else's: 404 (errors_web)
    deliveries = webhooks.deliveries_for_run(db.session, current_user.id, run.id)
    page = render_template("web/webhooks/_log.html", run=run, deliveries=deliveries,
                           attempts=webhooks.attempts_of(db.session, [d.id for d in deliveries]))
    return vary_on_htmx(make_response(page))


@bp.get("/runs/<run_id>/webhooks")
@login_required
def run_webhooks(run_id: str):
    """The run's webhook deliveries and every attempt (a fragment for the run page)."""
    return _run_log(run_id)


@bp.post("/runs/<run_id>/webhooks/<delivery_id>/resend")
@login_required
def resend_webhook(run_id: str, delivery_id: str):
    """Queue one more attempt of a delivery now (same webhook-id); owner only."""
    if not webhooks.resend(db.session, current_user.id, run_id, delivery_id):
        abort(404)
    db.session.commit()
    state.wake_worker()
    if is_htmx():
        return _run_log(run_id)
    flash("Delivery queued again; it is sent within a few seconds.", "success")
    return redirect(url_for("web.webhook_settings"), 303)
