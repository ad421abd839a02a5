"""A throwaway, real PostgreSQL server for the test session.

The server lives entirely in a fresh temporary directory, listens on
127.0.0.1 on a free port and is tuned for speed, not durability: nothing in
it is meant to survive the test session.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

SUPERUSER = "runbase"
HOST = "127.0.0.1"
START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections
_START_ATTEMPTS = 3  # a "free" port can be taken by someone else before we bind it
_DB_NAME = re.compile(r"^[A-Za-z0-9_-]{1,63}$")

# Appended to postgresql.conf. Durability is pointless for a throwaway
# cluster; turning it off makes schema setup and writes much faster.
_SETTINGS = """
listen_addresses = '{host}'
unix_socket_directories = '{socket_dir}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 400
shared_buffers = 64MB
"""


class PostgresStartError(RuntimeError):
    """The server could not be initialised or started (message has the log tail)."""


def _bindir_candidates():
    """Yield directories that may hold initdb/pg_ctl, best first."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True,
                                 text=True, timeout=30, check=True).stdout.strip()
            if out:
                yield out
        except (OSError, subprocess.SubprocessError):
            pass
    # Debian installs server binaries outside PATH, one dir per major version.
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    yield from sorted(versioned, key=_major_version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        yield os.path.dirname(initdb)


def _major_version(bindir: str) -> float:
    """Sort key for /usr/lib/postgresql/<version>/bin."""
    try:
        return float(Path(bindir).parent.name)
    except ValueError:
        return 0.0


def find_bindir() -> str | None:
    """Return the directory holding usable initdb and pg_ctl, or None."""
    for bindir in _bindir_candidates():
        tools = [os.path.join(bindir, name) for name in ("initdb", "pg_ctl")]
        if all(os.path.isfile(t) and os.access(t, os.X_OK) for t in tools):
            return bindir
    return None


def available() -> bool:
    """True if the PostgreSQL server binaries (initdb, pg_ctl) can be found."""
    return find_bindir() is not None


def _service_account() -> pwd.struct_passwd | None:
    """The account to run the server as, or None to run as ourselves.

    PostgreSQL refuses to run as root, so as root we borrow an unprivileged
    account: ``postgres`` when the Debian package created it, else ``nobody``.
    """
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresStartError("running as root and neither 'postgres' nor 'nobody' exists")


def _can_traverse(path: Path, account: pwd.struct_passwd) -> bool:
    """True if ``account`` may search every parent directory of ``path``."""
    for parent in path.parents:
        st = parent.stat()
        # Only the most specific permission class applies, as in the kernel.
        # Supplementary groups are dropped when we switch user, so ignore them.
        if st.st_uid == account.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid == account.pw_gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _make_tempdir(account: pwd.struct_passwd | None) -> Path:
    """Create the server's private directory, owned by the account that runs it."""
    path = Path(tempfile.mkdtemp(prefix="runbase-pg-"))
    if account is None:
        return path
    if not _can_traverse(path, account):
        # e.g. TMPDIR under /root: fall back to /tmp, which everyone can search.
        path.rmdir()
        path = Path(tempfile.mkdtemp(prefix="runbase-pg-", dir="/tmp"))
        if not _can_traverse(path, account):
            path.rmdir()
            raise PostgresStartError(f"{account.pw_name} cannot reach a temp dir")
    os.chown(path, account.pw_uid, account.pw_gid)
    return path


def _free_port() -> int:
    """Ask the kernel for a currently unused TCP port on the loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no server log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


class PostgresServer:
    """A private PostgreSQL cluster: ``start()`` it once per test session.

    Databases are created with ``create_database(name)``, which returns a
    SQLAlchemy URL using the psycopg 3 driver and the trusted superuser
    ``runbase`` (no password).
    """

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.port: int | None = None
        self.tempdir: Path | None = None
        self._account: pwd.struct_passwd | None = None
        self._running = False

    # -- paths -------------------------------------------------------------

    @property
    def datadir(self) -> Path:
        """The cluster's data directory (PGDATA)."""
        return self._require_tempdir() / "data"

    @property
    def socket_dir(self) -> Path:
        """The directory holding the server's unix socket."""
        return self._require_tempdir() / "run"

    @property
    def logfile(self) -> Path:
        """The server log, read back when something goes wrong."""
        return self._require_tempdir() / "postgres.log"

    def _require_tempdir(self) -> Path:
        if self.tempdir is None:
            raise RuntimeError("PostgresServer is not started")
        return self.tempdir

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> "PostgresServer":
        """Initialise a fresh cluster and start it; returns self."""
        if self._running:
            return self
        if self.bindir is None:
            raise PostgresStartError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self._account = _service_account()
        self.tempdir = _make_tempdir(self._account)
        # Registered first so a failure below or a crashed session still cleans up.
        atexit.register(self.stop)
        try:
            self._initdb()
            self._configure()
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server at once (no checkpoint needed) and delete its files."""
        atexit.unregister(self.stop)
        if self._running:
            self._run_tool("pg_ctl", "stop", "-D", str(self.datadir), "-m", "immediate",
                           "-w", "-t", str(START_TIMEOUT), check=False)
            self._running = False
        if self.tempdir is not None:
            shutil.rmtree(self.tempdir, ignore_errors=True)
            self.tempdir = None
        self.port = None

    def pause(self) -> None:
        """Stop the server abruptly (as a crash or a failover would), keeping its data and
        port, so `resume()` brings the same databases back."""
        self._run_tool("pg_ctl", "stop", "-D", str(self.datadir), "-m", "immediate",
                       "-w", "-t", str(START_TIMEOUT), check=True)

    def resume(self) -> None:
        """Start a paused server again on the same port."""
        self._run_tool("pg_ctl", "start", "-w", "-t", str(START_TIMEOUT), "-D", str(self.datadir),
                       "-l", str(self.logfile), "-o", f"-p {self._require_port()}", check=True)

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _initdb(self) -> None:
        """Create the cluster; ``trust`` auth because only we can reach it."""
        result = self._run_tool("initdb", "-D", str(self.datadir), "-A", "trust",
                                "-U", SUPERUSER, "--encoding", "UTF8", "--no-locale",
                                "--no-sync", check=False)
        if result.returncode != 0:
            raise PostgresStartError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def _configure(self) -> None:
        """Append the test settings to postgresql.conf and make the socket dir."""
        self.socket_dir.mkdir()
        if self._account is not None:
            os.chown(self.socket_dir, self._account.pw_uid, self._account.pw_gid)
        settings = _SETTINGS.format(host=HOST, socket_dir=self.socket_dir)
        with open(self.datadir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(settings)

    def _start_server(self) -> None:
        """Run ``pg_ctl start`` on a free port, retrying if the port got taken."""
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = _free_port()
            result = self._run_tool("pg_ctl", "start", "-w", "-t", str(START_TIMEOUT),
                                    "-D", str(self.datadir), "-l", str(self.logfile),
                                    "-o", f"-p {port}", check=False)
            if result.returncode == 0:
                self.port, self._running = port, True
                return
            log = _tail(self.logfile)
            if "could not bind" not in log or attempt == _START_ATTEMPTS:
                raise PostgresStartError(
                    f"pg_ctl start failed (exit {result.returncode}):\n"
                    f"{result.stdout}{result.stderr}\n--- server log tail ---\n{log}")

    def _run_tool(self, tool: str, *args: str, check: bool) -> subprocess.CompletedProcess:
        """Run a server binary as the service account, in the temp dir."""
        kwargs = {}
        if self._account is not None:
            # extra_groups=[] drops root's supplementary groups too.
            kwargs = dict(user=self._account.pw_uid, group=self._account.pw_gid,
                          extra_groups=[])
        return subprocess.run([os.path.join(self.bindir, tool), *args],
                              cwd=self.tempdir, env=_server_env(), capture_output=True,
                              text=True, timeout=START_TIMEOUT + 30, check=check, **kwargs)

    # -- databases -----------------------------------------------------------

    def url(self, name: str) -> str:
        """The SQLAlchemy URL of database ``name`` on this server."""
        _check_name(name)
        return f"postgresql+psycopg://{SUPERUSER}@{HOST}:{self._require_port()}/{name}"

    def conninfo(self, name: str) -> str:
        """A libpq connection string for database ``name`` (for psycopg directly)."""
        _check_name(name)
        return f"host={HOST} port={self._require_port()} user={SUPERUSER} dbname={name}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database even if clients are still connected to it."""
        with self._admin() as conn:
            # Terminate first so DROP does not wait on connections that test
            # code (e.g. a pool) still holds; FORCE catches any that race in.
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))

    def _admin(self) -> psycopg.Connection:
        """An autocommit connection to the maintenance database ``postgres``."""
        # CREATE/DROP DATABASE cannot run inside a transaction block.
        return psycopg.connect(self.conninfo("postgres"), autocommit=True, connect_timeout=10)

    def _require_port(self) -> int:
        if self.port is None:
            raise RuntimeError("PostgresServer is not started")
        return self.port


def _check_name(name: str) -> None:
    """Accept only plain database names, so URLs need no escaping."""
    if not _DB_NAME.match(name):
        raise ValueError(f"unsupported database name: {name!r}")


def _server_env() -> dict[str, str]:
    """The environment for server binaries: ours, minus PG* variables.

    A stray PGPORT/PGDATA/PGHOST from the developer's shell must not leak into
    the throwaway cluster; LC_ALL=C keeps messages and locale checks stable.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env
