"""Baseline: a bare Flask app with one CLI command and one JSON endpoint, what Flask
costs with nothing of ours loaded."""
import click
from flask import Flask, jsonify

app = Flask(__name__)


@app.cli.command("ping")
def ping():
    """Print one word, like create-key prints one key."""
    click.echo("pong")


@app.get("/json")
def json_endpoint():
    """A small JSON answer, like GET /api/v1/runs/:id without the database."""
    return jsonify({"id": "run_x", "status": "succeeded", "costUsd": 1000})
