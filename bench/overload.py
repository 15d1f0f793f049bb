"""Goodput and latency at 4x the sustained rate, with admission control off and on.

Usage: python -m bench.overload [--seconds 30] [--overload 4] [--deadline 2]

Starts ``memoryd serve`` processes on one embedded PostgreSQL. On the first
(``off``: MEMORYD_MAX_CONCURRENT_CALLS=0, the server before admission
control) it measures, for AppendMessages and GetContextWindow in turn:

- the unloaded p99: one caller, one call at a time;
- the sustained rate: closed loop, ``--callers`` callers back to back (after
  a 3 s warm-up), counting OK answers;

then, on each server (``off``, then ``on``: the default settings), an open
loop at ``--overload`` times that rate for ``--seconds``: calls sent on
schedule whatever the answers (as independent agents do), each with a
``--deadline`` s deadline, from two load processes. Both servers get the same
offered load.

It prints goodput (OK calls per second over the sustained rate), the p50/p99
of the OK calls over the unloaded p99 as the load processes saw them and the
p99 the server's access log recorded (from the first interceptor to the
answer: it leaves out the time a call waits in gRPC and in the load
processes), the p99 of the refusals, and the status codes seen. ``cost``
then measures the server CPU time (from /proc) of a refused call against a
served one.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import grpc
import grpc.aio
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc as pb_grpc

CONVERSATIONS = 64  # appends spread over them, as many agents would
WINDOW_MESSAGES = 200
LOAD_PROCESSES = 2

Result = tuple[str, float]  # (status code name, seconds)


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


async def _one(
    stub: pb_grpc.ConversationServiceStub, method: str, i: int, deadline: float
) -> Result:
    call: Callable[..., Any] = getattr(stub, method)
    start = time.perf_counter()
    try:
        await call(_request(method, i), timeout=deadline)
        code = "OK"
    except grpc.aio.AioRpcError as exc:
        code = exc.code().name
    return code, time.perf_counter() - start


async def _closed(
    addr: str, method: str, callers: int, seconds: float, *, calls: int = 0
) -> list[Result]:
    """``callers`` calling back to back for ``seconds`` (or until ``calls`` calls)."""
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = pb_grpc.ConversationServiceStub(channel)
        until = time.perf_counter() + seconds
        results: list[Result] = []

        async def caller(k: int) -> None:
            i = k
            while len(results) < calls if calls else time.perf_counter() < until:
                results.append(await _one(stub, method, i, 30.0))
                i += callers

        await asyncio.gather(*(caller(k) for k in range(callers)))
        return results


async def _open(
    addr: str, method: str, rate: float, seconds: float, deadline: float
) -> list[Result]:
    """Calls sent at ``rate`` per second on schedule, whatever the answers."""
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = pb_grpc.ConversationServiceStub(channel)
        start = time.perf_counter()
        tasks = []
        i = 0
        while (due := i / rate) < seconds:
            delay = start + due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(_one(stub, method, i, deadline)))
            i += 1
        return list(await asyncio.gather(*tasks))


def _open_process(args: tuple[str, str, float, float, float]) -> list[Result]:
    return asyncio.run(_open(*args))


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


def baseline(addr: str, method: str, args: argparse.Namespace) -> tuple[float, float]:
    """The unloaded p99 (seconds) and the sustained rate (OK calls per second) of ``method``."""
    _settle(addr)
    unloaded = asyncio.run(_closed(addr, method, 1, 5.0))
    unloaded_p99 = _p([s for c, s in unloaded if c == "OK"], 0.99)
    asyncio.run(_closed(addr, method, args.callers, 3.0))  # warm-up, not counted
    closed = asyncio.run(_closed(addr, method, args.callers, 10.0))
    codes = collections.Counter(c for c, _ in [*unloaded, *closed])
    if set(codes) != {"OK"}:
        raise SystemExit(f"{method} failed without load: {dict(codes)}")
    return unloaded_p99, codes["OK"] / 10.0


def measure(
    addr: str, log: Path, method: str, base: tuple[float, float], args: argparse.Namespace
) -> dict[str, Any]:
    """Open loop at ``--overload`` times the sustained rate of ``base``."""
    unloaded_p99, sustained = base
    rate = sustained * args.overload
    _settle(addr)
    offset = log.stat().st_size
    with multiprocessing.get_context("spawn").Pool(LOAD_PROCESSES) as pool:
        parts = pool.map(
            _open_process,
            [(addr, method, rate / LOAD_PROCESSES, args.seconds, args.deadline)] * LOAD_PROCESSES,
        )
    results = [r for part in parts for r in part]
    ok = [s for c, s in results if c == "OK"]
    codes = collections.Counter(c for c, _ in results)
    shed = [s for c, s in results if c == "RESOURCE_EXHAUSTED"]
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
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_per_call(server: Server, method: str, calls: int) -> tuple[float, dict[str, int]]:
    """Server CPU seconds per call over ``calls`` calls from one caller, and their codes."""
    before = _cpu_seconds(server.pid)
    results = asyncio.run(_closed(server.addr, method, 1, 0.0, calls=calls))
    return (_cpu_seconds(server.pid) - before) / len(results), dict(
        collections.Counter(c for c, _ in results)
    )


def refusal_cost(data_dir: Path, log: Path) -> None:
    """Server CPU of a refused call against a served one.

    One slot per class and no queue; an append held on a row lock keeps the
    write slot, so every other append is refused, while reads are served.
    """
    settings = {
        "MEMORYD_MAX_CONCURRENT_CALLS": "1",
        "MEMORYD_MAX_QUEUED_CALLS": "0",
        # One process serving: with a supervisor, its own CPU (all /proc shows
        # here) leaves out the workers', and both calls measured about 5 us.
        "MEMORYD_WORKERS": "1",
    }
    with memoryd(data_dir, log, **settings) as server:
        _settle(server.addr)
        served, _ = _cpu_per_call(server, "GetContextWindow", 2000)
        pid_file = (data_dir / "postmaster.pid").read_text().splitlines()
        uri = (
            f"postgresql://postgres@/postgres?host={pid_file[4].strip()}&port={pid_file[3].strip()}"
        )
        with grpc.insecure_channel(server.addr) as channel, psycopg.connect(uri) as db:
            stub = pb_grpc.ConversationServiceStub(channel)
            stub.AppendMessages(_request("AppendMessages", 0), timeout=30)
            db.execute("SELECT 1 FROM conversations WHERE id = 'append-0' FOR UPDATE")
            held = stub.AppendMessages.future(_request("AppendMessages", 0), timeout=120)
            time.sleep(0.5)
            refused, codes = _cpu_per_call(server, "AppendMessages", 2000)
            db.rollback()
            held.result()
    print(
        f"server CPU per call: served GetContextWindow {served * 1e6:.0f} us,"
        f" refused AppendMessages {refused * 1e6:.0f} us ({refused / served:.0%}) {codes}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--overload", type=float, default=4.0)
    parser.add_argument("--deadline", type=float, default=2.0)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--modes", default="off,on,cost")
    parser.add_argument("--methods", default="AppendMessages,GetContextWindow")
    args = parser.parse_args()
    modes = {"off": {"MEMORYD_MAX_CONCURRENT_CALLS": "0"}, "on": {}}
    bases: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="memoryd-bench-") as tmp:
        data, log = Path(tmp) / "data", Path(tmp) / "memoryd.log"
        for method in args.methods.split(","):
            for mode in [m for m in args.modes.split(",") if m != "cost"]:
                # A server per run: one run's backlog (or broken pool) is not the next's.
                offset = log.stat().st_size if log.exists() else 0
                with memoryd(data, log, **modes[mode]) as (addr, _):
                    _prepare(addr)
                    # Measured once, on the first server (admission off by default),
                    # so both modes get the same offered load.
                    if method not in bases:
                        bases[method] = baseline(addr, method, args)
                    m = measure(addr, log, method, bases[method], args)
                print(
                    f"{mode:3} {method:16} sustained {m['sustained']:7.1f}/s"
                    f"  goodput at {args.overload:g}x {m['goodput']:6.1%}"
                    f"  OK p50 {m['p50_ratio']:5.2f}x p99 {m['p99_ratio']:5.2f}x"
                    f" unloaded p99 ({m['unloaded_p99_ms']:.1f} ms)"
                    f" (server side p99 {m['served_p99_ratio']:5.2f}x)"
                    f"  shed p99 {m['shed_p99_ms']:.1f} ms  {m['codes']};"
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
