"""GET /api/v1/models and /api/v1/models/<provider>/<name>: the catalog, public."""
from __future__ import annotations

from typing import Any

from flask import current_app, jsonify

from .. import state
from ..errors import NotFound
from ..catalog import ModelSpec
from .blueprint import bp


def model_to_api(spec: ModelSpec, env) -> dict[str, Any]:
    """A catalog entry as the API shows it; prices are micro-USD like costUsd."""
    missing = spec.missing_env(env)
    return {
        "id": spec.id, "name": spec.name, "provider": spec.provider, "kind": spec.kind,
        "description": spec.description, "available": not missing,
        "unavailableReason": f"Set {', '.join(missing)} on the server." if missing else None,
        "inputSchema": spec.input_schema, "price": spec.price,
    }


@bp.get("/models")
def list_models():
    """Every model this server knows, available or not."""
    env = current_app.config["PROVIDER_ENV"]
    return jsonify({"data": [model_to_api(spec, env) for spec in state.catalog().all()]})


@bp.get("/models/<provider>/<path:name>")
def get_model(provider: str, name: str):
    """One model by its `provider/name` id."""
    spec = state.catalog().get(f"{provider}/{name}")
    if spec is None:
        raise NotFound(f"No model '{provider}/{name}' on this server.")
    return jsonify(model_to_api(spec, current_app.config["PROVIDER_ENV"]))
