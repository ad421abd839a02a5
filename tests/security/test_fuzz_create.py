"""Property-based fuzzing of run creation, on SQLite and PostgreSQL: arbitrary bytes at
POST /api/v1/runs (with and without an Idempotency-Key) and arbitrary form bodies at
POST /playground/runs.

Bodies are built as raw text and bytes, not only through Hypothesis' JSON strategies, so
that they include what Python's `json` accepts but storage refuses (deep nesting, NaN,
1e400, lone surrogate escapes, NUL), what it refuses outright (invalid UTF-8, stray
control characters, truncated escapes), duplicate keys, wrong types and strange webhook
URLs, mixed with plausible bodies that succeed and are charged.

For every example: never a 5xx; every API refusal is exactly the documented envelope;
a refusal charges nothing and a success charges exactly the run's price; the account's
pages still answer 200. Seeds are fixed (derandomize) so CI is repeatable; a failure
prints the smallest body that breaks a rule. Runs stay pending (no worker).
"""
from __future__ import annotations

import json
import re
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import select

from runbase_web.extensions import db
from runbase_web.models import Run
from tests.web import HTMX, balance_of, sign_in

RUNS = "/api/v1/runs"
UNSTORABLE = re.compile("[\ud800-\udfff\x00]")
PAGES = ("/runs", "/dashboard", "/playground")
#: Enough for every example to succeed: running out is not what this test is about.
CREDIT = 5_000_000

FUZZ = settings(deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# --- JSON source fragments ----------------------------------------------------------------


def obj(pairs) -> str:
    """A JSON object's source from (key source, value source) pairs; keys may repeat."""
    return "{" + ",".join(f"{key}:{value}" for key, value in pairs) + "}"


def arr(items) -> str:
    """A JSON array's source."""
    return "[" + ",".join(items) + "]"


def nested(depth: int, kind: str) -> str:
    """`depth` levels of arrays or of objects, as JSON source."""
    if kind == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def repeated(unit: str, budget: int) -> str:
    """`unit` repeated to about `budget` bytes of UTF-8 (cheap for Hypothesis to draw,
    unlike a 200 KB st.text, and safely under the 1 MiB body limit)."""
    return unit * (budget // len(unit.encode("utf-8", "surrogatepass")))


# Small depths around the limit of 32, and very deep ones that exhaust `json`'s recursion.
DEPTHS = st.one_of(st.integers(1, 40), st.sampled_from([31, 32, 33, 1000, 100_000]),
                   st.integers(1, 100_000))
DEEP = st.builds(nested, DEPTHS, st.sampled_from("[{"))

NUMBER_LITERALS = ["1e400", "-1e999", "1e-400", "9" * 400, "-" + "9" * 400, "9" * 5000,
                   "NaN", "Infinity", "-Infinity", "-0", "0.0", "1.0", "4.0", "2147483647",
                   "2147483648", "-1", "1E2", "01", "1.", ".5", "+1", "0x10"]
NUMBERS = st.one_of(st.sampled_from(NUMBER_LITERALS), st.integers().map(str),
                    st.floats(allow_nan=False, allow_infinity=False).map(json.dumps))

# Pieces of a string literal's source: escapes that decode to lone or reversed surrogates,
# a valid pair, NUL and other controls; invalid escapes; raw characters JSON forbids.
ESCAPES = ["\\ud800", "\\udfff", "\\udc00\\ud800", "\\ud83c\\udf0a", "\\u0000", "\\u0001",
           "\\u001f", "\\u007f", "\\u0085", "\\u2028", "\\ufeff", "\\uffff", "\\n", "\\t",
           '\\"', "\\\\", "\\/", "\\x41", "\\u12", "\t", "\x00", "\ud800", "\x7f"]
PLAIN = st.text(alphabet=st.characters(exclude_characters='"\\'), max_size=20)
STRINGS = st.lists(st.one_of(PLAIN, st.sampled_from(ESCAPES)), max_size=6).map(
    lambda pieces: '"' + "".join(pieces) + '"')
LONG_STRINGS = st.builds(lambda unit, size: '"' + repeated(unit, size) + '"',
                         st.sampled_from(["x", "é", "\\u00e9", "\\ud800", "\U0001F30A", "\\u0000"]),
                         st.integers(0, 200_000))

# Ordinary JSON from Hypothesis (st.text includes NUL and controls, json.dumps escapes them).
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
JSON_TEXT = st.builds(lambda value, ascii_only: json.dumps(value, ensure_ascii=ascii_only),
                      JSON_VALUES, st.booleans())

INVALID = st.sampled_from(["", "nul", "[1,]", '{"a"}', "'x'", "{", "]", "tru", "--1", "1 2"])
LEAVES = st.one_of(JSON_TEXT, NUMBERS, STRINGS, DEEP, LONG_STRINGS, INVALID,
                   st.sampled_from(["true", "false", "null", "[]", "{}"]))
KEYS = st.one_of(st.sampled_from(["prompt", "seed", "num_images", "model", "input", ""]).map(json.dumps),
                 STRINGS)
RAW_VALUES = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4).map(arr)
    | st.lists(st.tuples(KEYS, children), max_size=4).map(obj),
    max_leaves=6)

MODEL_IDS = ["local/sketch", "local/test", "local/sketch-video", "openai/gpt-image-1",
             "nope/nothing", "", "LOCAL/SKETCH", "local/sketch ", "local/sketch\x00"]
MODELS = st.one_of(st.sampled_from(MODEL_IDS).map(json.dumps), RAW_VALUES)

# Webhooks: fine ones, unparseable and odd URLs, controls and surrogates, non-strings.
WEBHOOK_URLS = [
    "https://hooks.example/runbase", "http://hooks.example:8080/x?y=1#z", "HTTPS://HOOKS.EXAMPLE/",
    "https://", "http://[", "https://[::1", "https://[abc]/", "http://]x", "https://a]b/",
    "https://[::1]/", "http://127.0.0.1/", "http://[::ffff:169.254.169.254]/",
    "https://a.example:99999/", "https://a.example:-1/", "https://user:pass@a.example/",
    "javascript:alert(1)", "file:///etc/passwd", "//a.example/x", "ftp://a.example/",
    "https://exa mple.example/", "https://a.example/\\u0000", "https://a.example/\\u0007",
    "https://a.example/\\ud800", "https://a.example/\\u00e9", "https://\\u4f8b\\u3048.example/",
    "https://%00/", "https://a.example/%ZZ", "https://a.example/" + "a" * 3000, "",
]
# The same URLs as Python strings (escapes decoded), for bodies made with json.dumps.
WEBHOOK_TEXTS = [json.loads(f'"{url}"') for url in WEBHOOK_URLS]
WEBHOOKS = st.one_of(st.sampled_from(WEBHOOK_URLS).map(lambda url: f'"{url}"'),
                     STRINGS.map(lambda literal: '"https://a.example/' + literal[1:]),
                     RAW_VALUES)

INPUT_FIELDS = ["prompt", "num_images", "seed", "aspect_ratio", "resolution", "outcome",
                "delay_ms", "duration", "extra"]
INPUTS = st.one_of(
    st.lists(st.tuples(st.one_of(st.sampled_from(INPUT_FIELDS).map(json.dumps), KEYS), RAW_VALUES),
             max_size=6).map(obj),
    RAW_VALUES)

# Plausible bodies, mostly valid, so that some examples succeed and are charged.
PROMPTS = st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=60)
# Prompts with lone surrogates (json.dumps writes them as "\ud800" escapes) and controls.
ODD_PROMPTS = st.text(alphabet=st.characters(categories=("Cs", "Cc", "Lo")), min_size=1, max_size=8)
SKETCH_INPUTS = st.fixed_dictionaries(
    {"prompt": st.one_of(PROMPTS, ODD_PROMPTS)},
    optional={"num_images": st.integers(0, 5), "seed": st.integers(-1, 2**31),
              "aspect_ratio": st.sampled_from(["1:1", "16:9", "2:1"]),
              "resolution": st.sampled_from(["512", "1K"])})
TEST_INPUTS = st.fixed_dictionaries(
    {"prompt": PROMPTS},
    optional={"outcome": st.sampled_from(["succeed", "fail", "timeout"]),
              "delay_ms": st.integers(0, 1000), "seed": st.integers(0, 2**31 - 1)})
PLAUSIBLE = st.one_of(
    st.fixed_dictionaries({"model": st.just("local/sketch"), "input": SKETCH_INPUTS},
                          optional={"webhook": st.sampled_from(WEBHOOK_TEXTS)}),
    st.fixed_dictionaries({"model": st.just("local/test"), "input": TEST_INPUTS}),
).map(json.dumps)

FIELDS = st.one_of(st.tuples(st.just('"model"'), MODELS), st.tuples(st.just('"input"'), INPUTS),
                   st.tuples(st.just('"webhook"'), WEBHOOKS), st.tuples(KEYS, RAW_VALUES))
OBJECTS = st.lists(FIELDS, max_size=6).map(obj)
# A plausible body with hostile fields added after it (duplicate keys: the last one wins).
PATCHED = st.builds(lambda body, fields: body[:-1] + "".join(f",{k}:{v}" for k, v in fields) + "}",
                    PLAUSIBLE, st.lists(FIELDS, min_size=1, max_size=3))


def to_bytes(text: str) -> bytes:
    """Body bytes; a raw lone surrogate becomes bytes that are not UTF-8 at all."""
    return text.encode("utf-8", "surrogatepass")


def spliced(text: str, junk: bytes, at: int) -> bytes:
    """`text` as UTF-8 with `junk` (not UTF-8, or a BOM) inserted at a position."""
    data = to_bytes(text)
    at %= len(data) + 1
    return data[:at] + junk + data[at:]


JUNK = st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\x80\x80", b"\x00"])
API_BODIES = st.one_of(
    PLAUSIBLE.map(to_bytes), PATCHED.map(to_bytes), OBJECTS.map(to_bytes), RAW_VALUES.map(to_bytes),
    st.builds(lambda body, inner: to_bytes(body.replace('"input": {', '"input": {"x": %s, ' % inner, 1)),
              PLAUSIBLE, DEEP),
    st.builds(spliced, PLAUSIBLE, JUNK, st.integers(0, 300)),
    st.builds(lambda body, encoding: body.encode(encoding), PLAUSIBLE,
              st.sampled_from(["utf-16", "utf-32", "latin-1"])),
    st.binary(max_size=64), st.just(b""))

# Header values reach the app as latin-1 text; CR and LF can't be sent in one. Two keys
# repeat so that replays (and reuse with another body) happen; NUL is common on purpose.
ODD_KEYS = ["", " ", "\t", "k" * 255, "k" * 256, "a\x00b", "\x00", "fuzz-1\x00", "\x00" * 255,
            "\x7f", "\xe9", "\x01key"]
IDEMPOTENCY_KEYS = st.one_of(
    st.none(), st.sampled_from(["fuzz-1", "fuzz-2"]), st.sampled_from(ODD_KEYS),
    st.text(alphabet=st.characters(max_codepoint=0xFF, exclude_characters="\r\n"), max_size=300))
CONTENT_TYPES = st.sampled_from(["application/json", "application/json; charset=utf-8",
                                 "text/plain", "application/x-www-form-urlencoded"])


# --- Playground form bodies ---------------------------------------------------------------

FORM_FIELDS = ["model", "prompt", "aspect_ratio", "resolution", "num_images", "seed", "seed_mode",
               "outcome", "delay_ms", "duration", "parent_id", "multi", "models", "generate_audio",
               "image_urls", "x"]
NUMBERY = ["1", "4", "0", "-1", "5", "1e400", "-1e999", "nan", "inf", "-inf", "Infinity",
           "9" * 400, "9" * 5000, "1e-400", "1.5", "4.0", " 2 ", "\u0663", "\uff11", "1_0",
           "0x1", "2147483648", "", " ", "\x00", "1\x00"]
OTHER_VALUES = ["new", "keep", "1:1", "16:9", "512", "1K", "succeed", "fail", "true", "run_" + "a" * 24,
                "x" * 41]
# Form text: any Unicode but surrogates (form encoding can't carry them), NUL included.
FORM_TEXT = st.one_of(
    st.text(max_size=40), st.sampled_from(NUMBERY + OTHER_VALUES + MODEL_IDS),
    st.builds(repeated, st.sampled_from(["x", "\u00e9", "\x00", "\U0001F30A", "<b>"]),
              st.integers(0, 200_000)))
# Percent-escapes that decode to nothing sensible: truncated, not hex, not UTF-8, a surrogate.
BROKEN_ESCAPES = ["%", "%z", "%zz", "%f", "%ff", "%c3", "%ed%a0%80", "%00", "%C0%AF", "%2", "%%", "+"]


def form_quoted(text: str) -> str:
    """A form value as a browser percent-encodes it."""
    return quote_from_bytes(text.encode("utf-8"), safe="")


FORM_VALUES = st.one_of(
    FORM_TEXT.map(form_quoted),
    st.lists(st.one_of(FORM_TEXT.map(form_quoted), st.sampled_from(BROKEN_ESCAPES)),
             max_size=5).map("".join))
# Any field, possibly several times (a MultiDict keeps every value; views read the first).
FORM_PAIRS = st.lists(st.tuples(st.one_of(st.sampled_from(FORM_FIELDS), FORM_TEXT.map(form_quoted)),
                                FORM_VALUES), max_size=8)
PLAUSIBLE_FORMS = st.one_of(
    st.fixed_dictionaries({"model": st.just("local/sketch"), "prompt": PROMPTS,
                           "num_images": st.sampled_from(["1", "2", "3", "4", "", "5"]),
                           "aspect_ratio": st.sampled_from(["1:1", "16:9", "9:16", "2:1"]),
                           "seed": st.sampled_from(["", "", "7", "2147483647", "-1", "1e400"]),
                           "seed_mode": st.sampled_from(["new", "keep", "", "other"])}),
    # Mostly local/test; sometimes a model that is unknown or not configured here.
    st.fixed_dictionaries({"model": st.sampled_from(["local/test"] * 3 + MODEL_IDS), "prompt": PROMPTS,
                           "outcome": st.sampled_from(["succeed", "fail", "timeout", "nope"])}),
    # "Multiple models": the same form on several models at once.
    st.fixed_dictionaries({"model": st.just("local/sketch"), "prompt": PROMPTS, "multi": st.just("1"),
                           "models": st.lists(st.sampled_from(["local/sketch", "local/test"] * 3
                                                              + MODEL_IDS[2:5]), min_size=1, max_size=5)}),
).map(lambda fields: [(name, form_quoted(value)) for name, values in fields.items()
                      for value in (values if isinstance(values, list) else [values])])


def urlencoded(pairs) -> bytes:
    """`name=value&...` as bytes (already percent-encoded or deliberately broken)."""
    return "&".join(f"{name}={value}" for name, value in pairs).encode("ascii", "replace")


FORM_BODIES = st.one_of(
    # Twice: one_of picks its branches about evenly, and some examples should succeed.
    PLAUSIBLE_FORMS.map(urlencoded), PLAUSIBLE_FORMS.map(urlencoded),
    # Hostile fields after a plausible form (its values come first) or before it (they win).
    st.builds(lambda base, extra, front: urlencoded(extra + base if front else base + extra),
              PLAUSIBLE_FORMS, FORM_PAIRS, st.booleans()),
    FORM_PAIRS.map(urlencoded),
    st.builds(lambda base, junk, at: spliced(urlencoded(base).decode(), junk, at),
              PLAUSIBLE_FORMS, JUNK, st.integers(0, 300)),
    st.binary(max_size=64), st.just(b""))


# --- checks ---------------------------------------------------------------------------------


# Function-scoped fixtures are made once per test (per database), not per example, and
# shared by all its examples: that is intended, each example compares before and after.
@pytest.fixture
def rich_user(make_user):
    """An account with $5: plenty for every example that succeeds."""
    return make_user("fuzz@example.com", credit_micros=CREDIT)


@pytest.fixture
def bearer(rich_user, make_key):
    """Authorization for `rich_user`."""
    return {"Authorization": f"Bearer {make_key(rich_user)}"}


@pytest.fixture
def pages(app, rich_user):
    """A second test client, signed in as `rich_user`, to check the account's pages."""
    browser = app.test_client()
    sign_in(browser, rich_user.email)
    return browser


def assert_envelope(response) -> None:
    """Exactly {"error": {"message": "...", "code": "..."}}, both non-empty strings."""
    body = response.get_json(silent=True)
    assert isinstance(body, dict) and set(body) == {"error"}, response.data[:500]
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"message", "code"}, body
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["code"], str) and error["code"], body


def assert_storable(value) -> None:
    """No lone surrogate or NUL anywhere in an accepted run's input (keys included): such
    text breaks PostgreSQL, pages, PNG chunks or webhooks later, after the charge."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            assert not UNSTORABLE.search(item), f"accepted unstorable text: {item!r}"


def assert_pages_work(pages) -> None:
    """The signed-in account's pages still render."""
    for path in PAGES:
        response = pages.get(path)
        assert response.status_code == 200, (path, response.status_code)


def note_body(body: bytes) -> None:
    """Print (on failure only) the body, shortened: some are 200 KB."""
    shown = body if len(body) <= 600 else body[:300] + b" ... " + body[-300:]
    note(f"body ({len(body)} bytes): {shown!r}")


def run_costs(app, user_id: int) -> dict[str, int]:
    """The user's runs: id -> price charged (all stay pending, none refunded)."""
    with app.app_context():
        rows = db.session.execute(select(Run.id, Run.cost_micros).where(Run.user_id == user_id))
        return dict(rows.all())


# --- the API --------------------------------------------------------------------------------


@pytest.mark.timeout(600)
@settings(FUZZ, max_examples=150)
@given(body=API_BODIES, idempotency_key=IDEMPOTENCY_KEYS, content_type=CONTENT_TYPES)
def test_api_create_survives_any_body(app, client, rich_user, bearer, pages, body, idempotency_key,
                                      content_type):
    note_body(body)
    note(f"Idempotency-Key: {idempotency_key!r}, Content-Type: {content_type!r}")
    headers = {**bearer, "Content-Type": content_type}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    before = balance_of(app, rich_user.id)

    response = client.post(RUNS, data=body, headers=headers)

    event(f"status {response.status_code}")
    assert response.status_code < 500, response.data[:500]
    after = balance_of(app, rich_user.id)
    if response.status_code == 201:
        run = response.get_json()
        assert isinstance(run["costUsd"], int) and run["costUsd"] > 0, run
        assert_storable(run["input"])
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        assert before - after == (0 if replayed else run["costUsd"]), (before, after, run)
    else:
        assert_envelope(response)
        assert after == before, (before, after, response.get_json())
    assert_pages_work(pages)


# --- the Playground form -------------------------------------------------------------------


@pytest.mark.timeout(600)
@settings(FUZZ, max_examples=60)
@given(body=FORM_BODIES, as_htmx=st.booleans())
def test_playground_create_survives_any_form(app, pages, rich_user, body, as_htmx):
    note_body(body)
    headers = {"Content-Type": "application/x-www-form-urlencoded", **(HTMX if as_htmx else {})}
    runs_before, before = run_costs(app, rich_user.id), balance_of(app, rich_user.id)

    response = pages.post("/playground/runs", data=body, headers=headers)

    event(f"status {response.status_code}")
    assert response.status_code < 500, response.data[:500]
    new_runs = {run_id: cost for run_id, cost in run_costs(app, rich_user.id).items()
                if run_id not in runs_before}
    after = balance_of(app, rich_user.id)
    if response.status_code in (201, 303):  # cards for htmx, else a redirect to the run
        assert new_runs, response.status_code
        assert before - after == sum(new_runs.values()), (before, after, new_runs)
        with app.app_context():
            for run_id in new_runs:
                assert_storable(db.session.get(Run, run_id).input)
    else:
        assert not new_runs and after == before, (response.status_code, before, after, new_runs)
    assert_pages_work(pages)
