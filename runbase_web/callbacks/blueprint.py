"""The callbacks' blueprint, apart from the package so route modules can import it without
importing the package that imports them."""
from flask import Blueprint

from ..services.callbacks import PATH_PREFIX

bp = Blueprint("callbacks", __name__, url_prefix=PATH_PREFIX)
