"""The proto contract: generated code in sync, buf lint clean, every RPC documents its errors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2

from tests.conftest import REPO

PROTO_DIR = REPO / "proto" / "memoryd" / "v1"
COMMITTED = REPO / "clients" / "python" / "memoryd" / "v1"
GENERATED_PATTERNS = ("*_pb2.py", "*_pb2_grpc.py", "*.pyi")
VENV_BIN = Path(sys.executable).parent
# The codes an RPC documents (OK, UNKNOWN and INTERNAL are never part of the contract).
_UNDOCUMENTED = {grpc.StatusCode.OK, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
ERROR_CODES = re.compile(
    r"\b(" + "|".join(c.name for c in grpc.StatusCode if c not in _UNDOCUMENTED) + r")\b"
)

# Field numbers in descriptor.proto, the steps of SourceCodeInfo.Location.path.
FILE_MESSAGE, FILE_ENUM, FILE_SERVICE = 4, 5, 6
MESSAGE_FIELD, MESSAGE_NESTED, MESSAGE_ENUM = 2, 3, 4
ENUM_VALUE = 2
SERVICE_METHOD = 2


def _generated_files(root: Path) -> dict[str, bytes]:
    """Generated files under ``root`` (a memoryd/v1 folder), by name."""
    return {
        path.name: path.read_bytes()
        for pattern in GENERATED_PATTERNS
        for path in sorted(root.glob(pattern))
    }


def _tool(name: str) -> str:
    """A binary installed in the venv (next to this Python), else from PATH."""
    beside = VENV_BIN / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; run `./dev test` to set up the venv")
    return found


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    """The committed client code is exactly what scripts/generate-protos makes today."""
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(
        [str(REPO / "scripts" / "generate-protos"), str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    fresh = _generated_files(tmp_path / "memoryd" / "v1")
    committed = _generated_files(COMMITTED)
    assert fresh, "generate-protos produced nothing"
    hint = "the generated client code is out of date: run `./dev generate` and commit the result"
    assert sorted(committed) == sorted(fresh), f"{hint} (files differ)"
    stale = [name for name in fresh if committed[name] != fresh[name]]
    assert not stale, f"{hint}: {', '.join(stale)}"


def test_no_generated_file_without_a_proto() -> None:
    """Every generated file in the client belongs to a proto that still exists."""
    protos = {path.stem for path in PROTO_DIR.glob("*.proto")}
    assert protos
    for name in _generated_files(COMMITTED):
        stem = re.sub(r"_pb2(_grpc)?\.pyi?$", "", name)
        assert stem in protos, f"{name} has no proto/memoryd/v1/{stem}.proto; run `./dev generate`"
    for proto in protos:
        assert (COMMITTED / f"{proto}_pb2.py").is_file(), f"{proto}.proto was never generated"


def test_buf_lint() -> None:
    """The protos pass buf's STANDARD lint (buf.yaml at the repository root)."""
    result = subprocess.run(
        [_tool("buf"), "lint"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def proto_files(
    tmp_path_factory: pytest.TempPathFactory,
) -> list[descriptor_pb2.FileDescriptorProto]:
    """The memoryd protos compiled with their comments (source code info)."""
    out = tmp_path_factory.mktemp("descriptors") / "memoryd.binpb"
    protos = sorted(str(p.relative_to(REPO / "proto")) for p in PROTO_DIR.glob("*.proto"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            "proto",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *protos,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    files = list(descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file)
    assert len(files) == len(protos)
    return files


def _comments(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    """Leading comments of ``file`` by source path."""
    return {
        tuple(location.path): location.leading_comments.strip()
        for location in file.source_code_info.location
        if location.leading_comments.strip()
    }


def test_every_rpc_names_its_error_codes(
    proto_files: list[descriptor_pb2.FileDescriptorProto],
) -> None:
    """Each RPC's comment says which status codes it returns ("Returns NOT_FOUND if ...")."""
    services = 0
    for file in proto_files:
        comments = _comments(file)
        for s, service in enumerate(file.service):
            services += 1
            assert (FILE_SERVICE, s) in comments, f"{service.name} has no comment"
            for m, method in enumerate(service.method):
                comment = comments.get((FILE_SERVICE, s, SERVICE_METHOD, m), "")
                where = f"{file.name}: {service.name}.{method.name}"
                assert comment, f"{where} has no comment"
                assert ERROR_CODES.search(comment), f"{where}: its comment names no error code"
    assert services >= 1


def test_every_message_field_and_enum_value_is_documented(
    proto_files: list[descriptor_pb2.FileDescriptorProto],
) -> None:
    """The proto is the API reference: every message, field, enum and value has a comment."""
    missing: list[str] = []

    def check_enum(
        enum: descriptor_pb2.EnumDescriptorProto,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        if path not in comments:
            missing.append(enum.name)
        for v, value in enumerate(enum.value):
            if (*path, ENUM_VALUE, v) not in comments:
                missing.append(f"{enum.name}.{value.name}")

    def check_message(
        message: descriptor_pb2.DescriptorProto,
        path: tuple[int, ...],
        comments: dict[tuple[int, ...], str],
    ) -> None:
        if path not in comments:
            missing.append(message.name)
        for f, field in enumerate(message.field):
            if (*path, MESSAGE_FIELD, f) not in comments:
                missing.append(f"{message.name}.{field.name}")
        for n, nested in enumerate(message.nested_type):
            if not nested.options.map_entry:
                check_message(nested, (*path, MESSAGE_NESTED, n), comments)
        for e, enum in enumerate(message.enum_type):
            check_enum(enum, (*path, MESSAGE_ENUM, e), comments)

    for file in proto_files:
        comments = _comments(file)
        for i, message in enumerate(file.message_type):
            check_message(message, (FILE_MESSAGE, i), comments)
        for i, enum in enumerate(file.enum_type):
            check_enum(enum, (FILE_ENUM, i), comments)
            assert enum.value[0].number == 0
            assert enum.value[0].name.endswith("_UNSPECIFIED"), enum.name
    assert not missing, f"undocumented: {', '.join(missing)}"
