"""The site's blueprint, apart from the package so route modules can import it without
importing the package that imports them."""
from flask import Blueprint

bp = Blueprint("web", __name__)
