"""GET /api/v1/account: the balance and this key's spend and limit."""
from __future__ import annotations

from flask import g, jsonify

from ..extensions import db
from ..models import ApiKey, User
from . import bp
from .auth import require_key


@bp.get("/account")
@require_key
def get_account():
    """The caller's balance and key, all money in micro-USD."""
    user = db.session.get(User, g.caller.user_id)
    key = db.session.get(ApiKey, g.caller.key_id)
    limit = key.spend_limit_micros
    return jsonify({
        "email": user.email,
        "balanceUsd": user.balance_micros,
        "apiKey": {
            "name": key.name,
            "prefix": key.prefix,
            "spentUsd": key.spent_micros,
            "spendLimitUsd": limit,
            "remainingUsd": None if limit is None else max(limit - key.spent_micros, 0),
        },
    })
