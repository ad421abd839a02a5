"""The operations blueprint, apart from the package so route modules can import it
without importing the package that imports them."""
from flask import Blueprint

bp = Blueprint("ops", __name__)
