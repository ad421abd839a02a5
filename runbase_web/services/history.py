"""Run history: the gallery's filtered, keyset-paginated query, lineage (parent and
children), what changed between runs, side-by-side comparison and a run's timeline.

Plain functions on a session; nothing here reads the request or commits.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from ..models import Run, RunStatus, utcnow
from ..catalog import Catalog
from .runs import get_run

#: Runs per gallery page (one "Load more" click brings the next page).
PAGE_SIZE = 24
#: Children listed on a run's page; a run rerun more often than this shows the newest.
MAX_CHILDREN = 50
#: How many runs the compare page puts side by side.
COMPARE_MIN, COMPARE_MAX = 2, 4
STATUSES = tuple(status.value for status in RunStatus)
KINDS = ("image", "video")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov")


class _Absent:
    """A field one run's input does not have (shown as a dash, never equal to a value)."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()


# --- gallery -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFilters:
    """The gallery's filters; empty strings mean "any"."""

    model: str = ""
    status: str = ""
    kind: str = ""
    #: Case-insensitive substring of the prompt.
    q: str = ""

    @property
    def active(self) -> bool:
        """True when any filter narrows the list."""
        return any((self.model, self.status, self.kind, self.q))

    def as_args(self) -> dict[str, str]:
        """The non-empty filters as query-string arguments."""
        return {name: value for name, value in
                (("model", self.model), ("status", self.status), ("kind", self.kind), ("q", self.q))
                if value}


def parse_filters(args: Mapping[str, str]) -> RunFilters:
    """Filters from query arguments; unknown statuses and kinds mean "any", not an error,
    so an old bookmark still opens."""
    status = args.get("status", "")
    kind = args.get("kind", "")
    return RunFilters(model=args.get("model", "").strip()[:200],
                      status=status if status in STATUSES else "",
                      kind=kind if kind in KINDS else "",
                      q=args.get("q", "").strip()[:200])


def filtered_runs(user_id: int, catalog: Catalog, filters: RunFilters) -> Select:
    """The user's runs matching `filters`, unordered."""
    query = select(Run).where(Run.user_id == user_id)
    if filters.model:
        query = query.where(Run.model == filters.model)
    if filters.status:
        query = query.where(Run.status == filters.status)
    if filters.kind:
        # Kind is a property of the catalog entry, not of the row.
        query = query.where(Run.model.in_([spec.id for spec in catalog.all()
                                           if spec.kind == filters.kind]))
    if filters.q:
        # ->> on PostgreSQL, json_extract on SQLite; autoescape makes % and _ literal.
        query = query.where(Run.input["prompt"].as_string().icontains(filters.q, autoescape=True))
    return query


def gallery_page(session: Session, user_id: int, catalog: Catalog, filters: RunFilters, *,
                 after: str | None = None, limit: int | None = None) -> tuple[list[Run], str | None]:
    """One page of the gallery (PAGE_SIZE runs unless `limit`), newest first, after the
    cursor run; returns (runs, the cursor of the next page or None). Raises RunNotFound
    for a cursor that isn't the user's."""
    limit = limit or PAGE_SIZE
    query = filtered_runs(user_id, catalog, filters)
    if after:
        cursor = get_run(session, user_id, after)
        # Keyset on (created_at, id): stable while new runs arrive at the top.
        query = query.where((Run.created_at < cursor.created_at)
                            | ((Run.created_at == cursor.created_at) & (Run.id < cursor.id)))
    rows = list(session.scalars(query.order_by(Run.created_at.desc(), Run.id.desc())
                                .limit(limit + 1)))
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit else None)


def used_models(session: Session, user_id: int) -> list[str]:
    """The models the user has runs of, for the model filter."""
    return list(session.scalars(select(Run.model).where(Run.user_id == user_id)
                                .distinct().order_by(Run.model)))


@dataclass(frozen=True)
class Thumbnail:
    """A run's first output, as the gallery shows it."""

    src: str
    is_video: bool


def thumbnail(run: Run) -> Thumbnail | None:
    """The first output of a succeeded run; None while there is nothing to show."""
    if run.status != RunStatus.SUCCEEDED.value or not run.output_urls:
        return None
    src = run.output_urls[0]
    return Thumbnail(src=src, is_video=src.lower().endswith(VIDEO_EXTENSIONS))


def run_kind(run: Run, catalog: Catalog) -> str:
    """"image" or "video" from the catalog; a model since removed is guessed from its outputs."""
    spec = catalog.get(run.model)
    if spec is not None:
        return spec.kind
    thumb = thumbnail(run)
    return "video" if thumb and thumb.is_video else "image"


# --- one run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One entry of a run's status history."""

    status: str
    label: str
    at: datetime
    #: Seconds since the previous step, or None for the first.
    took: float | None = None


def status_history(run: Run) -> list[Step]:
    """The statuses a run went through, derived from its timestamps."""
    steps = [Step("pending", "Created, queued for a worker", run.created_at)]
    if run.started_at:
        steps.append(Step("processing", "Picked up by a worker", run.started_at,
                          _seconds(run.created_at, run.started_at)))
    if run.completed_at and run.is_finished:
        since = run.started_at or run.created_at
        steps.append(Step(run.status, _end_label(run), run.completed_at,
                          _seconds(since, run.completed_at)))
    return steps


def _end_label(run: Run) -> str:
    if run.status == RunStatus.SUCCEEDED.value:
        return "Succeeded, outputs stored"
    if run.error_code == "canceled":
        return "Canceled, refunded"
    return "Failed, refunded"


def durations(run: Run) -> dict[str, float | None]:
    """Seconds spent queued, at the provider and in total (to now while still active)."""
    end = run.completed_at or utcnow()
    return {"queued": _seconds(run.created_at, run.started_at or end),
            "processing": _seconds(run.started_at, end) if run.started_at else None,
            "total": _seconds(run.created_at, end)}


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


@dataclass(frozen=True)
class InputRow:
    """One field of a run's input, as the input table shows it."""

    name: str
    label: str
    value: Any


def input_rows(run_input: Mapping[str, Any], spec=None) -> list[InputRow]:
    """The input's fields in order, labelled with the schema's titles where it has them."""
    properties = spec.properties if spec is not None else {}
    return [InputRow(name, properties.get(name, {}).get("title") or name, value)
            for name, value in (run_input or {}).items()]


@dataclass(frozen=True)
class Lineage:
    """The run a run was made from, and the runs made from it."""

    parent: Run | None
    children: list[Run] = field(default_factory=list)


def lineage(session: Session, run: Run) -> Lineage:
    """The run's parent (if it is still the same account's) and its children, oldest first."""
    parent = session.get(Run, run.parent_id) if run.parent_id else None
    if parent is not None and parent.user_id != run.user_id:
        parent = None
    children = list(session.scalars(
        select(Run).where(Run.parent_id == run.id, Run.user_id == run.user_id)
        .order_by(Run.created_at.desc(), Run.id.desc()).limit(MAX_CHILDREN)))
    return Lineage(parent=parent, children=children[::-1])


# --- differences ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffRow:
    """A field that differs between two runs: added, removed or changed (old → new)."""

    field: str
    change: str
    old: Any = ABSENT
    new: Any = ABSENT


def same_value(a: Any, b: Any) -> bool:
    """Equal as JSON: True is not 1 and key order does not matter."""
    return _canonical(a) == _canonical(b)


def _canonical(value: Any) -> str:
    if value is ABSENT:
        return "\0absent"
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def input_diff(parent_input: Mapping[str, Any] | None,
               child_input: Mapping[str, Any] | None) -> list[DiffRow]:
    """The fields that differ from parent to child: the child's fields in its order, then
    the ones it no longer has."""
    old, new = parent_input or {}, child_input or {}
    rows = []
    for name, value in new.items():
        if name not in old:
            rows.append(DiffRow(name, "added", new=value))
        elif not same_value(old[name], value):
            rows.append(DiffRow(name, "changed", old=old[name], new=value))
    rows += [DiffRow(name, "removed", old=value) for name, value in old.items() if name not in new]
    return rows


def run_diff(parent: Run, child: Run) -> list[DiffRow]:
    """What changed from parent to child: the model first if it changed, then the input."""
    rows = [DiffRow("model", "changed", old=parent.model, new=child.model)] \
        if parent.model != child.model else []
    return rows + input_diff(parent.input, child.input)


# --- compare ---------------------------------------------------------------------------------


class CompareError(ValueError):
    """The compare page was asked for too few or too many runs."""


def parse_compare_ids(values: list[str]) -> list[str]:
    """Run ids from `ids=a,b` and/or repeated `ids=` arguments, deduplicated in order."""
    ids: list[str] = []
    for value in values:
        for run_id in (part.strip() for part in value.split(",")):
            if run_id and run_id not in ids:
                ids.append(run_id)
    if len(ids) < COMPARE_MIN:
        raise CompareError(f"Choose at least {COMPARE_MIN} runs to compare "
                           f"({'none' if not ids else 'only one'} given).")
    if len(ids) > COMPARE_MAX:
        raise CompareError(f"You can compare at most {COMPARE_MAX} runs at a time "
                           f"({len(ids)} given).")
    return ids


def compare_runs(session: Session, user_id: int, run_ids: list[str]) -> list[Run]:
    """The user's runs in the order asked; raises RunNotFound if any is missing or foreign."""
    return [get_run(session, user_id, run_id) for run_id in run_ids]


@dataclass(frozen=True)
class CompareRow:
    """One field across the compared runs; `values` has ABSENT where a run lacks it."""

    field: str
    values: list[Any]
    differs: bool


def compare_rows(compared: list[Run]) -> list[CompareRow]:
    """The model and every input field of the runs, each flagged when not all runs agree."""
    names: list[str] = []
    for run in compared:
        names += [name for name in (run.input or {}) if name not in names]
    table = [("model", [run.model for run in compared])]
    table += [(name, [(run.input or {}).get(name, ABSENT) for run in compared]) for name in names]
    return [CompareRow(name, values, any(not same_value(values[0], v) for v in values[1:]))
            for name, values in table]


def display_value(value: Any) -> str:
    """An input value as text: strings as they are, lists one item a line, the rest as JSON."""
    if value is ABSENT:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "\n".join(value) if value else "[]"
    return json.dumps(value, ensure_ascii=False)
