"""Grids (batches): up to 36 runs made together from one form, laid out on one or two
axes (seeds, a field's values, prompt variants, models), created all at once or not at
all, re-run as a new grid, and shared as a whole under one revocable link.

Each cell is an ordinary run, made by RunCreator like every other run: its own cost,
charge, refund and lineage. The batch row only groups and labels them. Plain functions
over a session; the views parse forms into cells and decide what to render.
"""
from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ..errors import RunbaseError
from ..ids import LOWERCASE_AND_DIGITS, random_text
from ..models import Batch, Run, RunStatus, utcnow
from . import sharing
from .run_creation import MAX_SEED, RunCreator, last_seed

#: The most runs one grid makes: enough for a 6×6 sweep, few enough to watch at once.
MAX_CELLS = 36
#: The axis kinds a grid knows (see playground/grid.py for how the form names them).
AXIS_KINDS = ("seed", "field", "prompt", "replace", "model")


class BatchNotFound(RunbaseError):
    """No grid with this id in the account (another account's looks the same)."""

    status = 404
    code = "not_found"


class TooManyCells(RunbaseError):
    """The grid would make more than MAX_CELLS runs."""


@dataclass(frozen=True)
class GridCell:
    """One run to make: where it sits, its model and raw input, and the run it was made
    from (a re-run grid's cells descend from the old grid's)."""

    row: int
    col: int
    model_id: str
    raw_input: dict
    parent_id: str | None = None


def new_batch_id() -> str:
    """`grid_` and 24 random characters: unguessable and URL-safe."""
    return "grid_" + random_text(LOWERCASE_AND_DIGITS, 24)


def axis_size(axes: Mapping[str, Any], name: str) -> int:
    """How many values the axis "x" or "y" has (1 when the grid has no such axis)."""
    axis = axes.get(name)
    return len(axis["values"]) if axis else 1


def _has_seed_axis(axes: Mapping[str, Any]) -> bool:
    return any((axes.get(name) or {}).get("kind") == "seed" for name in ("x", "y"))


def _seeded(session: Session, creator: RunCreator, user_id: int, axes: Mapping[str, Any],
            cells: Sequence[GridCell], seed_mode: str | None) -> list[GridCell]:
    """The cells with the seed control applied to the grid as a whole: without a seed
    axis every cell gets the same seed (one new random seed, or with "keep" the field's
    or your last one), so the cells differ only by what the axes change. Any other mode
    (a re-run's None) leaves the cells' seeds as they are."""
    if _has_seed_axis(axes) or seed_mode not in ("new", "keep"):
        return list(cells)
    shared: int | None = None
    if seed_mode == "keep":
        given = [cell.raw_input.get("seed") for cell in cells if "seed" in cell.raw_input]
        shared = given[0] if given else last_seed(session, user_id)
    if shared is None:
        shared = secrets.randbelow(MAX_SEED + 1)
    seeded = []
    for cell in cells:
        spec = creator.catalog.get(cell.model_id)
        raw = dict(cell.raw_input)
        if spec is not None and "seed" in spec.properties:
            raw["seed"] = shared
        seeded.append(GridCell(cell.row, cell.col, cell.model_id, raw, cell.parent_id))
    return seeded


_INSERT_BATCH = insert(Batch.__table__)


def create_batch(session: Session, creator: RunCreator, *, user_id: int, model_id: str,
                 axes: Mapping[str, Any], cells: Sequence[GridCell],
                 seed_mode: str | None = None, api_key_id: int | None = None,
                 source: str = "playground") -> tuple[Batch, list[Run]]:
    """Make the grid and every cell's run in the caller's transaction, all or none.

    Raises TooManyCells above MAX_CELLS, and ManyRunsRefused (run_creation) when any
    cell can't be made, for its input or for the balance: the batch row and the runs
    made so far share one savepoint, so a refusal leaves nothing and charges nothing.
    """
    if not cells:
        raise RunbaseError("A grid needs at least one value on an axis.")
    if len(cells) > MAX_CELLS:
        raise TooManyCells(f"A grid makes at most {MAX_CELLS} runs; this one would make "
                           f"{len(cells)}.")
    cells = _seeded(session, creator, user_id, axes, cells, seed_mode)
    batch_id = new_batch_id()
    with session.begin_nested():
        # The batch row first: the runs refer to it.
        session.execute(_INSERT_BATCH, {
            "id": batch_id, "user_id": user_id, "model": model_id[:200],
            "axes": copy.deepcopy(dict(axes)), "created_at": utcnow(),
            "share_token": None, "share_hide_prompt": False, "shared_at": None})
        created = creator.create_many(
            session, user_id=user_id, source=source, api_key_id=api_key_id,
            inputs=[(cell.model_id, cell.raw_input) for cell in cells],
            extras=[{"batch_id": batch_id, "batch_row": cell.row, "batch_col": cell.col,
                     "parent_id": cell.parent_id} for cell in cells])
    return session.get(Batch, batch_id), created


def get_batch(session: Session, user_id: int, batch_id: str) -> Batch:
    """The user's grid; another account's is indistinguishable from a missing one."""
    batch = session.get(Batch, batch_id) if isinstance(batch_id, str) and len(batch_id) <= 40 else None
    if batch is None or batch.user_id != user_id:
        raise BatchNotFound(f"No grid with id '{str(batch_id)[:40]}' in this account.")
    return batch


def batch_runs(session: Session, batch: Batch) -> list[Run]:
    """The grid's runs, row by row, each row left to right."""
    return list(session.scalars(select(Run).where(Run.batch_id == batch.id,
                                                  Run.user_id == batch.user_id)
                                .order_by(Run.batch_row, Run.batch_col)))


@dataclass(frozen=True)
class GridRow:
    """One row of a grid as pages show it: its header value and its cells (None where
    a cell has no run)."""

    label: str | None
    cells: list[Run | None]


def layout(axes: Mapping[str, Any], runs: Sequence[Run]) -> tuple[list[str], list[GridRow]]:
    """The column headers and the rows of a grid (its axes as shown), each cell the run
    at its place."""
    columns = [str(value) for value in (axes.get("x") or {}).get("values", [])] or [""]
    row_values = [str(value) for value in (axes.get("y") or {}).get("values", [])]
    by_place = {(run.batch_row, run.batch_col): run for run in runs}
    rows = [GridRow(label, [by_place.get((index, col)) for col in range(len(columns))])
            for index, label in enumerate(row_values or [None])]
    return columns, rows


def recent_batches(session: Session, user_id: int, limit: int = 6) -> list[tuple[Batch, list[Run]]]:
    """The user's newest grids with their runs (for the runs gallery's grid tiles)."""
    batches = list(session.scalars(select(Batch).where(Batch.user_id == user_id)
                                   .order_by(Batch.created_at.desc(), Batch.id.desc())
                                   .limit(limit)))
    if not batches:
        return []
    runs = session.scalars(select(Run).where(Run.batch_id.in_([b.id for b in batches]),
                                             Run.user_id == user_id)
                           .order_by(Run.batch_row, Run.batch_col))
    by_batch: dict[str, list[Run]] = {batch.id: [] for batch in batches}
    for run in runs:
        by_batch[run.batch_id].append(run)
    return [(batch, by_batch[batch.id]) for batch in batches]


def rerun_batch(session: Session, creator: RunCreator, user_id: int,
                batch_id: str) -> tuple[Batch, list[Run]]:
    """A new grid with the same axes, each cell the same model and input as the old
    grid's at that place (seeds included) and made from it (lineage); all or none."""
    old = get_batch(session, user_id, batch_id)
    cells = [GridCell(run.batch_row or 0, run.batch_col or 0, run.model,
                      copy.deepcopy(run.input or {}), parent_id=run.id)
             for run in batch_runs(session, old)]
    return create_batch(session, creator, user_id=user_id, model_id=old.model,
                        axes=old.axes, cells=cells, seed_mode=None)


# --- sharing -------------------------------------------------------------------------------


def share_batch(session: Session, user_id: int, batch_id: str, *, hide_prompt: bool) -> Batch:
    """Share the user's grid under one link (or change whether its prompts are hidden),
    as a run is shared (sharing.grant): revoking and sharing again makes a new link."""
    batch = get_batch(session, user_id, batch_id)
    sharing.grant(batch, hide_prompt=hide_prompt)
    session.flush()
    return batch


def revoke_batch_share(session: Session, user_id: int, batch_id: str) -> Batch:
    """Stop sharing the user's grid: its link answers 404 from now on."""
    batch = get_batch(session, user_id, batch_id)
    sharing.withdraw(batch)
    session.flush()
    return batch


def find_shared_batch(session: Session, token: str) -> Batch | None:
    """The grid shared under `token`, or None (unknown, revoked or malformed token)."""
    return sharing.find_by_token(session, Batch, token)


def shared_prompt(batch: Batch, run: Run) -> str | None:
    """A cell's prompt as the public may see it, or None when the owner hid prompts."""
    return sharing.public_prompt(run.input, hide_prompt=batch.share_hide_prompt)


def shared_input(batch: Batch, run: Run) -> dict:
    """A cell's input as the public may see it (no prompt when the owner hid prompts)."""
    return sharing.public_input(run.input, hide_prompt=batch.share_hide_prompt)


def shared_axes(batch: Batch) -> dict:
    """The axes as the public may see them: prompt variants and replacement words are
    prompts too, so a grid with hidden prompts shows them as "Prompt 1", "Prompt 2", …"""
    axes = copy.deepcopy(batch.axes or {})
    if batch.share_hide_prompt:
        for name in ("x", "y"):
            axis = axes.get(name)
            if axis and axis.get("kind") in ("prompt", "replace"):
                axis["values"] = [f"Prompt {index + 1}" for index in range(len(axis["values"]))]
                axis.pop("word", None)
    return axes


def shared_output_ok(run: Run) -> bool:
    """Whether a cell's outputs may be served through the grid's link (it succeeded)."""
    return run.status == RunStatus.SUCCEEDED.value
