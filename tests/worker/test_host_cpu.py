"""The machine's idle CPU as a worker reads it from /proc/stat."""
from __future__ import annotations

import os
import time

import pytest

from runbase_web.worker import host_cpu
from runbase_web.worker.host_cpu import HostCpu


@pytest.fixture
def stat(tmp_path, monkeypatch):
    """A /proc/stat of the test's own, read by HostCpu instead of the machine's."""
    path = tmp_path / "stat"
    monkeypatch.setattr(host_cpu, "_STAT", str(path))
    return path


def _stat(path, user: int, idle: int, iowait: int = 0) -> None:
    path.write_text(f"cpu  {user} 0 0 {idle} {iowait} 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n")


def test_idle_cores_come_from_the_ticks_between_two_readings(stat, monkeypatch):
    monkeypatch.setattr(host_cpu, "READ_SECONDS", 0)
    reader = HostCpu(cores=2)
    _stat(stat, user=1000, idle=1000)
    assert reader.idle_cores() is None, "one reading says nothing yet"
    _stat(stat, user=1180, idle=1010, iowait=10)  # 180 busy, 20 idle ticks since
    assert abs(reader.idle_cores() - 0.2) < 1e-9
    _stat(stat, user=1200, idle=1190, iowait=10)
    assert abs(reader.idle_cores() - 2 * 180 / 200) < 1e-9


def test_readings_are_reused_for_a_while(stat, monkeypatch):
    monkeypatch.setattr(host_cpu, "READ_SECONDS", 3600)
    reader = HostCpu(cores=2)
    _stat(stat, user=0, idle=100)
    reader.idle_cores()
    _stat(stat, user=100, idle=100)
    assert reader.idle_cores() is None, "read again too soon"


def test_an_unreadable_stat_file_means_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(host_cpu, "_STAT", str(tmp_path / "missing"))
    monkeypatch.setattr(host_cpu, "READ_SECONDS", 0)
    reader = HostCpu()
    assert reader.idle_cores() is None
    assert reader.idle_cores() is None


def test_this_machine_can_be_read(monkeypatch):
    monkeypatch.setattr(host_cpu, "READ_SECONDS", 0)
    reader = HostCpu()
    reader.idle_cores()
    time.sleep(0.05)  # a few clock ticks
    idle = reader.idle_cores()
    if os.path.exists("/proc/stat"):  # Linux, as in CI
        assert idle is not None and 0 <= idle <= reader.cores
