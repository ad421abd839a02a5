"""The benchmark harness's own arithmetic and process handling (bench/harness.py): how it
reads wrk, which runs it counts, the ratios it prints, and that a benchmark stopped with
SIGTERM stops the servers it started. The benchmarks themselves are not run here: they
print figures, they are not timed tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.bench import modules as bench_modules
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def harness():
    """bench/harness.py, imported without keeping its SIGTERM handler in the test process."""
    before = signal.getsignal(signal.SIGTERM)
    try:
        module = bench_modules.load("harness.py")
    finally:
        signal.signal(signal.SIGTERM, before)
    yield module
    bench_modules.unload(module)


# What `wrk --latency` prints (4.2), with failures.
WRK_OUTPUT = """\
Running 8s test @ http://127.0.0.1:40001/api/v1/runs/run_x
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.21ms    1.10ms  31.02ms   91.00%
    Req/Sec     3.82k   210.11     4.10k    80.00%
  Latency Distribution
     50%  850.00us
     75%    4.61ms
     90%    5.33ms
     99%    1.20s
  30418 requests in 8.00s, 9.11MB read
  Socket errors: connect 0, read 2, write 1, timeout 4
  Non-2xx or 3xx responses: 12
Requests/sec:   3802.17
Transfer/sec:      1.14MB
"""


def test_wrk_output_is_read_with_its_units_and_every_kind_of_failure(harness):
    result = harness.parse_wrk(WRK_OUTPUT)
    assert result.rps == 3802.17 and result.requests == 30418
    assert result.p50 == pytest.approx(0.85) and result.p99 == pytest.approx(1200.0)
    assert result.errors == 12 + 2 + 1 + 4


def test_wrk_output_without_failures_or_percentiles(harness):
    clean = "\n".join(line for line in WRK_OUTPUT.splitlines()
                      if not line.startswith(("  Socket", "  Non-2xx")))
    assert harness.parse_wrk(clean).errors == 0
    without_table = clean.replace("     99%    1.20s\n", "")
    with pytest.raises(ValueError, match="99% latency"):
        harness.parse_wrk(without_table)


def test_wrk_script_escapes_quotes_and_backslashes(harness, tmp_path):
    path = tmp_path / "post.lua"
    harness.wrk_script(path, method="POST", body='{"prompt": "a \\"quoted\\" \\\\ slash"}',
                       headers={"Authorization": "Bearer sk-x"})
    assert path.read_text().splitlines() == [
        'wrk.method = "POST"',
        'wrk.body = "{\\"prompt\\": \\"a \\\\\\"quoted\\\\\\" \\\\\\\\ slash\\"}"',
        'wrk.headers["Authorization"] = "Bearer sk-x"',
    ]


def sample(harness, value: float, *, noisy: bool = False, errors: int = 0):
    usage = harness.CpuUsage(wall=1.0, ours=0.9, foreign=0.2 if noisy else 0.01)
    return harness.Sample(value, 1.0, 2.0, usage, errors, noisy)


def test_per_round_ratios_count_only_rounds_whose_two_runs_were_clean(harness):
    ours = [sample(harness, 300), sample(harness, 200, noisy=True), sample(harness, 330),
            sample(harness, 310, errors=3), sample(harness, 90)]
    base = [sample(harness, 100), sample(harness, 100), sample(harness, 110, noisy=True),
            sample(harness, 100), sample(harness, 100)]
    assert harness.paired_ratios(ours, base) == [3.0, 0.9]
    assert harness.describe_paired([3.0, 0.9]) == (
        "per round: median 1.950 (min 0.900, max 3.000, 1 of 2 below 1)")
    assert harness.describe_paired([]) == (
        "per round: no round with both runs quiet and error-free")


def test_the_summary_leaves_noisy_runs_out_of_the_medians(harness, capsys):
    samples = {"runbase": [sample(harness, 300), sample(harness, 900, noisy=True),
                           sample(harness, 320), sample(harness, 280)],
               "baseline": [sample(harness, 100), sample(harness, 100), sample(harness, 110),
                            sample(harness, 90)]}
    harness.summarize(samples, ours="runbase", baseline="baseline", unit="req/s", noise=0.1)
    printed = capsys.readouterr().out
    assert "median     300.0 req/s (min 280.0, max 320.0, n=3, 1 left out)" in printed
    assert "ratio runbase/baseline: 3.000" in printed
    assert "per round: median 3.000 (min 2.909, max 3.111, 0 of 3 below 1)" in printed
    assert "NOT COMPARABLE" not in printed


def test_a_side_with_only_noisy_runs_is_shown_but_never_as_a_clean_ratio(harness, capsys):
    samples = {"runbase": [sample(harness, 300, noisy=True)], "baseline": [sample(harness, 100)]}
    harness.summarize(samples, ours="runbase", baseline="baseline", unit="req/s", noise=0.1)
    printed = capsys.readouterr().out
    assert "EVERY RUN NOISY: for reference only" in printed
    assert "NOT COMPARABLE: a side had only noisy runs" in printed


def test_a_further_pair_of_sides_gets_its_own_ratio_from_the_same_runs(harness, capsys):
    samples = {"runbase": [sample(harness, 300), sample(harness, 330)],
               "bare": [sample(harness, 1000), sample(harness, 1100)],
               "reader": [sample(harness, 600), sample(harness, 500, noisy=True)]}
    harness.print_ratio(samples, ours="runbase", baseline="reader", unit="req/s", noise=0.1)
    printed = capsys.readouterr().out
    assert "ratio runbase/reader: 0.525" in printed  # median 315 against the one quiet 600
    assert "per round: median 0.500 (min 0.500, max 0.500, 1 of 1 below 1)" in printed
    assert "NOT COMPARABLE" not in printed


class ScriptedMeter:
    """Stands in for CpuMeter: runs the action and reports the next scripted foreign CPU."""

    def __init__(self, harness, foreign: list[float]):
        self.harness, self.foreign = harness, list(foreign)

    def measure(self, action):
        return action(), self.harness.CpuUsage(1.0, 0.9, self.foreign.pop(0))


def test_sides_alternate_and_a_noisy_run_earns_an_extra_round(harness, capsys):
    order: list[str] = []

    def side(name: str):
        def prepare():
            order.append(name)
            return lambda: (100.0, None, None, 0)
        return name, prepare

    # Round 2's "a" is noisy, so a third round runs to give "a" its two quiet runs.
    meter = ScriptedMeter(harness, [0.0, 0.0, 0.5, 0.0, 0.0, 0.0])
    samples = harness.interleave([side("a"), side("b")], rounds=2, meter=meter, noise=0.1,
                                 unit="req/s", extra_rounds=2)
    assert order == ["a", "b", "a", "b", "a", "b"]
    assert [s.noisy for s in samples["a"]] == [False, True, False]
    assert "NOISY" in capsys.readouterr().out


BENCH_SCRIPT = """\
import sys, time
sys.path.insert(0, {bench!r})
import harness

server = harness.Server("http", [sys.executable, "-m", "http.server", str({port}),
                                 "--bind", "127.0.0.1"], port={port})
with server:
    print(server.proc.pid, flush=True)
    time.sleep(120)
"""


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_benchmark_stopped_with_sigterm_stops_the_servers_it_started(harness, tmp_path):
    script = tmp_path / "bench_script.py"
    script.write_text(BENCH_SCRIPT.format(bench=str(bench_modules.BENCH), port=harness.free_port()))
    bench = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                             cwd=tmp_path)
    try:
        server_pid = int(bench.stdout.readline())  # up and answering HTTP
        assert _running(server_pid)
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=30) == 128 + signal.SIGTERM
        # Reaped by the time the script exits; the wait only covers a slow machine.
        assert wait_for(lambda: not _running(server_pid)), (
            "the server outlived the benchmark that started it")
    finally:
        bench.kill()
        bench.wait()
        bench.stdout.close()


def test_a_server_started_without_settling_is_not_waited_for_to_go_quiet(harness, tmp_path,
                                                                          monkeypatch):
    # A worker started on a backlog (image_runs.py --backlog) is busy from its first
    # moment: waiting for it to go quiet would wait out the whole timeout.
    settled = []
    monkeypatch.setattr(harness, "wait_until_quiet", lambda roots, **_: settled.append(roots))
    busy = harness.Server("busy", [sys.executable, "-c", "while True: pass"], port=0,
                          ready_path=None, log_dir=str(tmp_path))
    try:
        busy.start(settle=False)
        assert busy.alive() and settled == []
    finally:
        busy.stop()
    busy.start()
    try:
        assert settled == [[busy.proc.pid]]  # the default still settles
    finally:
        busy.stop()
