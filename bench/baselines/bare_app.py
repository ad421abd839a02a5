"""Baseline: a bare Flask app with one CLI command, what `flask --app ...` costs with
nothing of ours loaded."""
import click
from flask import Flask

app = Flask(__name__)


@app.cli.command("ping")
def ping():
    """Print one word, like create-key prints one key."""
    click.echo("pong")
