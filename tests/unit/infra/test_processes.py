"""infra.processes: recognising a process that is still exec'ing."""

from __future__ import annotations

import sys

from trackstream.infra.processes import launch_detached, pid_alive, read_cmdline, terminate, wait_for_exec


def test_a_launched_process_is_waited_for_until_its_command_line_reads_as_its_own():
    cmdlines = iter([None, [], [], ["python", "-m", "trackstream.cli", "worker"]])
    calls = []

    def read(pid):
        calls.append(pid)
        return next(cmdlines)

    assert wait_for_exec(42, 5.0, read=read, alive=lambda pid: True, poll_s=0) is True
    assert calls == [42, 42, 42, 42]


def test_a_process_that_dies_while_starting_is_not_waited_for():
    assert wait_for_exec(42, 5.0, read=lambda pid: None, alive=lambda pid: False, poll_s=0) is False


def test_a_process_whose_command_line_never_shows_is_given_up_after_the_timeout():
    assert wait_for_exec(42, 0.05, read=lambda pid: [], alive=lambda pid: True, poll_s=0.01) is False


def test_a_real_launch_reads_its_own_command_line_once_waited_for(tmp_path):
    pid = launch_detached([sys.executable, "-c", "import time; time.sleep(30)", "marker-arg"], tmp_path / "p.log")
    try:
        assert wait_for_exec(pid) is True
        assert "marker-arg" in (read_cmdline(pid) or [])
    finally:
        terminate(pid, 5.0, "test sleeper")
    assert not pid_alive(pid)
