"""docker-compose.yml, the Dockerfile and .dockerignore agree with the server they deploy.

No Docker engine is needed: the files are parsed, their settings go through
``Settings.from_env``, and the health-check one-liners run against a real
grpc.health.v1 server.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from concurrent import futures
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from memoryd_server.config import ENVIRONMENT_VARIABLES, Settings

REPO = Path(__file__).resolve().parents[1]

# --- docker-compose.yml ---------------------------------------------------------------

# $$, ${NAME}, ${NAME-default}, ${NAME:-default}, $NAME: the interpolation forms used here.
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>\w+)(?:(?P<op>:?-)(?P<default>[^}]*))?\}|(?P<bare>\w+))"
)


def interpolate(value: str) -> str:
    """``value`` as Compose substitutes it when the shell sets no variables (defaults apply)."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        return match["default"] or ""

    remaining = _INTERPOLATION.sub(substitute, value)
    assert "${" not in remaining, f"unsupported interpolation in {value!r}"
    return remaining


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml, parsed."""
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose file's services by name."""
    result = compose["services"]
    assert isinstance(result, dict)
    return result


def environment(service: Mapping[str, Any]) -> dict[str, str | None]:
    """A service's environment (map or list form), interpolated; None means passed through."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = [tuple(item.split("=", 1)) if "=" in item else (item, None) for item in raw]
    else:
        pairs = list(raw.items())
    env: dict[str, str | None] = {}
    for name, value in pairs:
        text = ("true" if value else "false") if isinstance(value, bool) else value
        env[name] = None if text is None else interpolate(str(text))
    return env


@pytest.fixture(scope="module")
def memoryd_env(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The variables docker-compose.yml gives the memoryd container, with their values."""
    return {k: v for k, v in environment(services["memoryd"]).items() if v is not None}


def depends_on(service: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A service's dependencies (list or map form) with their options."""
    raw = service.get("depends_on") or {}
    if isinstance(raw, list):
        return {name: {"condition": "service_started"} for name in raw}
    return {name: options or {} for name, options in raw.items()}


def seconds(duration: str) -> float:
    """A Compose duration such as ``1m30s`` in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", duration)
    assert parts, f"not a duration: {duration!r}"
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def addr_port(addr: str) -> int:
    """The port of a HOST:PORT address."""
    return int(addr.rpartition(":")[2])


def test_services_exist(services: dict[str, dict[str, Any]]) -> None:
    """The stack has the database, the server, the trace collector and Prometheus."""
    assert {"postgres", "memoryd", "jaeger", "prometheus"} <= services.keys()


def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    """Compose can tell each service's health (``docker compose ps``)."""
    for name, service in services.items():
        test = (service.get("healthcheck") or {}).get("test")
        assert test, f"{name} has no healthcheck"
        assert test[0] in {"CMD", "CMD-SHELL"}, name


def test_postgres_is_pgvector_18(services: dict[str, dict[str, Any]]) -> None:
    """The database image is pgvector's, on PostgreSQL 18 like the embedded server."""
    image = services["postgres"]["image"]
    assert image.startswith("pgvector/pgvector:")
    assert "pg18" in image.partition(":")[2]


def test_postgres_data_on_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """PostgreSQL's data lives on a declared named volume mounted where 18+ images expect it."""
    mounts = [v.split(":") for v in services["postgres"]["volumes"] if isinstance(v, str)]
    assert mounts, "postgres has no volume"
    named = {source: target for source, target, *_ in mounts}
    data_volumes = [source for source, target in named.items() if target == "/var/lib/postgresql"]
    assert data_volumes, "mount the volume at /var/lib/postgresql (PGDATA is below it in 18+)"
    assert set(data_volumes) <= (compose.get("volumes") or {}).keys()


def test_postgres_credentials(services: dict[str, dict[str, Any]]) -> None:
    """The database service is created with a user, a password and a database."""
    env = environment(services["postgres"])
    for name in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert env.get(name), name


def test_memoryd_variables_are_settings(services: dict[str, dict[str, Any]]) -> None:
    """Every MEMORYD_* variable the file sets is a real setting, not a typo the server ignores."""
    names = {name for name in environment(services["memoryd"]) if name.startswith("MEMORYD_")}
    assert names, "memoryd sets no MEMORYD_* variable"
    assert names <= ENVIRONMENT_VARIABLES, names - ENVIRONMENT_VARIABLES


def test_memoryd_environment_parses(memoryd_env: dict[str, str]) -> None:
    """The memoryd service's environment is valid configuration for the production setup."""
    settings = Settings.from_env(memoryd_env)
    assert not settings.embedded
    assert settings.log_format == "json"
    assert settings.otlp_endpoint
    assert settings.addr.startswith("0.0.0.0:")


def test_database_url_points_at_postgres(
    services: dict[str, dict[str, Any]], memoryd_env: dict[str, str]
) -> None:
    """DATABASE_URL names the postgres service with the credentials it was created with."""
    url = urlsplit(memoryd_env["DATABASE_URL"])
    pg = environment(services["postgres"])
    assert url.scheme in {"postgresql", "postgres"}
    assert url.hostname == "postgres"
    assert url.port in {None, 5432}
    assert url.username == pg["POSTGRES_USER"]
    assert url.password == pg["POSTGRES_PASSWORD"]
    assert url.path == f"/{pg['POSTGRES_DB']}"


def test_memoryd_waits_for_healthy_postgres(services: dict[str, dict[str, Any]]) -> None:
    """memoryd starts only once PostgreSQL accepts connections."""
    assert depends_on(services["memoryd"])["postgres"].get("condition") == "service_healthy"


def test_dependencies_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    """Every service another one depends on declares a health check."""
    needed = {dep for service in services.values() for dep in depends_on(service)}
    assert needed, "no service depends on another"
    for name in needed:
        check = services[name].get("healthcheck") or {}
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name} disables its healthcheck"


def test_postgres_healthcheck_is_pg_isready(services: dict[str, dict[str, Any]]) -> None:
    """PostgreSQL's health check asks pg_isready."""
    assert "pg_isready" in json.dumps(services["postgres"]["healthcheck"]["test"])


def test_otlp_endpoint_is_jaeger(
    services: dict[str, dict[str, Any]], memoryd_env: dict[str, str]
) -> None:
    """Traces go to the jaeger service's OTLP/gRPC port, which is enabled there."""
    endpoint = urlsplit(memoryd_env["MEMORYD_OTLP_ENDPOINT"])
    assert endpoint.hostname == "jaeger"
    assert endpoint.port == 4317
    # Jaeger v2 (v1's all-in-one image is end-of-life) receives OTLP on 4317 by default.
    image, _, tag = services["jaeger"]["image"].partition(":")
    assert image == "jaegertracing/jaeger"
    assert tag.split(".")[0] == "2", tag


@pytest.fixture(scope="module")
def prometheus_config(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The Prometheus configuration file the prometheus service mounts, parsed."""
    mounts = [str(v).split(":") for v in services["prometheus"]["volumes"]]
    (source,) = [s for s, target, *_ in mounts if target == "/etc/prometheus/prometheus.yml"]
    data = yaml.safe_load((REPO / source).read_text())
    assert isinstance(data, dict)
    return data


def test_prometheus_scrapes_memoryd_metrics(
    prometheus_config: dict[str, Any], memoryd_env: dict[str, str]
) -> None:
    """Prometheus scrapes /metrics on the memoryd service, at the port memoryd serves it on."""
    settings = Settings.from_env(memoryd_env)
    assert settings.metrics_addr is not None
    assert settings.metrics_addr.startswith("0.0.0.0:")  # reachable from the other container
    (job,) = [j for j in prometheus_config["scrape_configs"] if j["job_name"] == "memoryd"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for c in job["static_configs"] for t in c["targets"]]
    assert targets == [f"memoryd:{addr_port(settings.metrics_addr)}"]


def test_prometheus_data_on_named_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """Prometheus keeps its time series on a declared named volume."""
    mounts = [str(v).split(":") for v in services["prometheus"]["volumes"]]
    named = [s for s, target, *_ in mounts if target == "/prometheus"]
    assert named
    assert set(named) <= (compose.get("volumes") or {}).keys()


def _container_ports(service: Mapping[str, Any]) -> dict[int, int]:
    """Published port -> container port, from the short or the long syntax."""
    result = {}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            result[int(entry["published"])] = int(entry["target"])
        else:
            *_, published, target = str(entry).split("/")[0].split(":")
            result[int(published)] = int(target)
    return result


def test_ports_published(services: dict[str, dict[str, Any]], memoryd_env: dict[str, str]) -> None:
    """The gRPC port (the one memoryd listens on), Jaeger's and Prometheus's UIs are published."""
    assert _container_ports(services["memoryd"]).get(50051) == addr_port(
        memoryd_env["MEMORYD_ADDR"]
    )
    assert _container_ports(services["jaeger"]).get(16686) == 16686
    assert _container_ports(services["prometheus"]).get(9090) == 9090


def test_stop_grace_period_exceeds_shutdown_grace(
    services: dict[str, dict[str, Any]], memoryd_env: dict[str, str]
) -> None:
    """Docker waits for memoryd's drain (plus closing the pool) before it sends SIGKILL."""
    grace = Settings.from_env(memoryd_env).shutdown_grace_seconds
    assert seconds(services["memoryd"]["stop_grace_period"]) >= grace + 5


def test_restart_policies(services: dict[str, dict[str, Any]]) -> None:
    """Every service comes back after a crash or a reboot of the host."""
    for name, service in services.items():
        assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, name


def test_memoryd_built_from_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    """The memoryd service is built from this repository's Dockerfile."""
    build = services["memoryd"]["build"]
    context = REPO / (build if isinstance(build, str) else build.get("context", "."))
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert context.resolve() == REPO
    assert (context / dockerfile).is_file()


# --- Dockerfile -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    path = REPO / "Dockerfile"
    assert path.is_file()
    instructions = []
    current = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments and blank lines, also inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        keyword, _, args = (current + stripped).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return instructions


def _args(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in instructions if kw == keyword]


def _dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for args in _args(instructions, "ENV"):
        tokens = shlex.split(args)
        if "=" not in tokens[0]:  # legacy form: ENV NAME value with spaces
            env[tokens[0]] = " ".join(tokens[1:])
            continue
        for token in tokens:
            name, _, value = token.partition("=")
            env[name] = value
    return env


def test_dockerfile_bases(dockerfile: list[tuple[str, str]]) -> None:
    """Every stage builds on python:3.11-slim, and there is a separate build stage."""
    bases = [shlex.split(args)[0] for args in _args(dockerfile, "FROM")]
    assert len(bases) >= 2
    assert set(bases) == {"python:3.11-slim"}


def test_dockerfile_env_are_settings(dockerfile: list[tuple[str, str]]) -> None:
    """The image's MEMORYD_* variables are real settings and valid together."""
    env = {k: v for k, v in _dockerfile_env(dockerfile).items() if k.startswith("MEMORYD_")}
    assert env.keys() <= ENVIRONMENT_VARIABLES, env.keys() - ENVIRONMENT_VARIABLES
    assert env.get("MEMORYD_ADDR") == "0.0.0.0:50051"
    Settings.from_env(env)


def test_dockerfile_runs_memoryd_serve(dockerfile: list[tuple[str, str]]) -> None:
    """The image runs ``memoryd serve`` and exposes the port it listens on."""
    assert json.loads(_args(dockerfile, "ENTRYPOINT")[-1]) == ["memoryd"]
    assert json.loads(_args(dockerfile, "CMD")[-1]) == ["serve"]
    port = addr_port(_dockerfile_env(dockerfile)["MEMORYD_ADDR"])
    assert str(port) in " ".join(_args(dockerfile, "EXPOSE")).split()


def test_dockerfile_runs_as_non_root(dockerfile: list[tuple[str, str]]) -> None:
    """The final stage switches to an unprivileged user."""
    last_stage = dockerfile[max(i for i, (kw, _) in enumerate(dockerfile) if kw == "FROM") :]
    users = _args(last_stage, "USER")
    assert users, "no USER in the final stage"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_installs_server_with_otlp(dockerfile: list[tuple[str, str]]) -> None:
    """Wheels are built once, and the image installs memoryd-server with the OTLP exporter."""
    runs = _args(dockerfile, "RUN")
    assert any("pip wheel" in run for run in runs)
    assert any("install" in run and "memoryd-server[otlp]" in run for run in runs)


def test_dockerfile_copies_what_the_wheels_need(dockerfile: list[tuple[str, str]]) -> None:
    """The build stage copies every path the two wheel builds read, to the same place."""
    sources = []
    for args in _args(dockerfile, "COPY"):
        tokens = shlex.split(args)
        if any(t.startswith("--from") for t in tokens):
            continue  # from another stage, not the build context
        *srcs, dest = [t for t in tokens if not t.startswith("--")]
        for path in (src.removeprefix("./").rstrip("/") for src in srcs):
            assert dest in {".", "./"} or dest.rstrip("/") == path, (path, dest)
            sources.append(path)

    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    client = tomllib.loads((REPO / "clients/python/pyproject.toml").read_text())
    root_wheel = root["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = ["pyproject.toml", root["project"]["readme"], *root_wheel["packages"]]
    needed += list(root_wheel.get("force-include", {}))
    client_wheel = client["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed += [
        f"clients/python/{p}"
        for p in ["pyproject.toml", client["project"]["readme"], *client_wheel["packages"]]
    ]
    for path in needed:
        assert any(path == s or path.startswith(f"{s}/") for s in sources), path


def test_dockerfile_healthcheck_uses_grpc_health(dockerfile: list[tuple[str, str]]) -> None:
    """The image's health check is a grpc.health.v1 Check that requires SERVING."""
    code = _dockerfile_health_code(dockerfile)
    assert "grpc_health" in code
    assert ".Check(" in code
    assert "SERVING" in code


def test_compose_healthcheck_uses_grpc_health(services: dict[str, dict[str, Any]]) -> None:
    """The memoryd service's health check is a grpc.health.v1 Check that requires SERVING."""
    code = _compose_health_code(services)
    assert "grpc_health" in code
    assert ".Check(" in code
    assert "SERVING" in code


def _python_code(command: list[str]) -> str:
    """The code of a ``python -c CODE`` command."""
    assert command[0] in {"python", "python3"}
    assert command[1] == "-c"
    assert len(command) == 3
    return command[2]


def _dockerfile_health_code(dockerfile: list[tuple[str, str]]) -> str:
    (check,) = _args(dockerfile, "HEALTHCHECK")
    _, cmd, command = check.partition("CMD ")
    assert cmd, "HEALTHCHECK without CMD"
    return _python_code(json.loads(command))


def _compose_health_code(services: dict[str, dict[str, Any]]) -> str:
    test = services["memoryd"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    return _python_code([interpolate(part) for part in test[1:]])


def _run_health_check(code: str, port: int) -> int:
    env = {**os.environ, "MEMORYD_ADDR": f"0.0.0.0:{port}"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=60, check=False
    )
    return result.returncode


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("source", ["Dockerfile", "docker-compose.yml"])
def test_health_check_exits_zero_only_when_serving(
    source: str, dockerfile: list[tuple[str, str]], services: dict[str, dict[str, Any]]
) -> None:
    """The health-check command succeeds for SERVING, fails for NOT_SERVING or no server."""
    code = (
        _dockerfile_health_code(dockerfile)
        if source == "Dockerfile"
        else _compose_health_code(services)
    )
    servicer = health.HealthServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert _run_health_check(code, port) == 0
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert _run_health_check(code, port) != 0
    finally:
        server.stop(None)
    assert _run_health_check(code, _free_port()) != 0


# --- .dockerignore --------------------------------------------------------------------


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regular expression."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out.append(pattern[i : end + 1])
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


@pytest.fixture(scope="module")
def dockerignore() -> list[str]:
    """The patterns of .dockerignore, in order."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` (or a folder above it) out of the build context."""
    parts = path.split("/")
    result = False
    for pattern in patterns:
        regex = _ignore_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            result = not pattern.startswith("!")
    return result


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "server/memoryd_server/__pycache__/app.cpython-311.pyc",
        ".pytest_cache/README.md",
        ".mypy_cache/3.11/cache.db",
        ".ruff_cache/content",
        "memoryd-data/PG_VERSION",
        "clients/node/node_modules/grpc/index.js",
        "tests/test_smoke.py",
        "bench/results.json",
        "dist/memoryd_server-0.1.0-py3-none-any.whl",
    ],
)
def test_dockerignore_excludes(path: str, dockerignore: list[str]) -> None:
    """Environments, caches, local data, tests and benchmarks stay out of the build context."""
    assert ignored(path, dockerignore)


def test_dockerignore_keeps_build_inputs(dockerignore: list[str]) -> None:
    """No source file the wheel builds read is left out of the build context."""
    roots = ["pyproject.toml", "README.md", "server", "migrations", "clients/python"]
    files = []
    for root in roots:
        path = REPO / root
        found = [path] if path.is_file() else list(path.rglob("*"))
        files += [
            f.relative_to(REPO).as_posix()
            for f in found
            if f.is_file() and "__pycache__" not in f.parts
        ]
    assert len(files) > len(roots)
    assert [f for f in files if ignored(f, dockerignore)] == []
