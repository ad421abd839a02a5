"""Settings → Credits (balance, history, CSV, Stripe top-up), the Stripe webhook, and the
admin credit page."""
from __future__ import annotations

import requests
from flask import (Response, abort, current_app, flash, jsonify, redirect, render_template,
                   request, stream_with_context, url_for)
from flask_login import current_user, login_required

from ..errors import RunbaseError
from ..extensions import csrf, db
from ..models import utcnow
from ..money import format_usd, parse_dollars
from ..services import accounts, stripe_checkout
from ..services import billing as billing_service
from ..urls import absolute_url, public_base_url
from .blueprint import bp


def _cursor(name: str) -> int | None:
    value = request.args.get(name, "")
    # Ids fit in 18 digits; longer input would overflow SQLite's integer binding.
    return int(value) if value.isdigit() and len(value) <= 18 else None


def _credits_page(*, errors: dict | None = None, custom_amount: str = "", status: int = 200):
    page = billing_service.ledger_page(db.session, current_user.id, before=_cursor("before"),
                                       after=_cursor("after"))
    return render_template(
        "web/billing.html", page=page, errors=errors or {}, custom_amount=custom_amount,
        topups_enabled=stripe_checkout.is_configured(current_app.config),
        presets=stripe_checkout.PRESET_CENTS, min_cents=stripe_checkout.MIN_TOPUP_CENTS,
        max_cents=stripe_checkout.MAX_TOPUP_CENTS,
        returned=request.args.get("topup")), status


@bp.get("/settings/credits")
@login_required
def billing():
    """Balance, top-up and the full ledger history, newest first, 50 per page."""
    return _credits_page()


@bp.get("/settings/credits.csv")
@login_required
def billing_csv():
    """The whole ledger as a CSV download (streamed in batches)."""
    filename = f"runbase-ledger-{utcnow():%Y-%m-%d}.csv"
    rows = stream_with_context(_csv_chunks(current_user.id))
    return Response(rows, mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store"})


def _csv_chunks(user_id: int):
    """The CSV chunks, read with the session of the streaming context (the view's own
    session is closed by then). Each read transaction ends before its chunk goes out:
    on SQLite every transaction holds the write lock, and a slow download must not
    block the writers."""
    try:
        for chunk in billing_service.ledger_csv(db.session, user_id):
            db.session.rollback()
            yield chunk
    finally:
        db.session.rollback()


@bp.post("/settings/credits/topup")
@login_required
def billing_topup():
    """Start a Stripe Checkout payment for the chosen amount and send the browser there."""
    if not stripe_checkout.is_configured(current_app.config):
        abort(404)
    custom = request.form.get("custom_amount", "")
    try:
        cents = stripe_checkout.topup_cents(request.form.get("amount"), custom)
        created = stripe_checkout.create_checkout_session(
            requests.Session(), api_base=current_app.config["STRIPE_API_BASE"],
            secret_key=current_app.config["STRIPE_SECRET_KEY"],
            form=stripe_checkout.checkout_form(
                user_id=current_user.id, cents=cents,
                success_url=_return_url("success") + "&session_id={CHECKOUT_SESSION_ID}",
                cancel_url=_return_url("canceled")))
    except RunbaseError as error:
        return _credits_page(errors={error.field or "form": error.message},
                             custom_amount=custom, status=422 if error.status < 500 else 502)
    # Committed before the browser goes to Stripe: the webhook credits only recorded
    # sessions, so a session must be on record before anyone can pay it.
    stripe_checkout.record_session(db.session, created, user_id=current_user.id, cents=cents)
    db.session.commit()
    return redirect(created["url"], 303)


def _return_url(outcome: str) -> str:
    """Where Stripe sends the browser back; built by hand so Stripe's
    {CHECKOUT_SESSION_ID} placeholder is not URL-encoded."""
    return absolute_url(public_base_url(), url_for("web.billing")) + f"?topup={outcome}"


@bp.post("/stripe/webhook")
@csrf.exempt
def stripe_webhook():
    """Stripe's events: a paid Checkout Session this server created credits the account it
    was created for, once; anything else is acknowledged (200) and not credited."""
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        abort(404)
    payload = request.get_data()  # cached: a retried dispatch reads it again
    try:
        stripe_checkout.verify_signature(payload, request.headers.get("Stripe-Signature"), secret)
        event = stripe_checkout.parse_event(payload)
    except (stripe_checkout.SignatureError, ValueError) as error:
        current_app.logger.warning("Stripe webhook refused: %s", error)
        return jsonify({"error": "invalid signature or payload"}), 400
    # A 200 for events not credited too: Stripe would otherwise retry them for days.
    topup = stripe_checkout.paid_topup(db.session, event)
    if topup is None:
        return jsonify({"received": True, "credited": False})
    credited = stripe_checkout.credit_topup(db.session, topup)
    db.session.commit()
    return jsonify({"received": True, "credited": credited})


# --- admin -------------------------------------------------------------------------------


def _admin_page(email: str, *, errors: dict | None = None, form: dict | None = None,
                status: int = 200):
    found = accounts.find_user(db.session, email) if email.strip() else None
    entries = billing_service.recent_entries(db.session, found.id) if found else []
    return render_template("web/admin_credit.html", email=email, found=found,
                           entries=entries, errors=errors or {}, form=form or {}), status


@bp.route("/admin/credit", methods=["GET", "POST"])
def admin_credit():
    """Find an account by email, see its balance and newest entries, grant or adjust
    credit with a note. Admins only; anyone else gets a plain 404."""
    if not (current_user.is_authenticated and current_user.is_admin):
        abort(404)
    if request.method == "GET":
        return _admin_page(request.args.get("email", ""))
    email = request.form.get("email", "")
    user = accounts.find_user(db.session, email)
    if user is None:
        return _admin_page(email, errors={"email": "No account with this email."}, status=422)
    adjust = request.form.get("action") == "adjust"
    try:
        micros = parse_dollars(request.form.get("amount", ""), field="amount", decimals=6,
                               negative=adjust,
                               maximum_micros=billing_service.MAX_OPERATOR_CREDIT_MICROS)
        billing_service.operator_credit(db.session, user.id, micros, adjust=adjust,
                                        note=request.form.get("note", ""), by=current_user.email)
    except RunbaseError as error:  # refused before anything was written
        return _admin_page(email, errors={error.field or "amount": error.message},
                           form=request.form, status=422)
    db.session.commit()
    flash(f"{'Adjusted' if adjust else 'Granted'} {format_usd(micros)} "
          f"for {user.email}.", "success")
    return redirect(url_for("web.admin_credit", email=user.email), 303)
