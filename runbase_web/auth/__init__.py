"""Sign up, sign in, sign out (placeholder until the pages land)."""
from flask import Blueprint

from ..extensions import db, login_manager
from ..models import User

bp = Blueprint("auth", __name__, url_prefix="/auth")


@login_manager.user_loader
def load_user(user_id: str):
    """The signed-in account for Flask-Login."""
    return db.session.get(User, int(user_id))
