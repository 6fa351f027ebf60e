"""Owning background processes safely: pidfiles, liveness, detached launch, termination.

Used by the Kafka broker and the background server alike. A pid is only ever signalled after
its command line has been checked by the caller; liveness comes from ``/proc/<pid>/stat``
because a process's cmdline reads empty for a moment while it execs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from trackstream.errors import ServiceUnavailable

KILL_GRACE_S = 10.0


class InfraError(ServiceUnavailable):
    """The local infrastructure could not be installed, started or stopped."""


# Processes launched by this Python process, kept so they can be reaped after they exit
# (otherwise they linger as zombies, which still answer os.kill(pid, 0)).
_launched: dict[int, subprocess.Popen[bytes]] = {}


def parse_proc_cmdline(raw: bytes) -> list[str]:
    """Arguments from ``/proc/<pid>/cmdline`` (NUL-separated, NUL-terminated)."""
    return [arg.decode("utf-8", "surrogateescape") for arg in raw.split(b"\0") if arg]



def read_pid(pid_path: Path) -> int | None:
    try:
        text = pid_path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def read_cmdline(pid: int) -> list[str] | None:
    """The process's arguments, or None if it does not exist (or is a zombie)."""
    proc_cmdline = Path(f"/proc/{pid}/cmdline")
    if Path("/proc/self/cmdline").exists():
        try:
            args = parse_proc_cmdline(proc_cmdline.read_bytes())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        return args or None
    # No procfs (e.g. macOS): whitespace-split `ps` output. A path containing spaces then never
    # matches, which errs on the side of not signalling the process.
    result = subprocess.run(
        ["ps", "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    args = result.stdout.split()
    return args or None



def parse_proc_stat_state(stat_line: str) -> str:
    """The one-letter state from ``/proc/<pid>/stat`` (the comm field may contain spaces and ')')."""
    return stat_line[stat_line.rindex(")") + 1 :].split()[0]


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie. (Its cmdline is no liveness signal: it reads
    empty for a moment while the process execs.)"""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = parse_proc_stat_state(Path(f"/proc/{pid}/stat").read_text())
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return False
        result = subprocess.run(
            ["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, check=False
        )
        state = result.stdout.strip()[:1]
        if not state:
            return False
    except (ProcessLookupError, ValueError, IndexError):
        return False
    return state not in ("Z", "X")


def _reap(pid: int) -> None:
    launched = _launched.get(pid)
    if launched is not None and launched.poll() is not None:
        del _launched[pid]



def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as tmp:
            tmp.write(text)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise




def launch_detached(command: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
                    cwd: Path | None = None, banner: str | None = None) -> int:
    """Start ``command`` in its own session (it outlives us), output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        if banner:
            log.write(f"{banner} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')} ====\n".encode())
            log.flush()
        process = subprocess.Popen(
            list(command), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=cwd, env=dict(env) if env is not None else None, start_new_session=True, close_fds=True,
        )
    _launched[process.pid] = process
    return process.pid


def wait_for_exec(pid: int, timeout: float = 10.0, *, read: Callable[[int], Sequence[str] | None] | None = None,
                  alive: Callable[[int], bool] | None = None, poll_s: float = 0.01) -> bool:
    """Wait until ``pid`` shows its own command line; False if it died first or ``timeout`` passed.

    ``subprocess.Popen`` returns once the child's exec has begun, and its cmdline reads empty until
    the exec is done: a command-line check made straight after a launch can take a starting process
    for someone else's (on a loaded machine, for milliseconds)."""
    read, alive = read or read_cmdline, alive or pid_alive
    deadline = time.monotonic() + timeout
    while alive(pid):
        if read(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
    return False


def terminate(pid: int, timeout: float, what: str) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; raises if the process survives both."""
    for sig, wait_s in ((signal.SIGTERM, timeout), (signal.SIGKILL, KILL_GRACE_S)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        give_up_at = time.monotonic() + wait_s
        while time.monotonic() < give_up_at:
            if not pid_alive(pid):
                return
            time.sleep(0.1)
    if pid_alive(pid):
        raise ServiceUnavailable(f"{what} pid {pid} survived SIGKILL")


def stop_recorded(pid_path: Path, owned_pid: int | None, timeout: float, what: str) -> bool:
    """Terminate ``owned_pid`` (already checked to be ours) and drop its pidfile; False if none ran."""
    if owned_pid is not None:
        terminate(owned_pid, timeout, what)
    pid_path.unlink(missing_ok=True)
    return owned_pid is not None


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """Serialise start/stop of the service living in ``directory`` across processes (e.g. the CLI
    and a test session)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


LOG_TAIL_READ_BYTES = 256 * 1024


def launched_log_tail(log_path: Path, launch_marker: str, lines: int, what: str) -> str:
    """The last ``lines`` lines written to ``log_path`` since the latest ``launch_marker``."""
    try:
        with open(log_path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - LOG_TAIL_READ_BYTES))
            text = log.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"<no {what} log>"
    marker_at = text.rfind(launch_marker)
    if marker_at >= 0:
        text = text[marker_at:].partition("\n")[2]
    tail = "\n".join(text.splitlines()[-lines:])
    return tail or f"<the {what} wrote nothing>"


def owned_pid(pid_path: Path, is_ours: Callable[[Sequence[str]], bool]) -> int | None:
    """The pidfile's pid if that process is alive and its command line says it is ours (a reused
    pid, or a pidfile left by a process that died, names someone else's process)."""
    pid = read_pid(pid_path)
    if pid is None or not pid_alive(pid):
        return None
    cmdline = read_cmdline(pid)
    return pid if cmdline is not None and is_ours(cmdline) else None


def wait_until_answering(pid: int, pid_path: Path, answers: Callable[[], bool], timeout: float, *,
                         stop_on_failure: bool, what: str, where: str, log_path: Path,
                         log_tail: Callable[[], str], poll_s: float = 0.2) -> None:
    """Return once ``answers()``; if the process exits first, or ``timeout`` passes (then, with
    ``stop_on_failure``, after stopping it), raise an :class:`InfraError` quoting its log."""
    deadline = time.monotonic() + timeout
    while True:
        if not pid_alive(pid):
            pid_path.unlink(missing_ok=True)
            raise InfraError(f"the {what} (pid {pid}) exited during startup; last lines of {log_path}:\n{log_tail()}")
        if answers():
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    if stop_on_failure:
        terminate(pid, KILL_GRACE_S, what)
        pid_path.unlink(missing_ok=True)
        outcome = "it was stopped again"
    else:
        outcome = f"it is still running as pid {pid}"
    raise InfraError(f"the {what} did not answer on {where} within {timeout:.0f}s ({outcome}); "
                     f"last lines of {log_path}:\n{log_tail()}")


def port_is_free(host: str, port: int) -> bool:
    """Whether a listener could bind ``host:port`` now (TIME_WAIT leftovers do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def ensure_ports_free(host: str, ports: Mapping[str, int], ours: str) -> None:
    """Refuse to start when another process holds one of ``ports`` ({role: port}); ``ours`` names
    the process of ours it is not."""
    for role, port in ports.items():
        if not port_is_free(host, port):
            raise InfraError(f"{role} port {port} on {host} is already in use by another process (not {ours}). "
                             f"Stop that process or choose another port.")
