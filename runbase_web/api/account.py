"""GET /api/v1/account: the balance and this key's spend and limit."""
from __future__ import annotations

from flask import g, jsonify

from ..extensions import db, reads_only
from ..services import accounts
from .auth import require_key
from .blueprint import bp


@bp.get("/account")
@reads_only
@require_key
def get_account():
    """The caller's balance and key, all money in micro-USD."""
    account = accounts.key_account(db.session, g.caller.user_id, g.caller.key_id)
    return jsonify({
        "email": account.email,
        "balanceUsd": account.balance_micros,
        "apiKey": {
            "name": account.key.name,
            "prefix": account.key.prefix,
            "spentUsd": account.key.spent_micros,
            "spendLimitUsd": account.key.spend_limit_micros,
            "remainingUsd": account.remaining_micros,
        },
    })
