"""Strict JSON and text at the boundary: what the server accepts from outside must be
storable and printable everywhere later (PostgreSQL, pages, PNG chunks, webhooks).

Python's `json` accepts things that later break: lone surrogate escapes ("\\ud800") that
no UTF-8 encoder can write, NaN/Infinity literals and 1e400 (= inf) that PostgreSQL's
JSON types refuse, NUL characters PostgreSQL cannot store, and nesting deep enough to
exhaust the interpreter's recursion limit in the parser or in any later `deepcopy`.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any

#: The deepest nesting of arrays and objects accepted in a request body (documented in
#: /docs and openapi.json). Real inputs are 2-4 levels deep.
MAX_JSON_DEPTH = 32

# Lone surrogates (not Unicode scalar values) and NUL, which PostgreSQL cannot store.
_UNSTORABLE = re.compile("[\ud800-\udfff\x00]")
_SURROGATES = re.compile("[\ud800-\udfff]")


class UnsafeJson(ValueError):
    """JSON that parses in Python but must not be accepted; the message says why."""


def loads_strict(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON, refusing non-finite numbers, nesting deeper than `max_depth`, and strings
    (keys included) that are not Unicode text (lone surrogates). Raises UnsafeJson, or
    ValueError for what is not JSON at all. NUL is left to the fields' own checks."""
    try:
        value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise UnsafeJson(f"JSON may be nested at most {max_depth} levels deep.") from None
    check_value(value, max_depth=max_depth, refuse_nul=False)
    return value


def check_value(value: Any, *, max_depth: int = MAX_JSON_DEPTH, refuse_nul: bool = True) -> None:
    """Raise UnsafeJson if an already parsed JSON value is nested deeper than `max_depth` or
    holds a string (keys included) with a lone surrogate or, with `refuse_nul`, a NUL.

    Walks with an explicit stack, so a hostile depth cannot exhaust the recursion limit.
    """
    pattern = _UNSTORABLE if refuse_nul else _SURROGATES
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, pattern)
        elif isinstance(item, (dict, list)):
            if depth > max_depth:
                raise UnsafeJson(f"JSON may be nested at most {max_depth} levels deep.")
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_text(key, pattern)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def check_text(text: str) -> None:
    """Raise UnsafeJson if `text` is not storable Unicode (a lone surrogate or a NUL)."""
    _check_text(text, _UNSTORABLE)


def _check_text(text: str, pattern: re.Pattern) -> None:
    found = pattern.search(text)
    if found is not None:
        what = "a NUL character" if found.group() == "\x00" else "a lone surrogate (invalid Unicode)"
        raise UnsafeJson(f"Text may not contain {what}.")


def scrub(value: Any) -> Any:
    """`value` with every lone surrogate in its strings replaced by U+FFFD: for text that
    is already stored (from before the boundary checked it), so pages and the worker can
    still print it. Returns the same object when there is nothing to replace."""
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value) if _SURROGATES.search(value) else value
    if isinstance(value, dict):
        return {scrub(key): scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub(item) for item in value]
    return value


def _refuse_constant(name: str) -> None:
    raise UnsafeJson(f"{name} is not a JSON number.")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise UnsafeJson(f"The number {text[:20]} is too large.")
    return number
