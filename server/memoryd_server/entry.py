"""The ``memoryd`` command's entry point: gRPC core's own log quiet by default, then the CLI."""

from __future__ import annotations

import os


def main() -> int:
    """Run ``memoryd``; returns the exit code.

    gRPC core writes its own lines (``fork_posix``, ``add_port``) straight to
    stderr, in its own format, among memoryd's JSON log; memoryd reports what
    matters of them itself (``cannot listen on ...``). They are off unless
    GRPC_VERBOSITY (or GRPC_TRACE) is set, which must happen before grpc loads.
    """
    if "GRPC_VERBOSITY" not in os.environ and "GRPC_TRACE" not in os.environ:
        os.environ["GRPC_VERBOSITY"] = "NONE"
    # Imported here: grpc reads GRPC_VERBOSITY once, when it loads.
    from memoryd_server.cli import main as cli_main

    return cli_main()
