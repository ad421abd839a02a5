"""What the server benchmarks share: servers on free ports, readiness, wrk runs and their
output, CPU accounting (ours versus everyone else's), interleaved rounds and the summary.

A figure is only worth comparing with a baseline measured in the same run, on the same
machine, at the same time, so every script here alternates our side and the baseline
(A, B, A, B ...) and records, for each run, the share of the machine's CPU that other
processes took meanwhile. Runs where that share reaches the noise threshold are shown
but left out of the medians.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

#: The checkout this script was started from: the lead runs the same script on
#: before/after trees, so nothing may point at another checkout.
ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
WRK = os.environ.get("WRK", "wrk")
#: Variables that would change what the servers under test do if they leaked in from the
#: shell that started the benchmark.
_LEAKY = ("RUNBASE_", "OPENAI_", "DATABASE_URL", "LITELLM_", "PG")


# -- processes and ports ------------------------------------------------------------

def _unwind_on_sigterm(signum: int, _frame) -> None:
    """Turn SIGTERM (kill, `timeout`) into an exit that unwinds like Ctrl+C does.

    Every server here runs in a session of its own (see Server), so the signal that stops
    a script never reaches them; without this, Python's default action ends the script on
    the spot and its gunicorns, workers, fakes and PostgreSQL keep running, taking CPU
    from whatever is measured next. Raising SystemExit runs the scripts' `with` blocks and
    ExitStack callbacks, which stop them."""
    raise SystemExit(128 + signum)


if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _unwind_on_sigterm)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without Runbase, provider, LiteLLM or PostgreSQL settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY)}
    env.update(extra)
    return env


class Server:
    """A server process (with its children) in its own session, logging to a file.

    Its own session so that stopping it reaches gunicorn's workers and anything else it
    forked, and nothing of ours.
    """

    def __init__(self, name: str, command: list[str], *, port: int, env: dict | None = None,
                 cwd: Path = ROOT, ready_path: str | None = "/", ready_text: str | None = None,
                 log_dir: str | None = None):
        self.name, self.command, self.port = name, command, port
        self.env, self.cwd = env, cwd
        self.ready_path, self.ready_text = ready_path, ready_text
        self.log_path = Path(log_dir or tempfile.mkdtemp(prefix="bench-log-")) / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120, *, settle: bool = True) -> "Server":
        """Start it; wait until it answers HTTP on `ready_path` (if given), has logged
        `ready_text` (if given), and (with `settle`) its processes have finished booting.
        Without `settle` it returns as soon as it is ready: for a process that has work
        waiting the moment it starts, and so never goes quiet."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        try:
            if self.ready_path is not None:
                wait_for_http(self.url + self.ready_path, timeout, self)
            if self.ready_text is not None:
                self.wait_for_log(self.ready_text, timeout)
            # Answering once is not ready: gunicorn's other workers may still be importing
            # the app, and that CPU would land in the first measured run.
            if settle:
                wait_until_quiet([self.proc.pid], timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_for_log(self, text: str, timeout: float) -> None:
        """Wait until the log holds `text` (for servers that answer no HTTP, e.g. a worker)."""
        deadline = time.monotonic() + timeout
        while text not in self.log_path.read_text(errors="replace"):
            if not self.alive():
                raise RuntimeError(f"{self.name} exited while starting:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not log {text!r} within {timeout:.0f} s\n"
                                   f"{self.log_tail()}")
            time.sleep(0.1)

    def alive(self) -> bool:
        """Whether the main process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The end of its log, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM the whole session, then SIGKILL what is left after 15 s."""
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
        self.proc = None

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def wait_for_http(url: str, timeout: float, server: Server | None = None) -> None:
    """Wait until `url` answers with any HTTP status (a 401 or 404 still means ready)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except urllib.error.HTTPError:
            return
        except (OSError, urllib.error.URLError):
            pass
        if server is not None and not server.alive():
            raise RuntimeError(f"{server.name} exited while starting:\n{server.log_tail()}")
        if time.monotonic() > deadline:
            tail = server.log_tail() if server else ""
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s\n{tail}")
        time.sleep(0.1)


def gunicorn(name: str, app: str, *, workers: int, chdir: Path, env: dict,
             worker_class: str = "sync", threads: int = 1, ready_path: str = "/",
             log_dir: str | None = None) -> Server:
    """An (unstarted) gunicorn server for `app` (module:variable) on a free port, run by
    this interpreter so both sides use the same Python and packages."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--workers", str(workers),
               "--worker-class", worker_class, "--threads", str(threads),
               "--bind", f"127.0.0.1:{port}", "--chdir", str(chdir), app]
    return Server(name, command, port=port, env=env, ready_path=ready_path, log_dir=log_dir)


# -- a lean load-generating client ----------------------------------------------------

class JsonClient:
    """A small HTTP/1.1 JSON client for load generation: one connection per thread, kept
    alive while the server keeps it open.

    The load runs on the same two cores as the servers under test, so what the client
    spends is taken from them: `requests` spent about three times as much CPU per call as
    `http.client` does here. wrk is used where a benchmark needs no per-request logic.
    """

    def __init__(self, base_url: str, headers: dict[str, str] | None = None,
                 timeout: float = 60):
        parts = urllib.parse.urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.headers = {"Accept": "application/json", **(headers or {})}
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.host, self.port,
                                                    timeout=self.timeout)
            self._local.connection = connection
        return connection

    def request(self, method: str, path: str, body: object = None,
                params: dict | None = None) -> tuple[int, object]:
        """Send one request; (status, the JSON body or None). A kept-alive connection the
        server closed meanwhile is opened again and the request sent once more."""
        if params:
            path = f"{path}?{urllib.parse.urlencode(params)}"
        headers = dict(self.headers)
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection = self._connection()
        reused = connection.sock is not None
        try:
            connection.request(method, path, payload, headers)
            response = connection.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            connection.close()
            if not reused:
                raise
            connection.request(method, path, payload, headers)  # it reconnects
            response = connection.getresponse()
        data = response.read()  # a "Connection: close" answer closes the connection here
        return response.status, (json.loads(data) if data else None)

    def post(self, path: str, body: object) -> tuple[int, object]:
        """POST `body` as JSON."""
        return self.request("POST", path, body)

    def get(self, path: str, params: dict | None = None) -> tuple[int, object]:
        """GET with an optional query string."""
        return self.request("GET", path, params=params)


# -- CPU accounting -----------------------------------------------------------------

def busy_jiffies() -> int:
    """CPU time all processes used so far, in clock ticks (first line of /proc/stat).

    irq and softirq time belongs to no process, so it counts as foreign, including the
    loopback traffic of our own requests; that errs towards calling a run noisy, and stayed
    under 1 % of the machine even at 6,000 requests/s.
    """
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return user + nice + system + irq + softirq + steal


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, start time, CPU ticks incl. reaped children) for every process."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:  # it ended while we looked
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = raw[raw.rindex(")") + 2:].split()
        ppid, start = int(fields[1]), int(fields[19])
        ticks = sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
        table[int(entry.name)] = (ppid, start, ticks)
    return table


def tree_ticks(roots: Iterable[int]) -> dict[tuple[int, int], int]:
    """(pid, start time) -> CPU ticks for the roots and all their descendants.

    Each count is a process's own time plus that of the children it has reaped
    (cutime/cstime), so wrk, once waited for, shows up in this script's count.
    """
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _start, _ticks) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen, todo = set(), [pid for pid in roots if pid in table]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, ()))
    return {(pid, table[pid][1]): table[pid][2] for pid in seen}


@dataclass
class CpuUsage:
    """The CPU spent during one measured stretch, as shares of the whole machine."""

    wall: float
    ours: float      # the processes under test, their children and this script (incl. wrk)
    foreign: float   # everyone else: total busy minus ours
    client: float = 0.0  # the load: this script and what it ran and reaped (wrk), in `ours`


def _own_cpu() -> float:
    """CPU seconds of this process and of its children it has waited for (wrk)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class CpuMeter:
    """Measures ours versus foreign CPU over a stretch of time.

    "Ours" is this process, its descendants (servers, wrk, workers) and `extra_roots`
    with their descendants (e.g. a PostgreSQL postmaster, which pg_ctl detaches from us).
    """

    def __init__(self, extra_roots: Iterable[int] = ()):
        self.extra_roots = list(extra_roots)

    def _roots(self) -> list[int]:
        return [os.getpid(), *self.extra_roots]

    def measure(self, action: Callable[[], object]) -> tuple[object, CpuUsage]:
        """Run `action` and return (its result, the CPU used meanwhile)."""
        before_tree, before_all = tree_ticks(self._roots()), busy_jiffies()
        started, own = time.perf_counter(), _own_cpu()
        result = action()
        wall = time.perf_counter() - started
        client = (_own_cpu() - own) / (wall * CORES)
        after_tree, after_all = tree_ticks(self._roots()), busy_jiffies()
        # Per process, so a pid that ended keeps no weight and a new one counts in full;
        # a process that ended is counted in its parent's cutime instead.
        ours = sum(ticks - before_tree.get(key, 0) for key, ticks in after_tree.items())
        capacity = wall * TICK * CORES
        foreign = max(after_all - before_all - ours, 0)
        return result, CpuUsage(wall, ours / capacity, foreign / capacity, client)

    def wait_for_others(self, below: float, timeout: float) -> float:
        """Wait (up to `timeout` s) until other processes use less than `below` of the
        machine over one second, so a run does not start in the middle of someone's test
        suite; returns the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            _, usage = self.measure(lambda: time.sleep(1.0))
            if usage.foreign < below:
                break
        return time.monotonic() - started - 1.0


def wait_until_quiet(roots: list[int], *, below: float = 0.05, window: float = 0.5,
                     timeout: float = 60) -> None:
    """Wait until the process trees use less than `below` of one core over `window` seconds
    (servers that still import code would otherwise add their start-up to a measurement)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(tree_ticks(roots).values())
        time.sleep(window)
        if (sum(tree_ticks(roots).values()) - before) / TICK / window < below:
            return


def postmaster_pid(datadir: Path) -> int | None:
    """The PostgreSQL server's pid from its data directory, or None."""
    try:
        return int((datadir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


# -- wrk ------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


@dataclass
class WrkResult:
    """What one wrk run printed: throughput, latency percentiles (ms) and failures."""

    rps: float
    p50: float
    p99: float
    requests: int
    errors: int  # non-2xx/3xx answers plus socket errors
    output: str = field(repr=False, default="")


def parse_wrk(output: str) -> WrkResult:
    """Read wrk's report (run with --latency for the percentile table)."""
    def number(pattern: str, default: float | None = None) -> float:
        match = re.search(pattern, output)
        if match is None:
            if default is None:
                raise ValueError(f"wrk output has no {pattern!r}:\n{output}")
            return default
        return float(match.group(1))

    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
        if match is None:
            raise ValueError(f"wrk output has no {percent}% latency (was --latency given?)")
        return float(match.group(1)) * _UNITS[match.group(2)]

    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", output)
    failed = 0 if socket_errors is None else sum(int(v) for v in socket_errors.groups())
    return WrkResult(rps=number(r"Requests/sec:\s+([\d.]+)"), p50=latency("50"),
                     p99=latency("99"), requests=int(number(r"(\d+) requests in")),
                     errors=int(number(r"Non-2xx or 3xx responses: (\d+)", 0)) + failed,
                     output=output)


def run_wrk(url: str, *, seconds: float, threads: int = 1, connections: int = 16,
            script: str | None = None) -> WrkResult:
    """One wrk run against `url`; wrk's output is parsed, and printed if unreadable."""
    command = [WRK, "--latency", "-t", str(threads), "-c", str(connections),
               "-d", f"{max(int(round(seconds)), 1)}s", "--timeout", "10s"]
    if script:
        command += ["-s", script]
    done = subprocess.run(command + [url], capture_output=True, text=True,
                          timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr}{done.stdout}")
    return parse_wrk(done.stdout)


def wrk_script(path: Path, *, method: str, body: str | None = None,
               headers: dict[str, str] | None = None) -> str:
    """Write a wrk Lua script sending every request with this method, body and headers."""
    def lua(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [f"wrk.method = {lua(method)}"]
    if body is not None:
        lines.append(f"wrk.body = {lua(body)}")
    for name, value in (headers or {}).items():
        lines.append(f"wrk.headers[{lua(name)}] = {lua(value)}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# -- interleaving and the summary ----------------------------------------------------

@dataclass
class Sample:
    """One measured run of one side."""

    value: float  # the figure compared (req/s, runs/s): bigger is better
    p50: float | None
    p99: float | None
    cpu: CpuUsage
    errors: int = 0
    noisy: bool = False


Measured = Callable[[], tuple[float, float | None, float | None, int]]


def interleave(sides: list[tuple[str, Callable[[], Measured]]],
               *, rounds: int, meter: CpuMeter, noise: float, unit: str,
               quiet_wait: float = 0, extra_rounds: int = 0) -> dict[str, list[Sample]]:
    """Run the sides alternately (A, B, A, B ...) for `rounds` rounds and print each run.

    Each side is a callable that warms up and returns the action to measure; that action
    returns (value, p50 ms or None, p99 ms or None, errors). Only the action is timed and
    CPU-accounted, so warm-ups never count. A run is noisy when other processes took
    `noise` or more of the machine's CPU during it. With `quiet_wait`, each run first waits
    up to that many seconds for other processes to use less than half of `noise`. While a
    side has fewer than `rounds` quiet, error-free runs, up to `extra_rounds` more rounds run.
    """
    samples: dict[str, list[Sample]] = {name: [] for name, _ in sides}
    width = max(len(name) for name, _ in sides)
    def short() -> bool:
        return any(sum(not s.noisy and not s.errors for s in runs) < rounds
                   for runs in samples.values())

    round_number = 0
    while round_number < rounds or (round_number < rounds + extra_rounds and short()):
        round_number += 1
        for name, prepare in sides:
            if quiet_wait > 0:
                waited = meter.wait_for_others(noise / 2, quiet_wait)
                if waited >= 1:
                    print(f"  (waited {waited:.0f} s for other processes to quieten down)",
                          flush=True)
            measured = prepare()  # warm-up happens here, outside the measured stretch
            (value, p50, p99, errors), cpu = meter.measure(measured)
            sample = Sample(value, p50, p99, cpu, errors, noisy=cpu.foreign >= noise)
            samples[name].append(sample)
            latency = "" if p50 is None else f"  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms"
            flags = ("  NOISY" if sample.noisy else "") + (f"  {errors} ERRORS" if errors else "")
            print(f"  round {round_number}  {name:<{width}}  {value:9.1f} {unit}{latency}  "
                  f"others {cpu.foreign:5.1%}  ours {cpu.ours:5.1%} (client {cpu.client:4.1%})"
                  f"{flags}", flush=True)
    return samples


def _kept(runs: list[Sample]) -> tuple[list[Sample], bool]:
    """The runs a side's figure is taken from, and whether they are noisy ones: its quiet,
    error-free runs, or its error-free noisy runs when it had no quiet one."""
    clean = [s for s in runs if not s.errors]
    quiet = [s for s in clean if not s.noisy]
    return (quiet, False) if quiet or not clean else (clean, True)


def summarize(samples: dict[str, list[Sample]], *, ours: str, baseline: str, unit: str,
              noise: float) -> None:
    """Print each side's median (min-max) over quiet, error-free runs, median p50/p99, the
    foreign CPU of every run, and the ratio of the medians ours/baseline.

    When every run of a side was noisy, its noisy runs are summarized instead, labelled as
    such, so a busy machine still shows something, but never passes for a clean figure.
    """
    width = max(len(name) for name in samples)
    for name, runs in samples.items():
        kept, noisy = _kept(runs)
        note = f", {len(runs) - len(kept)} left out" if len(kept) < len(runs) else ""
        if noisy:
            note = ", EVERY RUN NOISY: for reference only"
        foreign = ", ".join(f"{s.cpu.foreign:.1%}" for s in runs)
        if not kept:
            print(f"  {name:<{width}}  no error-free run to report (others: {foreign})")
            continue
        values = [s.value for s in kept]
        line = (f"  {name:<{width}}  median {statistics.median(values):9.1f} {unit} "
                f"(min {min(values):.1f}, max {max(values):.1f}, n={len(kept)}{note})")
        if kept[0].p50 is not None:
            line += (f"  p50 {statistics.median(s.p50 for s in kept):.2f} ms"
                     f"  p99 {statistics.median(s.p99 for s in kept):.2f} ms")
        print(line + f"  others per run: {foreign}")
    print_ratio(samples, ours=ours, baseline=baseline, unit=unit, noise=noise)


def print_ratio(samples: dict[str, list[Sample]], *, ours: str, baseline: str, unit: str,
                noise: float) -> None:
    """Print the ratio of two sides' medians (taken as summarize() takes them) and their
    per-round ratios; nothing when a side has no error-free run."""
    (ours_kept, ours_noisy), (base_kept, base_noisy) = (_kept(samples[ours]),
                                                        _kept(samples[baseline]))
    if not ours_kept or not base_kept:
        return
    ratio = (statistics.median(s.value for s in ours_kept)
             / statistics.median(s.value for s in base_kept))
    warning = "; NOT COMPARABLE: a side had only noisy runs" if ours_noisy or base_noisy else ""
    print(f"  ratio {ours}/{baseline}: {ratio:.3f} "
          f"(medians of {unit}; runs with others >= {noise:.0%} of the CPU or with "
          f"errors left out{warning})")
    print(f"  {describe_paired(paired_ratios(samples[ours], samples[baseline]))}")


def paired_ratios(ours: list[Sample], baseline: list[Sample]) -> list[float]:
    """ours/baseline within each round whose two runs were both quiet and error-free.

    The machine's speed drifts over minutes; the two runs of one round are seconds apart,
    so their ratio is steadier than a ratio of medians taken over the whole script."""
    return [a.value / b.value for a, b in zip(ours, baseline)
            if b.value and not (a.noisy or a.errors or b.noisy or b.errors)]


def describe_paired(ratios: list[float]) -> str:
    """One line on the per-round ratios: median, min-max, and how many were below 1."""
    if not ratios:
        return "per round: no round with both runs quiet and error-free"
    below = sum(ratio < 1 for ratio in ratios)
    return (f"per round: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, "
            f"max {max(ratios):.3f}, {below} of {len(ratios)} below 1)")


# -- Runbase and PostgreSQL set-up ---------------------------------------------------

def runbase_env(data_dir: str, database_url: str | None = None, **extra: str) -> dict[str, str]:
    """The environment for Runbase's processes: its own data dir and database, no embedded
    worker (nothing may run runs behind a benchmark's back) and no rate limit."""
    env = clean_env(RUNBASE_DATA_DIR=data_dir, RUNBASE_EMBEDDED_WORKER="0",
                    RUNBASE_RATE_LIMIT="off", **extra)
    if database_url:
        env["RUNBASE_DATABASE_URL"] = database_url
    return env


def prepare_runbase(env: dict[str, str], credit_usd: str = "1000000", tree: Path = ROOT) -> str:
    """Migrate, create a user with `credit_usd` and return a new API key, through the
    operator commands of the checkout at `tree` (a stable interface, so this works on any
    tree of the project)."""
    flask = [sys.executable, "-m", "flask", "--app", "app"]

    def cli(*args: str) -> str:
        done = subprocess.run(flask + list(args), cwd=tree, env=env, capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise RuntimeError(f"flask {' '.join(args[:1])} failed:\n{done.stdout}{done.stderr}")
        return done.stdout.strip()

    cli("db", "upgrade")
    cli("create-user", "bench@example.com", "--password", "a long password",
        "--credit", credit_usd)
    return cli("create-key", "bench@example.com", "--name", "bench").splitlines()[-1]


def start_postgres():
    """A private PostgreSQL server on 127.0.0.1 in a temp dir, run as a non-root account
    when we are root: the tests' own helper (tests/support/postgres.py), so the benchmark
    gets exactly the server the suite uses (fsync and synchronous_commit off)."""
    sys.path.insert(0, str(ROOT))
    try:
        from tests.support.postgres import PostgresServer
    except ImportError as error:
        raise SystemExit(f"cannot import tests/support/postgres.py ({error}); "
                         "use --db sqlite") from None
    return PostgresServer().start()
