"""The server survives hostile bytes: oversized, unparsable and fuzzed requests.

Requests go through raw channel methods (no serializer), so the bytes on the
wire are exactly what the test chose. Whatever arrives, the answer is a
documented status, never UNKNOWN or INTERNAL, never a hang, and the server
keeps answering normal calls afterwards.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor, field_mask_pb2, struct_pb2
from google.protobuf.message import Message as ProtoMessage

from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc
from tests.conftest import assert_status, rpc_error

SERVICE = pb.DESCRIPTOR.services_by_name["ConversationService"]
METHODS = [m.name for m in SERVICE.methods]
TIMEOUT = 10.0
INVALID = grpc.StatusCode.INVALID_ARGUMENT
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
LEAKS = ("SELECT", "INSERT", "UPDATE ", "DELETE FROM", "postgresql://", "psycopg", "Traceback")


# -- wire-format helpers ----------------------------------------------------


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def string_field(desc: descriptor.Descriptor, payload: bytes, depth: int = 0) -> bytes | None:
    """``desc``'s first reachable string field holding ``payload`` (nested if need be)."""
    for field in desc.fields:
        if field.type == descriptor.FieldDescriptor.TYPE_STRING:
            return length_delimited(field.number, payload)
    if depth < 3:
        for field in desc.fields:
            if field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
                inner = string_field(field.message_type, payload, depth + 1)
                if inner is not None:
                    return length_delimited(field.number, inner)
    return None


def varint_field_number(desc: descriptor.Descriptor) -> int | None:
    for field in desc.fields:
        if field.type in (
            descriptor.FieldDescriptor.TYPE_INT32,
            descriptor.FieldDescriptor.TYPE_INT64,
            descriptor.FieldDescriptor.TYPE_BOOL,
            descriptor.FieldDescriptor.TYPE_ENUM,
        ):
            return field.number
    return None


def request_type(method: str) -> type[ProtoMessage]:
    return getattr(pb, SERVICE.methods_by_name[method].input_type.name)


def response_type(method: str) -> type[ProtoMessage]:
    return getattr(pb, SERVICE.methods_by_name[method].output_type.name)


def nested_struct_bytes(depth: int) -> bytes:
    """A serialized Struct nested ``depth`` levels deep: {"k": {"k": ... {"leaf": 1}}}."""
    leaf_value = tag(2, 1) + struct.pack("<d", 1.0)  # Value.number_value
    body = length_delimited(1, length_delimited(1, b"leaf") + length_delimited(2, leaf_value))
    for _ in range(depth):
        value = length_delimited(5, body)  # Value.struct_value
        body = length_delimited(1, length_delimited(1, b"k") + length_delimited(2, value))
    return body


# -- fixtures and call helpers ----------------------------------------------


RawCall = Callable[..., bytes]


@pytest.fixture(scope="module")
def raw(grpc_channel: grpc.Channel) -> Callable[[str], RawCall]:
    """``raw(method)(payload, timeout=...)`` sends ``payload`` as the request bytes."""

    def method(name: str) -> RawCall:
        path = name if name.startswith("/") else f"/{SERVICE.full_name}/{name}"
        return grpc_channel.unary_unary(path, request_serializer=None, response_deserializer=None)

    return method


def pb_stub(channel: grpc.Channel) -> conversation_pb2_grpc.ConversationServiceStub:
    return conversation_pb2_grpc.ConversationServiceStub(channel)


def assert_server_answers(stub: Any, uid: str) -> None:
    created = stub.CreateConversation(
        pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid)), timeout=TIMEOUT
    ).conversation
    appended = stub.AppendMessages(
        pb.AppendMessagesRequest(
            conversation_id=created.id,
            messages=[pb.Message(role=pb.MESSAGE_ROLE_USER, content="still here")],
        ),
        timeout=TIMEOUT,
    )
    assert appended.conversation.message_count == 1
    got = stub.GetConversation(
        pb.GetConversationRequest(conversation_id=created.id), timeout=TIMEOUT
    )
    assert got.conversation.message_count == 1


def message_rows(db: Any, conversation_id: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM messages WHERE conversation_id = %s", (conversation_id,)
    ).fetchone()
    return int(row[0])


def outcome(call: RawCall, payload: bytes, method: str) -> tuple[grpc.StatusCode, str]:
    """The status of one raw call; an OK answer must parse as the response type."""
    try:
        answer = call(payload, timeout=TIMEOUT)
    except grpc.RpcError as err:
        return err.code(), err.details() or ""
    response_type(method).FromString(answer)
    return grpc.StatusCode.OK, ""


# -- oversized requests -----------------------------------------------------


def test_request_over_max_receive_size_is_resource_exhausted(
    grpc_create_channel, grpc_stub, memoryd_server, db, uid
):
    limit = memoryd_server.settings.max_receive_bytes
    conv = grpc_stub.CreateConversation(
        pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid))
    ).conversation
    huge = pb.AppendMessagesRequest(
        conversation_id=conv.id,
        messages=[pb.Message(role=pb.MESSAGE_ROLE_USER, content="x" * (limit + 1))],
    )
    assert huge.ByteSize() > limit
    # The client's default send limit is unlimited, so the server's limit is what bites.
    with grpc_create_channel() as channel:
        stub = pb_stub(channel)
        err = rpc_error(lambda: stub.AppendMessages(huge, timeout=30))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (err.code(), err.details())
        # Raw bytes over the limit, not even a valid message, get the same answer.
        call = channel.unary_unary(
            f"/{SERVICE.full_name}/GetConversation",
            request_serializer=None,
            response_deserializer=None,
        )
        err = rpc_error(lambda: call(b"\xff" * (limit + 10), timeout=30))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (err.code(), err.details())
        # The same channel keeps working.
        assert_server_answers(stub, uid)
    assert message_rows(db, conv.id) == 0
    assert_server_answers(grpc_stub, uid)


def test_requests_between_grpc_default_and_server_limit_are_accepted(
    grpc_create_channel, memoryd_server, uid
):
    """The server's 16 MiB limit is really in force, not grpc's 4 MiB default."""
    content_limit = memoryd_server.settings.max_content_bytes
    count = 6
    size = min(content_limit, 900_000)
    request = pb.AppendMessagesRequest(
        conversation_id=f"big-{uid}",
        create_if_missing=True,
        messages=[pb.Message(role=pb.MESSAGE_ROLE_USER, content="y" * size) for _ in range(count)],
    )
    assert 4 * 1024 * 1024 < request.ByteSize() < memoryd_server.settings.max_receive_bytes
    options = [("grpc.max_receive_message_length", -1)]
    with grpc_create_channel(options=options) as channel:
        response = pb_stub(channel).AppendMessages(request, timeout=60)
    assert response.conversation.message_count == count
    assert [m.seq for m in response.messages] == list(range(1, count + 1))


# -- bytes that are not a valid message --------------------------------------


def malformed_payloads(method: str) -> dict[str, bytes]:
    """Named byte strings that no protobuf parser accepts as ``method``'s request."""
    desc = request_type(method).DESCRIPTOR
    valid_string = string_field(desc, b"abcdef")
    bad_utf8 = string_field(desc, b"ok\xff\xfe\xc3")
    overlong = string_field(desc, b"\xc0\xaf")  # an overlong encoding of "/"
    surrogate = string_field(desc, b"\xed\xa0\x80")  # a UTF-16 surrogate in UTF-8
    assert valid_string is not None
    assert bad_utf8 is not None
    assert overlong is not None
    assert surrogate is not None
    payloads = {
        "ff*4": b"\xff\xff\xff\xff",
        "ff*64": b"\xff" * 64,
        "field number 0": b"\x00",
        "wire type 6": b"\x0e\x00",
        "wire type 7": b"\x0f",
        "unterminated group": b"\x0b",
        "truncated string": valid_string[:-1],
        "length past the end": valid_string[:1] + varint(100) + b"abc",
        "huge length": valid_string[:1] + varint(2**62) + b"abc",
        "truncated tag": b"\x80",
        "invalid utf-8": bad_utf8,
        "overlong utf-8": overlong,
        "surrogate utf-8": surrogate,
        "truncated fixed64": tag(30, 1) + b"\x01\x02",
        "truncated fixed32": tag(30, 5) + b"\x01",
    }
    number = varint_field_number(desc)
    if number is not None:
        payloads["truncated varint"] = tag(number, 0) + b"\x80\x80"
        payloads["eleven-byte varint"] = tag(number, 0) + b"\xff" * 10 + b"\x01"
    return payloads


@pytest.mark.parametrize("method", METHODS)
def test_unparsable_bytes_are_invalid_argument(raw, grpc_stub, uid, method):
    call = raw(method)
    for name, payload in malformed_payloads(method).items():
        err = rpc_error(lambda payload=payload: call(payload, timeout=TIMEOUT))
        assert err.code() == INVALID, (name, err.code(), err.details())
        assert "request" in (err.details() or ""), (name, err.details())
        for leak in LEAKS:
            assert leak not in (err.details() or ""), (name, err.details())
    assert_server_answers(grpc_stub, uid)


@pytest.mark.parametrize("method", METHODS)
def test_unparsable_bytes_name_the_request_field(raw, method):
    err = assert_status(
        lambda: raw(method)(b"\xff\xff\xff\xff", timeout=TIMEOUT), INVALID, field="request"
    )
    assert request_type(method).DESCRIPTOR.name in (err.details() or "")


def test_invalid_utf8_nested_in_a_message_is_invalid(raw):
    nested = {
        "AppendMessages": length_delimited(
            2,
            tag(4, 0) + varint(1) + length_delimited(5, b"\xff\xfe"),  # messages[0].content
        ),
        "UpdateConversation": length_delimited(2, length_delimited(1, b"ti\xfftle")),
        "CreateConversation": length_delimited(1, length_delimited(8, b"\x0a\x04\x0a\x02\xff\xff")),
    }
    for method, payload in nested.items():
        assert_status(lambda m=method, p=payload: raw(m)(p, timeout=TIMEOUT), INVALID)


def test_well_formed_bytes_parse_through_the_raw_path(raw, grpc_stub, uid):
    """The same raw path accepts a valid message: the rejections above are about the bytes."""
    created = grpc_stub.CreateConversation(
        pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid))
    ).conversation
    answer = raw("GetConversation")(
        pb.GetConversationRequest(conversation_id=created.id).SerializeToString(), timeout=TIMEOUT
    )
    assert pb.GetConversationResponse.FromString(answer).conversation.id == created.id
    # An empty body is the default request: a validation error, not a parse error.
    assert_status(
        lambda: raw("GetConversation")(b"", timeout=TIMEOUT), INVALID, field="conversation_id"
    )
    # Unknown fields are skipped, as protobuf requires.
    with_unknown = pb.GetConversationRequest(conversation_id=created.id).SerializeToString()
    with_unknown += length_delimited(99, b"future field") + tag(100, 0) + varint(7)
    answer = raw("GetConversation")(with_unknown, timeout=TIMEOUT)
    assert pb.GetConversationResponse.FromString(answer).conversation.id == created.id


def test_deeply_nested_struct_is_invalid_not_a_crash(raw, grpc_stub, uid):
    created = grpc_stub.CreateConversation(
        pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid))
    ).conversation
    shallow = nested_struct_bytes(20)
    assert struct_pb2.Struct.FromString(shallow).fields["k"].struct_value.fields["k"]

    def append_with_metadata(struct_bytes: bytes) -> bytes:
        message = tag(4, 0) + varint(1) + length_delimited(5, b"hi")
        message += length_delimited(11, struct_bytes)
        payload = length_delimited(1, created.id.encode()) + length_delimited(2, message)
        return raw("AppendMessages")(payload, timeout=TIMEOUT)

    answer = pb.AppendMessagesResponse.FromString(append_with_metadata(shallow))
    assert answer.messages[0].metadata.fields["k"].struct_value.fields["k"]
    for depth in (100, 1000, 20_000):
        assert_status(
            lambda depth=depth: append_with_metadata(nested_struct_bytes(depth)),
            INVALID,
            field="request",
        )
    assert_server_answers(grpc_stub, uid)


def test_unknown_methods_are_unimplemented(raw, grpc_stub, uid):
    for path in (
        f"/{SERVICE.full_name}/NoSuchMethod",
        f"/{SERVICE.full_name}/getConversation",
        "/memoryd.v1.NoSuchService/GetConversation",
        "/memoryd.v2.ConversationService/GetConversation",
        "/nonsense",
    ):
        for payload in (b"", b"\xff\xff\xff\xff"):
            err = rpc_error(lambda path=path, payload=payload: raw(path)(payload, timeout=TIMEOUT))
            assert err.code() == grpc.StatusCode.UNIMPLEMENTED, (path, err.code(), err.details())
    assert_server_answers(grpc_stub, uid)


def test_a_burst_of_bad_requests_leaves_the_server_healthy(raw, grpc_stub, uid):
    """Concurrent garbage does not leak pooled connections or wedge the loop."""
    payloads = [b"\xff\xff\xff\xff", b"", b"\x0a\x03abc", b"\x0a\x02\xff\xfe"]

    def one(i: int) -> grpc.StatusCode:
        method = METHODS[i % len(METHODS)]
        code, details = outcome(raw(method), payloads[i % len(payloads)], method)
        assert not any(leak in details for leak in LEAKS), details
        return code

    with ThreadPoolExecutor(max_workers=32) as pool:
        codes = list(pool.map(one, range(400)))
    assert set(codes) <= ALLOWED, sorted({c.name for c in codes})
    assert grpc.StatusCode.INVALID_ARGUMENT in codes
    assert_server_answers(grpc_stub, uid)


# -- fuzzing ----------------------------------------------------------------


def _samples(stub: Any, uid: str) -> dict[str, list[bytes]]:
    """Valid serialized requests for every RPC, about real resources."""
    conv = stub.CreateConversation(
        pb.CreateConversationRequest(
            conversation=pb.Conversation(user_id=uid, title="fuzz", metadata=_struct(a=1)),
            conversation_id=f"fuzz-{uid}",
        )
    ).conversation
    appended = stub.AppendMessages(
        pb.AppendMessagesRequest(
            conversation_id=conv.id,
            messages=[
                pb.Message(role=pb.MESSAGE_ROLE_SYSTEM, content="be brief", token_count=2),
                pb.Message(role=pb.MESSAGE_ROLE_USER, content="hi", token_count=1),
                pb.Message(
                    role=pb.MESSAGE_ROLE_ASSISTANT,
                    tool_calls=[pb.ToolCall(id="c1", name="lookup", arguments=_struct(q="x"))],
                    token_count=3,
                    model="m",
                ),
            ],
        )
    )
    for _ in range(2):
        stub.CreateConversation(
            pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid))
        )
    conv_token = stub.ListConversations(
        pb.ListConversationsRequest(page_size=1, user_id=uid)
    ).next_page_token
    msg_token = stub.ListMessages(
        pb.ListMessagesRequest(conversation_id=conv.id, page_size=1)
    ).next_page_token
    assert conv_token
    assert msg_token
    message_id = appended.messages[1].id
    requests: dict[str, list[ProtoMessage]] = {
        "CreateConversation": [
            pb.CreateConversationRequest(
                conversation=pb.Conversation(user_id=uid, agent_id="a", state=_struct(s=[1, "x"])),
                request_id=f"fuzz-create-{uid}",
            ),
            pb.CreateConversationRequest(conversation_id=f"fuzz2-{uid}"),
        ],
        "GetConversation": [pb.GetConversationRequest(conversation_id=conv.id)],
        "ListConversations": [
            pb.ListConversationsRequest(page_size=1, user_id=uid, page_token=conv_token),
            pb.ListConversationsRequest(page_size=5, status=pb.CONVERSATION_STATUS_ACTIVE),
        ],
        "UpdateConversation": [
            pb.UpdateConversationRequest(
                conversation=pb.Conversation(id=conv.id, title="t", state=_struct(k=True)),
                update_mask=_mask("title", "state"),
                expected_version=1,
            ),
            pb.UpdateConversationRequest(
                conversation=pb.Conversation(id=conv.id, status=pb.CONVERSATION_STATUS_IDLE),
                update_mask=_mask("status"),
            ),
        ],
        "DeleteConversation": [pb.DeleteConversationRequest(conversation_id=f"fuzz-gone-{uid}")],
        "AppendMessages": [
            pb.AppendMessagesRequest(
                conversation_id=conv.id,
                messages=[
                    pb.Message(role=pb.MESSAGE_ROLE_USER, content="more", token_count=1),
                    pb.Message(
                        role=pb.MESSAGE_ROLE_TOOL,
                        content="{}",
                        tool_call_id="c1",
                        metadata=_struct(n=None),
                    ),
                ],
                request_id=f"fuzz-append-{uid}",
            ),
            pb.AppendMessagesRequest(
                conversation_id=f"fuzz-lazy-{uid}",
                create_if_missing=True,
                conversation=pb.Conversation(user_id=uid),
                messages=[pb.Message(role=pb.MESSAGE_ROLE_USER, content="x")],
            ),
        ],
        "ListMessages": [
            pb.ListMessagesRequest(conversation_id=conv.id, page_size=1, page_token=msg_token),
            pb.ListMessagesRequest(conversation_id=conv.id, newest_first=True, start_seq=2),
        ],
        "GetContextWindow": [
            pb.GetContextWindowRequest(
                conversation_id=conv.id, max_messages=2, max_tokens=5, include_system_messages=True
            )
        ],
        "SetMessageFeedback": [
            pb.SetMessageFeedbackRequest(
                conversation_id=conv.id,
                message_id=message_id,
                rating=pb.FEEDBACK_RATING_POSITIVE,
                comment="good",
            )
        ],
        "SearchMessages": [
            pb.SearchMessagesRequest(
                query_text="more x",
                filter=pb.MessageFilter(conversation_ids=[conv.id], roles=[pb.MESSAGE_ROLE_TOOL]),
                top_k=3,
            ),
            pb.SearchMessagesRequest(query_text='"more" -x', text_match=2, mode=2),
        ],
    }
    assert set(requests) == set(METHODS)
    return {name: [r.SerializeToString() for r in rs] for name, rs in requests.items()}


def _struct(**values: Any) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result


def _mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


INTERESTING_BYTES = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0x0A, 0x12, 0xC0, 0xED]


def _mutate(rng: random.Random, data: bytes, other: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        if op == 0 and buf:  # flip bits
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:  # an interesting byte
            buf[rng.randrange(len(buf))] = rng.choice(INTERESTING_BYTES)
        elif op == 2:  # insert random bytes
            i = rng.randint(0, len(buf))
            buf[i:i] = rng.randbytes(rng.randint(1, 8))
        elif op == 3 and buf:  # delete a slice
            i = rng.randrange(len(buf))
            del buf[i : i + rng.randint(1, 8)]
        elif op == 4 and buf:  # truncate
            del buf[rng.randrange(len(buf)) :]
        elif op == 5 and buf:  # duplicate a slice
            i = rng.randrange(len(buf))
            j = rng.randint(i, len(buf))
            buf[j:j] = buf[i:j]
        elif op == 6:  # append a random field
            buf += tag(rng.randint(1, 40), rng.randrange(8)) + rng.randbytes(rng.randint(0, 12))
        elif op == 7:  # splice with another request
            buf = buf[: rng.randint(0, len(buf))] + other[rng.randint(0, len(other)) :]
        elif op == 8:  # concatenate: protobuf merges the two messages
            buf += other
    return bytes(buf)


def _fuzz_payload(rng: random.Random, samples: dict[str, list[bytes]], method: str) -> bytes:
    kind = rng.random()
    if kind < 0.2:
        return rng.randbytes(rng.randint(0, 256))
    base = rng.choice(samples[method])
    other = rng.choice(samples[rng.choice(METHODS)])
    return _mutate(rng, base, other)


def _check_outcomes(results: list[tuple[str, bytes, grpc.StatusCode, str]]) -> None:
    bad = [
        (method, code.name, details, payload.hex()[:400])
        for method, payload, code, details in results
        if code not in ALLOWED or any(leak in details for leak in LEAKS)
    ]
    distinct = {(m, c, d) for m, c, d, _ in bad}
    assert not bad, (
        f"{len(bad)} of {len(results)} calls broke the contract; distinct: {sorted(distinct)};"
        f" first inputs: {bad[:5]}"
    )


def test_fuzz_random_bytes_and_mutations(raw, grpc_stub, uid):
    """300 seeded random or mutated requests: only documented statuses, never a hang."""
    samples = _samples(grpc_stub, uid)
    rng = random.Random(0x6D656D6F)  # noqa: S311 - a reproducible fuzz, not crypto
    results = []
    for _ in range(300):
        method = rng.choice(METHODS)
        payload = _fuzz_payload(rng, samples, method)
        code, details = outcome(raw(method), payload, method)
        results.append((method, payload, code, details))
    _check_outcomes(results)
    codes = {code for _, _, code, _ in results}
    # The mix reached past the parser: some calls succeeded, some failed validation.
    assert grpc.StatusCode.OK in codes
    assert grpc.StatusCode.INVALID_ARGUMENT in codes
    assert_server_answers(grpc_stub, uid)


NASTY_STRINGS = [
    "",
    "a",
    " ",
    "\x00",
    "a\x00b",
    "\u00e9",
    "\U0001f600",
    "\ufffd",
    "x" * 129,
    "x" * 257,
    "y" * 5000,
    "'; DROP TABLE messages; --",
    "%(tenant)s",
    "%s",
    "{}",
    "\\u0000",
    "00000000-0000-0000-0000-000000000000",
    "../../etc/passwd",
    "title",
    "status",
    "metadata",
    "id",
]
NASTY_INTS = [0, 1, -1, 2, 3, 7, 99, 1000, 1001, 2**31 - 1, -(2**31)]
NASTY_INT64 = [*NASTY_INTS, 2**63 - 1, -(2**63)]
NASTY_NUMBERS = [0.0, -0.0, 1e308, -1e308, 5e-324, 2.5, math.nan, math.inf, -math.inf]


def _nasty_struct(rng: random.Random, depth: int = 0) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    for _ in range(rng.randint(0, 3)):
        key = rng.choice(NASTY_STRINGS)
        pick = rng.randrange(6)
        value = result.fields[key]
        if pick == 0:
            value.number_value = rng.choice(NASTY_NUMBERS)
        elif pick == 1:
            value.string_value = rng.choice(NASTY_STRINGS)
        elif pick == 2:
            value.bool_value = rng.random() < 0.5
        elif pick == 3:
            value.null_value = struct_pb2.NULL_VALUE
        elif pick == 4 and depth < 3:
            value.struct_value.CopyFrom(_nasty_struct(rng, depth + 1))
        else:
            value.list_value.values.add().number_value = rng.choice(NASTY_NUMBERS)
    return result


def _fill_message(rng: random.Random, message: ProtoMessage, field: Any, depth: int) -> None:
    """Fill the message-typed ``field`` of ``message``: well-known types get awkward values."""
    name = field.message_type.full_name
    target = getattr(message, field.name)
    if name == "google.protobuf.Struct":
        target.CopyFrom(_nasty_struct(rng))
    elif name == "google.protobuf.FieldMask":
        target.paths.extend(rng.choice(NASTY_STRINGS) for _ in range(rng.randint(0, 3)))
    elif name == "google.protobuf.Timestamp":
        target.seconds = rng.choice(NASTY_INT64)
    elif depth < 3 and field.is_repeated:
        for _ in range(rng.randint(0, 3)):
            _fill(rng, target.add(), depth + 1)
    elif depth < 3:
        _fill(rng, target, depth + 1)


def _fill(rng: random.Random, message: ProtoMessage, depth: int = 0) -> None:
    """Set a random selection of ``message``'s fields to awkward values."""
    types = descriptor.FieldDescriptor
    for field in message.DESCRIPTOR.fields:
        if rng.random() < 0.4:
            continue
        if field.type == types.TYPE_MESSAGE:
            _fill_message(rng, message, field, depth)
        elif field.type == types.TYPE_STRING and field.is_repeated:
            getattr(message, field.name).extend(rng.choice(NASTY_STRINGS) for _ in range(2))
        elif field.type == types.TYPE_STRING:
            setattr(message, field.name, rng.choice(NASTY_STRINGS))
        elif field.type in (types.TYPE_INT32, types.TYPE_ENUM) and field.is_repeated:
            getattr(message, field.name).extend(rng.choice(NASTY_INTS) for _ in range(2))
        elif field.type in (types.TYPE_INT32, types.TYPE_ENUM):
            setattr(message, field.name, rng.choice(NASTY_INTS))
        elif field.type == types.TYPE_INT64:
            setattr(message, field.name, rng.choice(NASTY_INT64))
        elif field.type == types.TYPE_BOOL:
            setattr(message, field.name, rng.random() < 0.5)


def test_fuzz_structured_requests_with_awkward_values(raw, grpc_stub, uid):
    """300 well-formed requests whose fields hold awkward values: documented statuses only."""
    samples = _samples(grpc_stub, uid)
    rng = random.Random(0x0BAD1DEA)  # noqa: S311 - a reproducible fuzz, not crypto
    results = []
    for _ in range(300):
        method = rng.choice(METHODS)
        request = request_type(method).FromString(rng.choice(samples[method]))
        if rng.random() < 0.3:
            request.Clear()
        _fill(rng, request)
        payload = request.SerializeToString()
        code, details = outcome(raw(method), payload, method)
        results.append((method, payload, code, details))
    _check_outcomes(results)
    codes = {code for _, _, code, _ in results}
    assert grpc.StatusCode.INVALID_ARGUMENT in codes
    assert_server_answers(grpc_stub, uid)
