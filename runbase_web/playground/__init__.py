"""Playground (placeholder)."""
from flask import Blueprint

bp = Blueprint("playground", __name__, url_prefix="/playground")
