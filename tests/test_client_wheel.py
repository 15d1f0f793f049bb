"""The client wheel builds, installs into a fresh virtual environment and runs the README example.

It guards what the in-repo tests cannot see (they import ``memoryd`` from the
editable install): files missing from the wheel, undeclared dependencies, and
a README example that no longer works against the server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryd_server.config import Settings
from tests.conftest import REPO, ServerThread

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CLIENT = REPO / "clients" / "python"
# Variables that would make a subprocess see the repo or the project venv.
_REPO_POINTERS = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__"}


def _env() -> dict[str, str]:
    """The environment without anything that would point Python at the repo or its venv."""
    env = {k: v for k, v in os.environ.items() if k not in _REPO_POINTERS}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(args: list[str | Path], *, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``args``; fail the test with its output if it exits non-zero."""
    try:
        done = subprocess.run(
            [str(a) for a in args],
            cwd=cwd,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{args} timed out after {timeout}s\nstdout:\n{exc.stdout}\nstderr:\n{exc.stderr}"
        )
    assert done.returncode == 0, (
        f"{args} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client wheel, built the way a release would be."""
    out = tmp_path_factory.mktemp("dist")
    _run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", out, CLIENT],
        cwd=REPO,
        timeout=300,
    )
    wheels = sorted(out.glob("memoryd_client-*.whl"))
    assert len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return wheels[0]


@pytest.fixture(scope="module")
def fresh_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a new virtual environment with only the wheel (and its dependencies)."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", venv], cwd=venv.parent, timeout=120)
    python = venv / "bin" / "python"
    _run([python, "-m", "pip", "install", "-q", wheel], cwd=venv.parent, timeout=480)
    return python


def test_wheel_holds_the_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for required in ("memoryd/__init__.py", "memoryd/py.typed", "memoryd/_client/__init__.py"):
        assert required in names, sorted(names)
    for stem in ("conversation", "memory"):
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"):
            assert f"memoryd/v1/{stem}{suffix}" in names, sorted(names)
    # Every module of the typed client is shipped, not only the ones named above.
    in_repo = {
        p.relative_to(CLIENT).as_posix()
        for folder in ("_client", "integrations")
        for p in (CLIENT / "memoryd" / folder).rglob("*.py")
    }
    assert in_repo, "no client modules found in the repo"
    assert in_repo <= names, sorted(in_repo - names)
    assert not any(n.startswith("memoryd_server/") for n in names), sorted(names)


def test_fresh_install_imports_from_its_own_venv(fresh_python: Path, tmp_path: Path) -> None:
    code = (
        "import memoryd, memoryd.v1.conversation_pb2, memoryd.v1.memory_pb2_grpc\n"
        "memoryd.Client\n"
        "memoryd.v1.conversation_pb2.AppendMessagesRequest\n"
        "print(memoryd.__file__)\n"
        "print(memoryd.v1.conversation_pb2.__file__)\n"
    )
    done = _run([fresh_python, "-c", code], cwd=tmp_path, timeout=120)
    venv = fresh_python.parent.parent.resolve()
    files = [Path(line).resolve() for line in done.stdout.split()]
    assert len(files) == 2, done.stdout
    for file in files:
        assert file.is_relative_to(venv), (file, venv)
        assert not file.is_relative_to(REPO), (file, REPO)


def _readme_example() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.partition("\n## Python: the typed client\n")[2]
    assert section, "README has no '## Python: the typed client' section"
    section = re.split(r"^## ", section, maxsplit=1, flags=re.MULTILINE)[0]
    block = re.search(r"^```python\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    assert block, "no ```python block in the README's typed-client section"
    return block.group(1)


@pytest.fixture(scope="module")
def dev_server(test_settings: Settings, memoryd_server: ServerThread) -> Iterator[ServerThread]:
    """A server as ``./dev serve`` runs it: the local embedder, auth off."""
    del memoryd_server  # migrated the database
    server = ServerThread(test_settings.replace(embedder="local"))
    yield server
    server.stop()


def test_readme_example_runs_from_the_wheel(
    fresh_python: Path, dev_server: ServerThread, tmp_path: Path
) -> None:
    example = _readme_example()
    assert example.count("localhost:50051") == 1, example
    script = tmp_path / "example.py"
    script.write_text(example.replace("localhost:50051", dev_server.addr))
    done = _run([fresh_python, script], cwd=tmp_path, timeout=120)
    lines = done.stdout.splitlines()
    # The context window, then the search hits (score, content).
    assert any("Book me a window seat to Lisbon" in line for line in lines), done.stdout
    hits = [line for line in lines if "Prefers a window seat on long flights" in line]
    assert hits, done.stdout
    assert all(re.match(r"^-?\d+(\.\d+)? ", hit) for hit in hits), hits
