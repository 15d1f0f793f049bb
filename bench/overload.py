"""Goodput and latency at 4x the sustained rate, with admission control off and on.

Usage: python -m bench.overload [--seconds 30] [--overload 4] [--deadline 2]
       [--modes off,on,cost] [--methods ...] [--on MEMORYD_X=1,...] [--keep DIR]

Starts ``memoryd serve`` processes on one embedded PostgreSQL. For
AppendMessages and GetContextWindow in turn, on a server without admission
control (``off``: MEMORYD_MAX_CONCURRENT_CALLS=0 and gRPC's default backlog
limits, MEMORYD_MAX_PENDING_CALLS=0), it measures:

- the unloaded p99: one caller, one call at a time;
- the sustained rate: the best of closed loops of 8, 16 and 64 callers back
  to back, counting OK answers;

then, on a fresh server per mode (``off``; ``on``: the defaults, or the
settings given with ``--on``), an open loop at ``--overload`` times that rate
for ``--seconds``: calls sent on schedule whatever the answers (as
independent agents do), each with a ``--deadline`` s deadline. Both modes get
the same offered load.

The load comes from ``bench/loadgen.mjs`` (Node's HTTP/2, requests framed
here once): it runs on the same cores as the server, so its CPU is printed
beside the server's, with how far behind its schedule it fell.

It prints goodput (OK calls per second over the sustained rate), the p50/p99
of the OK calls over the unloaded p99 as the load generator saw them and the
p99 the server's access log recorded (it leaves out the time a call waits in
gRPC), the p99 of the refusals, and the status codes seen (CANCELLED from
the ``on`` server is gRPC core's backstop, MEMORYD_MAX_PENDING_CALLS).
``cost`` then measures the server CPU time (from /proc) of a refused call
against a served one.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc as pb_grpc

CONVERSATIONS = 64  # appends spread over them, as many agents would
WINDOW_MESSAGES = 200
LOADGEN = Path(__file__).with_name("loadgen.mjs")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server(NamedTuple):
    addr: str
    pid: int


@contextmanager
def memoryd(data_dir: Path, log: Path, **env: str) -> Iterator[Server]:
    """A ``memoryd serve`` process on the embedded database in ``data_dir``."""
    addr = f"127.0.0.1:{_free_port()}"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MEMORYD_")}
    environ.update(MEMORYD_DATA_DIR=str(data_dir), MEMORYD_ADDR=addr, MEMORYD_LOG_FORMAT="json")
    environ.update(env)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "memoryd_server", "serve"], env=environ, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 180
        with grpc.insecure_channel(addr) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"memoryd did not start; see {log}")
                try:
                    if health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        break
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
        yield Server(addr, process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def _request(method: str, i: int) -> Any:
    if method == "AppendMessages":
        return pb.AppendMessagesRequest(
            conversation_id=f"append-{i % CONVERSATIONS}",
            create_if_missing=True,
            messages=[pb.Message(role=pb.MESSAGE_ROLE_USER, content=f"turn {i} " * 20)],
        )
    return pb.GetContextWindowRequest(conversation_id="window", max_messages=20)


def _frame(message: Any) -> str:
    """``message`` as one gRPC length-prefixed frame, base64 for the load generator."""
    body = message.SerializeToString()
    return base64.b64encode(b"\0" + len(body).to_bytes(4, "big") + body).decode()


def _load(addr: str, method: str, **spec: Any) -> dict[str, Any]:
    """Run bench/loadgen.mjs (Node's HTTP/2, framed bodies) with ``spec``; its results."""
    calls = spec.get("calls") or int(spec.get("rate", 0) * spec.get("seconds", 0)) or 1
    bodies = [_frame(_request(method, i)) for i in range(min(calls, CONVERSATIONS))]
    spec = {
        "addr": addr,
        "path": f"/memoryd.v1.ConversationService/{method}",
        "bodies": bodies,
        "metadata": {},
        "deadline_ms": 30_000,
        # Many: the kernel spreads connections over the workers by a hash, and
        # with a few, one worker could get them all.
        "connections": 16,
        **spec,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(spec, file)
        file.flush()
        out = subprocess.run(
            ["node", str(LOADGEN), file.name], check=True, capture_output=True, text=True
        )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _closed(
    addr: str, method: str, callers: int, seconds: float, *, calls: int = 0
) -> dict[str, Any]:
    """``callers`` calling back to back for ``seconds`` (or until ``calls`` calls)."""
    return _load(addr, method, mode="closed", callers=callers, seconds=seconds, calls=calls)


def _p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def _prepare(addr: str) -> None:
    with grpc.insecure_channel(addr) as channel:
        stub = pb_grpc.ConversationServiceStub(channel)
        stub.AppendMessages(
            pb.AppendMessagesRequest(
                conversation_id="window",
                create_if_missing=True,
                messages=[
                    pb.Message(role=pb.MESSAGE_ROLE_USER, content=f"message {i} " * 8)
                    for i in range(WINDOW_MESSAGES)
                ],
            ),
            timeout=30,
        )


def _served_ms(log: Path, offset: int, method: str) -> list[float]:
    """The server-side durations of the OK calls of ``method`` logged past ``offset``."""
    with log.open("rb") as stream:
        stream.seek(offset)
        lines = stream.read().decode().splitlines()
    events = (json.loads(line) for line in lines if line.startswith("{"))
    return [
        e["duration_ms"]
        for e in events
        if e.get("event") == "rpc" and e["rpc"].endswith(f"/{method}") and e["code"] == "OK"
    ]


def _settle(addr: str) -> None:
    """Wait until a call is answered quickly: an overloaded server works off calls
    whose clients gave up, and the next measure must not start in that backlog."""
    with grpc.insecure_channel(addr) as channel:
        stub = pb_grpc.ConversationServiceStub(channel)
        until = time.monotonic() + 120
        while time.monotonic() < until:
            start = time.monotonic()
            with contextlib.suppress(grpc.RpcError):
                stub.GetContextWindow(_request("GetContextWindow", 0), timeout=5)
                if time.monotonic() - start < 0.05:
                    return
            time.sleep(0.5)


def baseline(addr: str, method: str) -> tuple[float, float]:
    """The unloaded p99 (seconds) and the sustained rate (OK calls per second) of ``method``.

    The sustained rate is the best of closed loops of 8, 16 and 64 callers:
    without admission control more callers can get less done (64 callers on
    two workers and PostgreSQL oversubscribe two cores), and 4x a collapsed
    rate would not be 4x the server's capacity.
    """
    _settle(addr)
    unloaded = _closed(addr, method, 1, 5.0)
    rates = []
    for callers in (8, 16, 64):
        _closed(addr, method, callers, 2.0)  # warm-up, not counted
        closed = _closed(addr, method, callers, 5.0)
        if set(closed["codes"]) != {"OK"}:
            raise SystemExit(f"{method} failed without load: {closed['codes']}")
        rates.append(len(closed["ok"]) / 5.0)
    if set(unloaded["codes"]) != {"OK"}:
        raise SystemExit(f"{method} failed without load: {unloaded['codes']}")
    return _p(unloaded["ok"], 0.99), max(rates)


def measure(
    server: Server, log: Path, method: str, base: tuple[float, float], args: argparse.Namespace
) -> dict[str, Any]:
    """Open loop at ``--overload`` times the sustained rate of ``base``."""
    unloaded_p99, sustained = base
    rate = sustained * args.overload
    _settle(server.addr)
    offset = log.stat().st_size
    cpu_before = _cpu_seconds(server.pid)
    run = _load(
        server.addr,
        method,
        mode="open",
        rate=rate,
        seconds=args.seconds,
        deadline_ms=int(args.deadline * 1000),
    )
    server_cpu = _cpu_seconds(server.pid) - cpu_before
    ok, shed, codes = run["ok"], run["shed"], run["codes"]
    served = _served_ms(log, offset, method)
    return {
        "sustained": sustained,
        "goodput": len(ok) / args.seconds / sustained,
        "unloaded_p99_ms": unloaded_p99 * 1000,
        "p50_ratio": _p(ok, 0.5) / unloaded_p99,
        "p99_ratio": _p(ok, 0.99) / unloaded_p99,
        "shed_p99_ms": _p(shed, 0.99) * 1000,
        "served_p99_ratio": _p(served, 0.99) / 1000 / unloaded_p99,
        "codes": dict(codes),
        # The load generator's CPU beside the server's: on a shared machine
        # it is what the server could not have.
        "loadgen_cpu": run["cpu_seconds"] / args.seconds,
        "server_cpu": server_cpu / args.seconds,
        "late_ms": run["late_ms"],
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of process ``pid`` and its children (the workers)."""

    def stat(path: Path) -> list[str]:
        return path.read_text().rpartition(")")[2].split()

    total = 0.0
    for path in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat(path)
            if path.parent.name == str(pid) or fields[1] == str(pid):
                total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _cpu_per_call(server: Server, method: str, calls: int) -> tuple[float, dict[str, int]]:
    """Server CPU seconds per call over ``calls`` calls from 8 callers, and their codes.

    Several callers, as under overload: with one, each call also pays for
    waking the process up, which busy servers share among many calls.
    """
    before = _cpu_seconds(server.pid)
    run = _load(server.addr, method, mode="closed", callers=8, seconds=0.0, calls=calls)
    return (_cpu_seconds(server.pid) - before) / calls, run["codes"]


def refusal_cost(data_dir: Path, log: Path) -> None:
    """Server CPU of a refused call against a served one.

    One slot per class and no queue; an append held on a row lock keeps the
    write slot, so every other append is refused, while reads are served.
    """
    settings = {
        "MEMORYD_MAX_CONCURRENT_CALLS": "1",
        "MEMORYD_MAX_QUEUED_CALLS": "0",
        # One process serving, so one event loop holds every slot.
        "MEMORYD_WORKERS": "1",
        **({"MEMORYD_METRICS_ADDR": "off"} if os.environ.get("ABL_METRICS") else {}),
    }
    with memoryd(data_dir, log, **settings) as server:
        _settle(server.addr)
        pid_file = (data_dir / "postmaster.pid").read_text().splitlines()
        uri = (
            f"postgresql://postgres@/postgres?host={pid_file[4].strip()}&port={pid_file[3].strip()}"
        )
        with grpc.insecure_channel(server.addr) as channel, psycopg.connect(uri) as db:
            stub = pb_grpc.ConversationServiceStub(channel)
            stub.AppendMessages(_request("AppendMessages", 0), timeout=30)
            served, refused = [], []
            # Rounds interleaved, medians kept: the machine's noise moves either.
            for _ in range(3):
                served.append(_cpu_per_call(server, "GetContextWindow", 4000)[0])
                db.execute("SELECT 1 FROM conversations WHERE id = 'append-0' FOR UPDATE")
                held = stub.AppendMessages.future(_request("AppendMessages", 0), timeout=120)
                time.sleep(0.5)
                cost, codes = _cpu_per_call(server, "AppendMessages", 4000)
                refused.append(cost)
                db.rollback()
                held.result()
                if set(codes) != {"RESOURCE_EXHAUSTED"}:
                    raise SystemExit(f"expected refusals only: {codes}")
    served_us, refused_us = sorted(served)[1] * 1e6, sorted(refused)[1] * 1e6
    print(
        f"server CPU per call (median of 3 rounds, 8 callers): served GetContextWindow"
        f" {served_us:.0f} us, refused AppendMessages {refused_us:.0f} us"
        f" ({refused_us / served_us:.0%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--overload", type=float, default=4.0)
    parser.add_argument("--deadline", type=float, default=2.0)
    parser.add_argument("--modes", default="off,on,cost")
    parser.add_argument("--methods", default="AppendMessages,GetContextWindow")
    parser.add_argument("--keep", default="", help="a directory for the log and data, kept")
    parser.add_argument(
        "--on", default="", help="settings for the 'on' server: MEMORYD_X=1,MEMORYD_Y=2"
    )
    args = parser.parse_args()
    # "off": the server without admission control, and with gRPC's own backlog limits.
    modes = {
        "off": {"MEMORYD_MAX_CONCURRENT_CALLS": "0", "MEMORYD_MAX_PENDING_CALLS": "0"},
        "on": dict(kv.split("=", 1) for kv in args.on.split(",") if kv),
    }
    bases: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="memoryd-bench-") as tmp:
        # --keep: the servers' log and database stay, to read after the run.
        where = Path(args.keep) if args.keep else Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        data, log = where / "data", where / "memoryd.log"
        for method in args.methods.split(","):
            for mode in [m for m in args.modes.split(",") if m != "cost"]:
                # A server per run: one run's backlog (or broken pool) is not the next's.
                offset = log.stat().st_size if log.exists() else 0
                if method not in bases:
                    # On a server without admission control, once, so every
                    # mode gets the same offered load.
                    with memoryd(data, log, **modes["off"]) as server:
                        _prepare(server.addr)
                        bases[method] = baseline(server.addr, method)
                with memoryd(data, log, **modes[mode]) as server:
                    _prepare(server.addr)
                    m = measure(server, log, method, bases[method], args)
                print(
                    f"{mode:3} {method:16} sustained {m['sustained']:7.1f}/s"
                    f"  goodput at {args.overload:g}x {m['goodput']:6.1%}"
                    f"  OK p50 {m['p50_ratio']:5.2f}x p99 {m['p99_ratio']:5.2f}x"
                    f" unloaded p99 ({m['unloaded_p99_ms']:.1f} ms)"
                    f" (server side p99 {m['served_p99_ratio']:5.2f}x)"
                    f"  shed p99 {m['shed_p99_ms']:.1f} ms  {m['codes']};"
                    f" CPU: server {m['server_cpu']:.2f} cores, load generator"
                    f" {m['loadgen_cpu']:.2f} (worst lag {m['late_ms']:.0f} ms);"
                    f" {_health_events(log, offset)}",
                    flush=True,
                )
        if "cost" in args.modes.split(","):
            refusal_cost(data, log)


def _health_events(log: Path, offset: int) -> str:
    with log.open("rb") as stream:
        stream.seek(offset)
        lines = stream.read().decode().splitlines()
    down = sum('"serving": false' in line for line in lines if '"event": "health"' in line)
    outages = sum('"event": "database_down"' in line for line in lines)
    return f"health NOT_SERVING {down} times, database_down {outages} times"


if __name__ == "__main__":
    main()
