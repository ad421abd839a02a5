"""The scaled-out deployment of README's "Scaled out" section, started on one machine
from the files in `deploy/`: PostgreSQL, Redis, optionally an S3 server, web machines
running gunicorn with `deploy/gunicorn.conf.py`, standalone workers, and a fake provider
with latency, each process in its own session with a log file.

The commands are the Procfile's and the environment starts from
`deploy/runbase.env.example`, with the addresses of the servers started here filled in;
so what the operator copies is what the end-to-end test and `bench/scale.py` run.
Every web process and worker gets a data directory of its own, as separate machines would:
files reach every machine only through shared storage.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support.postgres import PostgresServer
from tests.support.redis_server import RedisServer
from tests.support.s3_server import S3Server, aws_env, create_bucket

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
#: The model the load goes to: OpenAI's image API, served by the standalone fake.
MODEL = "openai/gpt-image-1"
UPSTREAM_KEY = "sk-fake-upstream"
USER_EMAIL = "operator@example.com"
METRICS_TOKEN = "topology-metrics-token"
START_TIMEOUT = 60.0
_ASSIGNMENT = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def procfile() -> dict[str, list[str]]:
    """deploy/Procfile as {process type: argv}."""
    commands = {}
    for line in (DEPLOY / "Procfile").read_text().splitlines():
        name, colon, command = line.partition(":")
        if colon and not line.startswith("#") and name.strip():
            commands[name.strip()] = shlex.split(command)
    return commands


def example_environment() -> dict[str, str]:
    """deploy/runbase.env.example as a dict (active assignments only, not comments)."""
    values = {}
    for line in (DEPLOY / "runbase.env.example").read_text().splitlines():
        match = _ASSIGNMENT.match(line.strip())
        if match:
            values[match.group(1)] = match.group(2)
    return values


def systemd_directives(unit: str) -> dict[str, list[str]]:
    """The directives of a unit in deploy/systemd as {key: [values in order]}."""
    directives: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd" / unit).read_text().splitlines():
        key, equals, value = line.partition("=")
        if equals and not line.startswith(("#", "[")):
            directives.setdefault(key.strip(), []).append(value.strip())
    return directives


def runnable(argv: list[str]) -> list[str]:
    """A Procfile command run by this interpreter (`gunicorn ...` → `python -m gunicorn
    ...`): the same program and arguments, whatever PATH holds."""
    return [sys.executable, "-m", argv[0], *argv[1:]]


class Process:
    """One process in its own session, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path):
        self.name, self.argv, self.env = name, argv, env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None  # web machines: their base URL

    def start(self) -> "Process":
        """Start it (not waiting for anything)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        """The main process id."""
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the main process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The end of its log, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return f"--- {self.name} ---\n" + "\n".join(text.splitlines()[-lines:])

    def wait_for_log(self, text: str, timeout: float = START_TIMEOUT) -> None:
        """Wait until its log holds `text`."""
        deadline = time.monotonic() + timeout
        while text not in self.log_path.read_text(errors="replace"):
            if not self.alive():
                raise RuntimeError(f"{self.name} exited while starting\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not log {text!r}\n{self.log_tail()}")
            time.sleep(0.05)

    def wait_for_http(self, url: str, timeout: float = START_TIMEOUT) -> None:
        """Wait until `url` answers 200."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if not self.alive():
                raise RuntimeError(f"{self.name} exited while starting\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not answer {url}\n{self.log_tail()}")
            time.sleep(0.05)

    def send(self, signum: int) -> None:
        """Send `signum` to the main process only (as systemd's KillMode=mixed does first)."""
        os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        """Wait for the main process to exit; its exit code."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """SIGTERM the whole session, SIGKILL what is left after 15 s."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@dataclass
class Topology:
    """Everything README's "Scaled out" section describes, on 127.0.0.1.

    `webs` gunicorn instances (machines) with `web_processes` processes each, `workers`
    standalone workers, a fake provider answering after `latency` seconds. With `s3`, an S3
    server holds the files and every process has a data directory of its own (separate
    machines); without it the processes share one local directory (a single machine).
    """

    webs: int = 2
    web_processes: int = 1
    workers: int = 2
    worker_threads: int = 8
    latency: float = 0.0
    credit_usd: str = "100000"
    lease_seconds: int = 5
    s3: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="runbase-topology-"))
        self.postgres = PostgresServer()
        self.redis = RedisServer()
        self.s3_server = S3Server() if self.s3 else None
        self.storage_env: dict[str, str] | None = None
        self.provider: Process | None = None
        self.web_processes_: list[Process] = []
        self.worker_processes: list[Process] = []
        self.database_url = ""
        self.key = ""
        self._started = 0

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> "Topology":
        """Start the servers, migrate, create the operator's account and key, then the
        web machines and the workers; returns self."""
        try:
            self.postgres.start()
            self.database_url = self.postgres.create_database("runbase")
            self.redis.start()
            if self.s3_server is not None:
                url = self.s3_server.start().url
                self.storage_env = {**aws_env(url), "RUNBASE_STORAGE_URL":
                                    f"s3://{create_bucket(url)}/outputs"}
            self._start_provider()
            self._prepare_database()
            for index in range(self.webs):
                self.start_web(index)
            for _ in range(self.workers):
                self.start_worker()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process and server."""
        for process in [*self.worker_processes, *self.web_processes_, self.provider]:
            if process is not None:
                process.stop()
        self.redis.stop()
        if self.s3_server is not None:
            self.s3_server.stop()
        self.postgres.stop()

    def __enter__(self) -> "Topology":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- processes -------------------------------------------------------------------

    def environment(self, data_dir: Path, **overrides: str) -> dict[str, str]:
        """A process's environment: ours minus any Runbase/provider settings, then the
        example environment file, then this topology's addresses."""
        base = {key: value for key, value in os.environ.items()
                if not key.startswith(("RUNBASE_", "OPENAI_", "AWS_", "WEB_CONCURRENCY"))}
        env = {**base, **example_environment()}
        env.update(
            RUNBASE_DATABASE_URL=self.database_url, RUNBASE_REDIS_URL=self.redis.url,
            RUNBASE_PUBLIC_URL=f"http://127.0.0.1:{self._public_port}",
            RUNBASE_SECRET_KEY="topology-secret-key-not-for-production-use-0123456789",
            RUNBASE_DATA_DIR=str(data_dir), RUNBASE_METRICS_TOKEN=METRICS_TOKEN,
            RUNBASE_LEASE_SECONDS=str(self.lease_seconds), RUNBASE_RATE_LIMIT="off",
            RUNBASE_TRUSTED_PROXIES="0", RUNBASE_WORKER_THREADS=str(self.worker_threads),
            OPENAI_API_KEY=UPSTREAM_KEY, OPENAI_BASE_URL=f"{self.provider_url}/v1")
        for key in ("RUNBASE_STORAGE_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID",
                    "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
            env.pop(key, None)  # the example's placeholders; storage_env gives real ones
        env.update(self.storage_env or {})
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def _data_dir(self, name: str) -> Path:
        """Each process's own directory, unless there is no shared storage."""
        path = self.workdir / ("data" if self.storage_env is None else f"data-{name}")
        path.mkdir(exist_ok=True)
        return path

    def _start_provider(self) -> None:
        port = free_port()
        self.provider_url = f"http://127.0.0.1:{port}"
        self._public_port = free_port()  # web 0 listens here (see start_web)
        self.provider = Process("provider", [sys.executable, "-m", "tests.fakes.standalone",
                                             str(port), "--key", UPSTREAM_KEY,
                                             "--latency", str(self.latency)],
                                dict(os.environ), self.workdir).start()
        self.provider.wait_for_log("fake OpenAI on")

    def _cli(self, *args: str) -> str:
        """One operator command (`flask --app app ...`), as the README gives it."""
        env = self.environment(self._data_dir("cli"))
        done = subprocess.run(runnable(["flask", "--app", "app", *args]), cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"flask {args[0]} failed:\n{done.stdout}{done.stderr}")
        return done.stdout.strip()

    def _prepare_database(self) -> None:
        self._cli("db", "upgrade")
        self._cli("create-user", USER_EMAIL, "--password", "a long password",
                  "--credit", self.credit_usd)
        self.key = self._cli("create-key", USER_EMAIL, "--name", "load").splitlines()[-1]

    def start_web(self, index: int) -> Process:
        """Web machine `index`: gunicorn with deploy/gunicorn.conf.py on its own port
        (machine 0 on the port RUNBASE_PUBLIC_URL names)."""
        port = self._public_port if index == 0 else free_port()
        env = self.environment(self._data_dir(f"web{index}"), RUNBASE_BIND=f"127.0.0.1:{port}",
                               WEB_CONCURRENCY=str(self.web_processes))
        process = Process(f"web{index}", runnable(procfile()["web"]), env, self.workdir).start()
        process.url = f"http://127.0.0.1:{port}"
        self.web_processes_.append(process)
        process.wait_for_http(process.url + "/healthz")
        return process

    def start_worker(self) -> Process:
        """One more standalone worker (the Procfile's `worker`), with its own metrics port."""
        number = self._started = self._started + 1
        env = self.environment(self._data_dir(f"worker{number}"),
                               RUNBASE_WORKER_METRICS_ADDRESS=f"127.0.0.1:{free_port()}")
        process = Process(f"worker{number}", runnable(procfile()["worker"]), env,
                          self.workdir).start()
        self.worker_processes.append(process)
        process.wait_for_log("running")
        return process

    # -- what clients see --------------------------------------------------------------

    @property
    def web_urls(self) -> list[str]:
        """Base URLs of the web machines."""
        return [process.url for process in self.web_processes_]

    @property
    def headers(self) -> dict[str, str]:
        """The API key's Authorization header."""
        return {"Authorization": f"Bearer {self.key}"}

    def log_tails(self) -> str:
        """Every process's log tail, for a failing test's message."""
        processes = [self.provider, *self.web_processes_, *self.worker_processes]
        return "\n".join(process.log_tail() for process in processes if process is not None)
