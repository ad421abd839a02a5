"""The public model catalog (/models, one page per model with its Playground form) and
the API docs (/docs), written for this server: its base URL, models and settings."""
from __future__ import annotations

from flask import abort, current_app, render_template, request

from .. import htmx, state
from ..presenters.api_errors import error_rows
from ..presenters.examples import sample_input
from ..presenters.run_form import form_context
from ..services.snippets import curl_snippet, python_snippet
from ..urls import public_base_url
from .blueprint import bp
from .catalog_presenters import (docs_example, filter_options, input_rows, model_card,
                                 model_cards, price_table)

#: The docs pages, in reading order: slug -> title (each is templates/web/docs/<slug>.html).
DOC_PAGES = {
    "quickstart": "Quickstart",
    "concepts": "Core concepts",
    "authentication": "Authentication",
    "errors": "Errors",
    "rate-limits": "Rate limits",
}


def _env() -> dict:
    """The provider variables that are set: they decide which models are available."""
    return current_app.config["PROVIDER_ENV"]


@bp.get("/models")
def models_index():
    """The catalog as cards, filtered by provider, kind and a search on id and name; htmx
    requests get only the results, so the filter form updates them in place."""
    filters = {name: request.args.get(name, "").strip() for name in ("provider", "kind", "q")}
    cards = model_cards(state.catalog(), _env(), provider=filters["provider"],
                        kind=filters["kind"], query=filters["q"])
    template = "web/models/_results.html" if htmx.is_htmx() else "web/models/index.html"
    return htmx.render_varying(template, cards=cards, filters=filters,
                               options=filter_options(state.catalog()))


@bp.get("/models/<provider>/<path:name>")
def model_page(provider: str, name: str):
    """One model: description, inputs, prices, API examples and its Playground form."""
    spec = state.catalog().get(f"{provider}/{name}")
    if spec is None:
        abort(404, description=f"There is no model '{provider}/{name}' on this server.")
    base_url, example = public_base_url(), sample_input(spec)
    return render_template(
        "web/models/model.html", card=model_card(spec, _env()), inputs=input_rows(spec),
        prices=price_table(spec), base_url=base_url,
        curl=curl_snippet(base_url, spec.id, example),
        python=python_snippet(base_url, spec.id, example),
        **form_context(spec, _env()))


@bp.get("/docs")
def docs_index():
    """The docs' front page: what each page covers, and the endpoints."""
    return render_template("web/docs/index.html", **_docs_context(None))


@bp.get("/docs/<page>")
def docs_page(page: str):
    """One docs page."""
    if page not in DOC_PAGES:
        abort(404, description=f"There is no docs page '{page}'.")
    return render_template(f"web/docs/{page}.html", **_docs_context(page))


def _docs_context(page: str | None) -> dict:
    """What every docs page may show: the server's URL, a model it can run, its limits."""
    base_url, env, catalog = public_base_url(), _env(), state.catalog()
    return {
        "pages": DOC_PAGES, "page": page, "base_url": base_url,
        **docs_example(catalog, env, base_url),
        "errors": error_rows(), "rate_limit": current_app.config["RATE_LIMIT"],
        "auth_rate_limit": current_app.config.get("AUTH_RATE_LIMIT"),
        "signup_credit": current_app.config.get("SIGNUP_CREDIT_MICROS", 0),
        "public_url": current_app.config.get("PUBLIC_URL", ""),
        "available": [spec for spec in catalog.all() if spec.is_available(env)],
    }
