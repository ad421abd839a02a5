"""The API's blueprint, apart from the package so route modules can import it without
importing the package that imports them."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")
