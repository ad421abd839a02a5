"""Group commit on SQLite (write_group.WriteGroup): writes that queue while a leader works
are committed together in one transaction; a write that raises loses only itself; a
commit that fails loses the whole batch and says so to every writer; a leader that is
stopped never leaves the others waiting."""
from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from runbase_web.extensions import WriteTurnConnection, is_outage, make_engine
from runbase_web.write_group import WriteGroup, WriteGroupFailed
from tests.support.waiting import wait_for

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class Refused(Exception):
    """What a write raises to refuse (as a create refuses for lack of funds)."""


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE items (name TEXT PRIMARY KEY)"))
    yield engine
    engine.dispose()


@pytest.fixture
def commits(engine):
    """How many transactions were committed on the engine."""
    counted = []
    event.listen(engine, "commit", lambda _connection: counted.append(1))
    return counted


def insert(name: str, *, refuse: bool = False, gate: threading.Event | None = None):
    """A write adding `name`; with `refuse`, it raises Refused after inserting (so its
    row must be rolled back); with `gate`, it first waits for the gate to open."""
    def write(connection):
        if gate is not None:
            assert gate.wait(10)
        connection.execute(text("INSERT INTO items VALUES (:name)"), {"name": name})
        if refuse:
            raise Refused(name)
    return write


def names(engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(text("SELECT name FROM items")).scalars())


def in_threads(group: WriteGroup, writes: dict) -> tuple[dict, list[threading.Thread]]:
    """Run each write through `group` from its own thread; ({name: None or what it
    raised}, filled as they end; the started threads)."""
    outcomes, threads = {}, []

    def submit(name, write):
        try:
            group.run(write)
            outcomes[name] = None
        except BaseException as error:  # noqa: BLE001 - the test looks at what came out
            outcomes[name] = error
    for name, write in writes.items():
        threads.append(threading.Thread(target=submit, args=(name, write)))
        threads[-1].start()
    return outcomes, threads


def behind_a_held_leader(group: WriteGroup, writes: dict, first=None) -> dict:
    """Hold a first write ("first", made by `first(gate)`; by default it inserts "first")
    in its transaction until every one of `writes` has queued behind it, then open the
    gate; wait for all; return every outcome."""
    gate = threading.Event()
    first_write = (first or (lambda held: insert("first", gate=held)))(gate)
    first, first_threads = in_threads(group, {"first": first_write})
    assert wait_for(lambda: group.leading)
    outcomes, threads = in_threads(group, writes)
    assert wait_for(lambda: group.queued == len(writes))
    gate.set()
    for thread in first_threads + threads:
        thread.join(20)
    return {**first, **outcomes}


def test_writes_that_queue_behind_a_leader_are_committed_together(engine, commits):
    group = WriteGroup(engine)
    outcomes = behind_a_held_leader(group, {f"w{n}": insert(f"w{n}") for n in range(6)})

    assert set(outcomes.values()) == {None}
    assert names(engine) == {"first"} | {f"w{n}" for n in range(6)}
    assert len(commits) == 2  # the first alone, then the six queued behind it in one
    assert group.queued == 0 and not group.leading


def test_a_write_that_raises_loses_only_itself(engine, commits):
    group = WriteGroup(engine)
    writes = {"a": insert("a"), "bad": insert("bad", refuse=True), "b": insert("b"),
              "c": insert("c")}
    outcomes = behind_a_held_leader(group, writes)

    assert isinstance(outcomes.pop("bad"), Refused)
    assert set(outcomes.values()) == {None}
    assert names(engine) == {"first", "a", "b", "c"}  # the refused write's row is gone


def test_a_write_alone_that_raises_leaves_nothing(engine):
    group = WriteGroup(engine)
    with pytest.raises(Refused):
        group.run(insert("bad", refuse=True))
    group.run(insert("good"))
    assert names(engine) == {"good"}


def test_a_failed_commit_fails_every_write_of_the_batch_and_saves_none(engine, monkeypatch):
    group = WriteGroup(engine)
    calls = []
    real_commit = WriteTurnConnection.commit

    def commit(connection):
        calls.append(1)
        if len(calls) == 2:  # the second batch's; SQLite rolls back a commit that fails
            WriteTurnConnection.rollback(connection)
            raise sqlite3.OperationalError("disk I/O error")
        real_commit(connection)
    monkeypatch.setattr(WriteTurnConnection, "commit", commit)

    outcomes = behind_a_held_leader(group, {"a": insert("a"), "b": insert("b")})

    assert outcomes["first"] is None  # the first batch, committed before
    for name in ("a", "b"):
        error = outcomes[name]
        assert isinstance(error, WriteGroupFailed), error
        assert isinstance(error.__cause__, OperationalError)
        assert is_outage(error)  # answered as the database being unavailable (503)
    assert names(engine) == {"first"}
    group.run(insert("c"))  # the group goes on
    assert names(engine) == {"first", "c"}


def test_a_leader_stopped_mid_batch_releases_the_others(engine):
    group = WriteGroup(engine)

    def stopped_after(gate):
        def write(_connection):
            assert gate.wait(10)
            raise KeyboardInterrupt  # not an Exception: the leader's thread is being stopped
        return write

    outcomes = behind_a_held_leader(group, {"a": insert("a")}, first=stopped_after)

    assert isinstance(outcomes.pop("first"), KeyboardInterrupt)
    assert outcomes == {"a": None}  # handed on, and committed by the next leader
    assert names(engine) == {"a"}
    group.run(insert("after"))
    assert names(engine) == {"a", "after"}


def test_after_a_fork_the_group_forgets_the_parents_leader(engine):
    group = WriteGroup(engine)
    gate = threading.Event()
    _outcomes, threads = in_threads(group, {"held": insert("held", gate=gate)})
    assert wait_for(lambda: group.leading)
    child_threads = []
    try:
        group.after_fork()  # as in a child forked while a parent's thread led a batch
        assert not group.leading and group.queued == 0
        child, child_threads = in_threads(group, {"child": insert("child")})
        # Without the reset it would wait for the parent's leader, which never comes.
        assert wait_for(lambda: "child" in child, timeout=5)
        assert child == {"child": None}
    finally:
        gate.set()
        for thread in threads + child_threads:
            thread.join(20)
    assert names(engine) == {"held", "child"}


def test_many_threads_through_one_group_lose_nothing(engine):
    group = WriteGroup(engine)
    writes = {f"w{n}": insert(f"w{n}", refuse=n % 7 == 0) for n in range(200)}
    outcomes, threads = in_threads(group, writes)
    for thread in threads:
        thread.join(60)

    refused = {name for name, error in outcomes.items() if error is not None}
    assert refused == {f"w{n}" for n in range(200) if n % 7 == 0}
    assert all(isinstance(outcomes[name], Refused) for name in refused)
    assert names(engine) == set(writes) - refused
    assert group.queued == 0 and not group.leading
