"""The first run as the README tells it: the welcome's commands, then the README's shell blocks.

A server starts on a fresh data directory, as ``./dev serve`` runs it; the
commands its welcome prints run as printed, then every shell block of the
README marked ``<!-- readme-test: run -->`` runs in order (with the test
server's port in place of 50051), through the real ``./dev`` script.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from memoryd_server.config import ENVIRONMENT_VARIABLES, Settings
from memoryd_server.welcome import welcome_text

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- readme-test: run -->"
# gRPC core's own lines (glog format: "I1203 14:58:35.541151   14071 fork_posix.cc:71] ...").
GRPC_CORE_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\]")


@dataclass
class FirstRun:
    """A server started as ``./dev serve`` starts it, and what it printed."""

    port: int
    data_dir: Path
    log: Path
    env: dict[str, str]

    def stderr_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _shell_env() -> dict[str, str]:
    """This environment without memoryd settings, with ./dev using the tests' virtualenv."""
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    env["MEMORYD_VENV"] = str(Path(sys.executable).parent.parent)
    return env


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstRun]:
    """``memoryd serve --welcome`` on a new data directory, until the welcome is printed."""
    base = tmp_path_factory.mktemp("first-run")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    env.update(
        MEMORYD_DATA_DIR=str(base / "data"),
        MEMORYD_ADDR=f"127.0.0.1:{port}",
        MEMORYD_METRICS_ADDR="127.0.0.1:0",
        MEMORYD_LOG_FORMAT="json",
    )
    log = base / "stderr.log"
    with log.open("wb") as stream:
        process = subprocess.Popen(
            [sys.executable, "-m", "memoryd_server", "serve", "--welcome"],
            env=env,
            stdout=stream,
            stderr=stream,
        )
    run = FirstRun(port, base / "data", log, _shell_env())
    try:
        deadline = time.monotonic() + 180
        while "Stop it with Ctrl-C." not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield run
    finally:
        process.terminate()
        process.wait(60)


def _welcome(run: FirstRun) -> list[str]:
    lines = run.stderr_lines()
    start = next(i for i, line in enumerate(lines) if line.startswith("memoryd is serving on"))
    return lines[start : start + 9]


def test_welcome_says_where_what_and_how(first_run: FirstRun) -> None:
    """Once healthy: the address, the data directory, the auth mode, metrics, three commands."""
    welcome = _welcome(first_run)
    assert welcome[0] == f"memoryd is serving on localhost:{first_run.port}"
    assert welcome[1].startswith(f"  data:    {first_run.data_dir.resolve()} (embedded")
    assert welcome[2].startswith("  auth:    off")
    assert re.fullmatch(r"  metrics: http://127\.0\.0\.1:\d+/metrics", welcome[3])
    commands = [line.strip() for line in welcome[5:8]]
    assert all(c.startswith("./dev ") for c in commands), welcome


def test_welcome_commands_work_as_printed(first_run: FirstRun) -> None:
    """Each command the welcome suggests succeeds, run from the project's directory."""
    commands = [line.strip() for line in _welcome(first_run)[5:8]]
    outputs = []
    for command in commands:
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=REPO,
            env=first_run.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        outputs.append(done.stdout)
    assert "memoryd.v1.ConversationService" in outputs[0]
    assert [m["seq"] for m in json.loads(outputs[1])["messages"]] == ["1"]
    assert [m["content"] for m in json.loads(outputs[2])["messages"]] == ["Hello!"]


def test_stderr_is_json_lines_and_the_welcome_only(first_run: FirstRun) -> None:
    """No line of gRPC core's own (fork_posix, add_port) among the JSON log."""
    welcome = set(_welcome(first_run))
    for line in first_run.stderr_lines():
        assert not GRPC_CORE_LINE.match(line), line
        if line and line not in welcome and not line.startswith("  "):
            assert isinstance(json.loads(line), dict), line


def _readme_blocks() -> list[str]:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(
        re.escape(MARKER) + r"\n```bash\n(.*?)^```", readme, flags=re.MULTILINE | re.DOTALL
    )
    assert len(blocks) == readme.count(MARKER), "a marker not followed by a ```bash block"
    return blocks


def test_readme_shell_blocks_run_in_order(first_run: FirstRun) -> None:
    """The README's marked shell blocks succeed one after another on the fresh server."""
    blocks = _readme_blocks()
    assert len(blocks) >= 2
    outputs = []
    for block in blocks:
        assert "localhost:50051" in block
        script = block.replace("localhost:50051", f"localhost:{first_run.port}")
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=REPO,
            env=first_run.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, (block, done.stdout, done.stderr)
        outputs.append(done.stdout)
    text = "\n".join(outputs)
    assert "Allergic to peanuts" in text
    # The grpcurl session's first turn lands at seq 1: no other example wrote to it.
    assert '"seq": "1"' in text
    assert '"status": "SERVING"' in text


def test_readme_examples_use_distinct_conversations() -> None:
    """Examples run one after another never append to each other's conversation."""
    readme = (REPO / "README.md").read_text()
    sections = re.split(r"^## ", readme, flags=re.MULTILINE)
    owners: dict[str, str] = {}
    for section in sections:
        title = section.splitlines()[0] if section else ""
        ids = set(
            re.findall(r'(?:conversation_id"?[=:] ?|conversations\.\w+\()"([\w.:-]+)"', section)
        )
        for conversation_id in ids:
            assert owners.setdefault(conversation_id, title) == title, conversation_id
    assert len(owners) >= 3, owners


def test_operator_commands_while_the_embedded_server_runs(
    first_run: FirstRun, tmp_path: Path
) -> None:
    """export, import and migrate --list attach to the running embedded database, leave it up."""
    env = {**first_run.env, "MEMORYD_DATA_DIR": str(first_run.data_dir)}
    export = tmp_path / "default.jsonl"

    def memoryd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["./dev", "memoryd", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    listed = memoryd("migrate", "--list")
    assert listed.returncode == 0, listed.stderr
    assert "pending" not in listed.stdout
    done = memoryd("export", "--tenant", "default", "--output", str(export))
    assert done.returncode == 0, done.stderr
    assert len(export.read_text().splitlines()) > 2
    done = memoryd("import", "--tenant", "copy-ø", "--create-tenant", str(export))
    assert done.returncode == 2
    assert "cannot use tenant copy-ø" in done.stderr
    done = memoryd("import", "--tenant", "copy", "--create-tenant", str(export))
    assert done.returncode == 0, done.stderr
    # The server still answers: the commands left its database running.
    health = subprocess.run(
        [
            "./dev",
            "grpcurl",
            "-plaintext",
            f"localhost:{first_run.port}",
            "grpc.health.v1.Health/Check",
        ],
        cwd=REPO,
        env=first_run.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert '"status": "SERVING"' in health.stdout, health.stderr


def test_welcome_with_auth_on_shows_the_key_header() -> None:
    """With auth on, the suggested calls carry MEMORYD_API_KEY and tenants use the admin key."""
    settings = Settings(addr="0.0.0.0:50051", database_url="postgresql://u:secret@db/m")
    text = welcome_text(settings, 0, None)
    assert "memoryd is serving on localhost:0" in text
    assert "  data:    postgresql://u:***@db/m (DATABASE_URL)" in text
    assert "secret" not in text
    assert "auth:    on" in text
    assert '-H "authorization: Bearer $MEMORYD_API_KEY"' in text
    assert "./dev memoryd tenants list" in text
