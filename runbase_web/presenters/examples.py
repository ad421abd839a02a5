"""The example every piece of documentation sends: which model, and what input. The docs
pages and the OpenAPI document share it, so both show a run this server can make."""
from __future__ import annotations

from typing import Any, Mapping

from ..catalog import Catalog, ModelSpec

#: The prompt the examples send, by model kind.
SAMPLE_PROMPTS = {
    "image": "A cozy bookshop interior with warm lighting, watercolor style",
    "video": "Waves rolling onto a beach at sunset, slow camera pan",
}


def sample_input(spec: ModelSpec) -> dict[str, Any]:
    """The input the examples send: a sample prompt and every non-empty schema default."""
    prompt = spec.properties["prompt"]
    text = SAMPLE_PROMPTS[spec.kind][: prompt.get("maxLength", 4000)]
    data: dict[str, Any] = {"prompt": text}
    for name, prop in spec.properties.items():
        if name != "prompt" and "default" in prop and prop["default"] not in ([], {}, ""):
            data[name] = prop["default"]
    return data


def example_model(catalog: Catalog, env: Mapping[str, str]) -> ModelSpec:
    """The model the docs use in their examples: local/sketch, which every server can run
    (else the first available model, else the first one)."""
    specs = catalog.all()
    preferred = catalog.get("local/sketch")
    if preferred is not None and preferred.is_available(env):
        return preferred
    return next((spec for spec in specs if spec.is_available(env)), specs[0])
