"""Where a Playground form can start from: one of your runs (?from=), its output as a
reference image (?reference=), a shared run (?share=) or a recipe read from a PNG.

Each answer is a Restore: the model, the typed input to show, the run to record as the
new run's parent, and a notice when the request could not be honoured (the form is
then empty). Plain functions over a session; the views decide what to render.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from sqlalchemy.orm import Session

from ..catalog import Catalog, ModelSpec
from ..errors import RunNotFound
from ..models import Run
from ..urls import absolute_url
from . import files, runs, sharing

REFERENCE_FIELD = "image_urls"


@dataclass(frozen=True)
class Restore:
    """A form to show: `spec` None means "the default form", with `notice` saying why."""

    spec: ModelSpec | None = None
    input: dict = field(default_factory=dict)
    parent_id: str | None = None
    notice: str | None = None

    @property
    def seed_mode(self) -> str:
        """A restored seed is meant to be used again; otherwise each run gets a new one."""
        return "keep" if "seed" in self.input else "new"


NOT_YOURS = ("There is no run with id '{}' in your account, so the form starts empty. "
             "It may belong to another account, or the id may be mistyped.")


def _own_run(session: Session, user_id: int | None, run_id: str) -> Run | None:
    """The user's run, or None (anonymous, another account's, missing)."""
    if user_id is None:
        return None
    try:
        return runs.get_run(session, user_id, run_id)
    except RunNotFound:
        return None


def _refused(run_id: str, user_id: int | None) -> Restore:
    if user_id is None:
        return Restore(notice="Sign in to open one of your runs in the Playground.")
    return Restore(notice=NOT_YOURS.format(run_id[:40]))


def from_run(session: Session, catalog: Catalog, user_id: int | None, run_id: str) -> Restore:
    """The form exactly as `run_id` was run: model and every input field."""
    run = _own_run(session, user_id, run_id)
    if run is None:
        return _refused(run_id, user_id)
    spec = catalog.get(run.model)
    if spec is None:
        return Restore(notice=f"Model '{run.model}' is no longer offered by this server.")
    return Restore(spec, dict(run.input or {}), parent_id=run.id)


def as_reference(session: Session, catalog: Catalog, env: Mapping[str, str], base_url: str,
                 user_id: int | None, run_id: str) -> Restore:
    """The run's first output as the reference image (`image_urls`) of a new run.

    The run's own model is kept when it takes reference images; otherwise the first
    available model of the same kind that does (or, if none is available, the first one
    at all, so the person sees what it would take).
    """
    run = _own_run(session, user_id, run_id)
    if run is None:
        return _refused(run_id, user_id)
    first = (run.output_urls or [None])[0]
    if first is None:
        return Restore(notice="That run has no output yet to use as a reference.")
    if files.is_video(first):
        return Restore(notice="Only image outputs can be used as a reference image.")
    spec = _reference_model(catalog, env, catalog.get(run.model), run)
    if spec is None:
        return Restore(notice="No model on this server takes reference images.")
    carried = {name: value for name, value in (run.input or {}).items() if name != "seed"}
    carried[REFERENCE_FIELD] = [absolute_url(base_url, first)]
    return Restore(spec, carried, parent_id=run.id)


def _reference_model(catalog: Catalog, env: Mapping[str, str], own: ModelSpec | None,
                     run: Run) -> ModelSpec | None:
    if own is not None and REFERENCE_FIELD in own.properties:
        return own
    kind = own.kind if own is not None else "image"
    candidates = [spec for spec in catalog.all()
                  if spec.kind == kind and REFERENCE_FIELD in spec.properties]
    available = [spec for spec in candidates if spec.is_available(env)]
    return (available or candidates or [None])[0]


def from_share(session: Session, catalog: Catalog, token: str) -> Restore:
    """A shared run's model and input, without the prompt if its owner hid it."""
    run = sharing.find_shared(session, token)
    if run is None:
        return Restore(notice="That share link is not valid any more, so the form starts empty.")
    spec = catalog.get(run.model)
    if spec is None:
        return Restore(notice=f"Model '{run.model}' is no longer offered by this server.")
    return Restore(spec, sharing.shared_input(run))


def from_recipe(session: Session, catalog: Catalog, user_id: int | None,
                recipe: object) -> Restore:
    """The form described by a recipe read from a PNG (see recipe.py).

    The recipe is untrusted: only a known model and that model's fields are used, and
    its run becomes the parent only if it is one of the user's own runs.
    """
    if not isinstance(recipe, dict) or not isinstance(recipe.get("model"), str):
        return Restore(notice="This file carries no Runbase recipe.")
    spec = catalog.get(recipe["model"])
    if spec is None:
        return Restore(notice=f"This file was made with '{recipe['model'][:200]}', "
                              "which this server doesn't offer.")
    data = recipe.get("input")
    data = {name: value for name, value in data.items() if name in spec.properties} \
        if isinstance(data, dict) else {}
    run_id = recipe.get("runId")
    own = _own_run(session, user_id, run_id) if isinstance(run_id, str) else None
    return Restore(spec, data, parent_id=own.id if own is not None else None)

