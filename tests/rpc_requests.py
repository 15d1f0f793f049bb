"""Requests for every memoryd RPC, built from the proto descriptors.

Shared by the auth and isolation tests. ``RPCS`` is every method of every
service in the memoryd.v1 package, so a new RPC is tested without being named
here. ``build_request`` makes a well-formed request whose ids all name one
tenant's resources (made by ``populate``).
"""

from __future__ import annotations

import functools
import importlib
import math
import pkgutil
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import field_mask_pb2, message_factory, struct_pb2, text_format
from google.protobuf import message as pb_message
from google.protobuf.descriptor import FieldDescriptor
from google.rpc import error_details_pb2, status_pb2

import memoryd.v1
from memoryd.v1 import admin_pb2, conversation_pb2, document_pb2, memory_pb2
from memoryd.v1 import conversation_pb2_grpc as conversation_grpc
from memoryd.v1 import document_pb2_grpc as document_grpc
from memoryd.v1 import memory_pb2_grpc as memory_grpc
from memoryd_server.ids import uuid7

EMBEDDING_DIM = 384  # the test servers' MEMORYD_EMBEDDING_DIM
STATUS_TRAILER = "grpc-status-details-bin"
Metadata = Sequence[tuple[str, str]]
del error_details_pb2  # imported so that text_format expands the status details


@dataclass(frozen=True)
class Rpc:
    """One method of a memoryd service."""

    service: str  # full name, e.g. memoryd.v1.MemoryService
    name: str
    input: type[pb_message.Message]
    output: type[pb_message.Message]
    client_streaming: bool = False

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    def __str__(self) -> str:
        return f"{self.service.rsplit('.', 1)[-1]}.{self.name}"


def _discover() -> list[Rpc]:
    found = []
    for module in pkgutil.iter_modules(memoryd.v1.__path__):
        if module.name.endswith("_pb2"):
            pb2 = importlib.import_module(f"memoryd.v1.{module.name}")
            for service in pb2.DESCRIPTOR.services_by_name.values():
                found.extend(
                    Rpc(
                        service.full_name,
                        method.name,
                        message_factory.GetMessageClass(method.input_type),
                        message_factory.GetMessageClass(method.output_type),
                        method.client_streaming,
                    )
                    for method in service.methods
                )
    return found


RPCS: list[Rpc] = _discover()


@dataclass
class Outcome:
    """What a caller got back: a status, and a response or error details."""

    code: grpc.StatusCode
    details: str
    response: Any  # the response message; None on error
    status: bytes = b""  # the serialized google.rpc.Status trailer

    @functools.cached_property
    def text(self) -> str:
        """Everything the caller can read, as text."""
        parts = [self.details]
        if self.response is not None:
            parts.append(text_format.MessageToString(self.response, as_utf8=True))
        if self.status:
            status = status_pb2.Status.FromString(self.status)
            parts.append(text_format.MessageToString(status, as_utf8=True))
        return "\n".join(parts)

    @functools.cached_property
    def blob(self) -> bytes:
        """Everything the caller received, as bytes."""
        response = b"" if self.response is None else self.response.SerializeToString()
        return response + self.status + self.details.encode()

    def contains(self, secret: str) -> bool:
        return secret in self.text or secret.encode() in self.blob


def invoke(
    channel: grpc.Channel, rpc: Rpc, request: pb_message.Message, metadata: Metadata = ()
) -> Outcome:
    """Call ``rpc``; a failure is returned as its status, not raised.

    A client-streaming RPC is sent ``request`` and then its ``_STREAM_TAILS``.
    """
    kind = channel.stream_unary if rpc.client_streaming else channel.unary_unary
    call = kind(
        rpc.path,
        request_serializer=rpc.input.SerializeToString,
        response_deserializer=rpc.output.FromString,
    )
    sent: Any = request
    if rpc.client_streaming:
        sent = iter([request, *_STREAM_TAILS.get(rpc.name, list)()])
    try:
        response = call(sent, metadata=tuple(metadata), timeout=30)
    except grpc.RpcError as err:
        trailers = err.trailing_metadata() or ()  # type: ignore[attr-defined]
        status = next((v for k, v in trailers if k == STATUS_TRAILER), b"")
        return Outcome(err.code(), err.details() or "", None, status)  # type: ignore[attr-defined]
    return Outcome(grpc.StatusCode.OK, "", response)


def vector(seed: int) -> list[float]:
    """A finite, non-zero embedding of the servers' dimension."""
    return [math.sin(seed + i) for i in range(EMBEDDING_DIM)]


def struct(**values: Any) -> struct_pb2.Struct:
    result = struct_pb2.Struct()
    result.update(values)
    return result


@dataclass(frozen=True)
class Resources:
    """One tenant's resources, which ``build_request`` names in requests."""

    tenant_id: str
    key_id: str
    tag: str  # what makes the names below unique
    message_ids: tuple[str, ...] = ()
    memory_id: str = ""
    document_id: str = ""

    @property
    def user_id(self) -> str:
        return f"user-{self.tag}"

    @property
    def agent_id(self) -> str:
        return f"agent-{self.tag}"

    @property
    def conversation_id(self) -> str:
        return f"conv-{self.tag}"

    @property
    def namespace(self) -> tuple[str, str]:
        return (f"ns-{self.tag}", "facts")

    @property
    def memory_key(self) -> str:
        return f"key-{self.tag}"

    @property
    def terms(self) -> tuple[str, str]:
        """Words only this data holds: what a search would look for, and another."""
        return (f"find{self.tag}", f"hide{self.tag}")

    def ids(self) -> tuple[str, ...]:
        return (
            *(self.tenant_id, self.user_id, self.agent_id, self.conversation_id),
            *(*self.message_ids, self.memory_id, self.namespace[0], self.memory_key, self.key_id),
            self.document_id,
        )


def ghost_of(tenant_id: str) -> Resources:
    """Resources of ``populate``'s shapes that exist nowhere (in ``tenant_id``)."""
    messages = (str(uuid7()), str(uuid7()))
    tag = uuid.uuid4().hex[:12]
    return Resources(tenant_id, str(uuid.uuid4()), tag, messages, str(uuid7()), str(uuid7()))


def populate(channel: grpc.Channel, tenant_id: str, member: Metadata, key_id: str) -> Resources:
    """Make a conversation with messages and feedback, and a memory with history.

    All their text holds the ``terms`` of the returned resources.
    """
    res = Resources(tenant_id, key_id, uuid.uuid4().hex[:12])
    words = " ".join(res.terms)
    conversations = conversation_grpc.ConversationServiceStub(channel)
    memories = memory_grpc.MemoryServiceStub(channel)
    conversation = conversation_pb2.Conversation(
        user_id=res.user_id,
        agent_id=res.agent_id,
        title=f"title {words}",
        summary=f"summary {words}",
        metadata=struct(note=words),
        state=struct(step=words),
    )
    conversations.CreateConversation(
        conversation_pb2.CreateConversationRequest(
            conversation=conversation, conversation_id=res.conversation_id
        ),
        metadata=member,
    )
    messages = [
        conversation_pb2.Message(role=role, content=f"{role} {words}", token_count=3)
        for role in (conversation_pb2.MESSAGE_ROLE_USER, conversation_pb2.MESSAGE_ROLE_ASSISTANT)
    ]
    appended = conversations.AppendMessages(
        conversation_pb2.AppendMessagesRequest(
            conversation_id=res.conversation_id, messages=messages
        ),
        metadata=member,
    )
    message_ids = tuple(m.id for m in appended.messages)
    conversations.SetMessageFeedback(
        conversation_pb2.SetMessageFeedbackRequest(
            conversation_id=res.conversation_id,
            message_id=message_ids[-1],
            rating=conversation_pb2.FEEDBACK_RATING_POSITIVE,
            comment=f"good {words}",
        ),
        metadata=member,
    )
    memory = memory_pb2.Memory(
        namespace=res.namespace,
        key=res.memory_key,
        content=f"fact {words}",
        subject=f"subject {words}",
        user_id=res.user_id,
        agent_id=res.agent_id,
        tags=[res.terms[0]],
        metadata=struct(note=words),
        embedding=vector(int(res.tag[:6], 16)),
        source=memory_pb2.MemorySource(
            conversation_id=res.conversation_id, message_ids=message_ids
        ),
    )
    created = memories.CreateMemory(memory_pb2.CreateMemoryRequest(memory=memory), metadata=member)
    memories.UpdateMemory(
        memory_pb2.UpdateMemoryRequest(
            memory=memory_pb2.Memory(id=created.memory.id, content=f"revised fact {words}"),
            update_mask=field_mask_pb2.FieldMask(paths=["content"]),
            reason=f"why {words}",
        ),
        metadata=member,
    )
    document = document_grpc.DocumentServiceStub(channel).PutDocument(
        document_pb2.PutDocumentRequest(
            document=document_pb2.Document(
                namespace=res.namespace,
                path=f"doc-{res.tag}.md",
                content=f"# Title {words}\n\ntext {words}\n",
                user_id=res.user_id,
                tags=[res.terms[0]],
                metadata=struct(note=words),
            )
        ),
        metadata=member,
    )
    return Resources(
        tenant_id, key_id, res.tag, message_ids, created.memory.id, document.document.id
    )


# -- well-formed requests naming one tenant's resources ------------------------------


def _mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=paths)


# Values of request fields, by field name.
_FIELDS: dict[str, Callable[[Resources], Any]] = {
    "tenant_id": lambda r: r.tenant_id,
    "user_id": lambda r: r.user_id,
    "agent_id": lambda r: r.agent_id,
    "conversation_id": lambda r: r.conversation_id,
    "message_id": lambda r: r.message_ids[-1],
    "memory_id": lambda r: r.memory_id,
    "document_id": lambda r: r.document_id,
    "key_id": lambda r: r.key_id,
    "prefix": lambda r: r.namespace,
    "query_text": lambda r: r.terms[0],
    "query_embedding": lambda r: vector(1),
    "filter": lambda r: memory_pb2.MemoryFilter(
        user_id=r.user_id, agent_id=r.agent_id, namespace_prefix=r.namespace
    ),
    "conversation": lambda r: conversation_pb2.Conversation(id=r.conversation_id, title="new"),
    "messages": lambda r: [
        conversation_pb2.Message(role=conversation_pb2.MESSAGE_ROLE_USER, content="more")
    ],
    "memory": lambda r: memory_pb2.Memory(id=r.memory_id, content="new content"),
    "memories": lambda r: [memory_pb2.Memory(namespace=r.namespace, content="batch")],
    "tenant": lambda r: admin_pb2.Tenant(tenant_id=r.tenant_id, display_name="renamed"),
    "time": lambda r: {"seconds": 4_102_444_800},  # 2100: the memory existed by then
    "rating": lambda r: conversation_pb2.FEEDBACK_RATING_NEGATIVE,
    "name": lambda r: "probe",
    "role": lambda r: admin_pb2.ROLE_VIEWER,
}
# Fields named like ids that name no resource.
_NOT_IDS = {"request_id", "tool_call_id"}
# Requests that need more than their fields' defaults, by RPC name.
_OVERRIDES: dict[str, Callable[[Resources], dict[str, Any]]] = {
    "CreateConversation": lambda r: {"conversation": conversation_pb2.Conversation(user_id="u")},
    "UpdateConversation": lambda r: {"update_mask": _mask("title")},
    "SearchMessages": lambda r: {
        "filter": conversation_pb2.MessageFilter(
            conversation_ids=[r.conversation_id], user_id=r.user_id
        )
    },
    "UpdateMemory": lambda r: {"update_mask": _mask("content")},
    "UpdateTenant": lambda r: {"update_mask": _mask("display_name")},
    "SupersedeMemory": lambda r: {"memory": memory_pb2.Memory(content="replacement")},
    "PutDocument": lambda r: {
        "document": document_pb2.Document(id=r.document_id, content="new document text")
    },
    "UploadDocument": lambda r: {
        "header": document_pb2.PutDocumentRequest(document=document_pb2.Document(id=r.document_id))
    },
    "ListDocuments": lambda r: {
        "filter": document_pb2.DocumentFilter(user_id=r.user_id, namespace_prefix=r.namespace)
    },
    "SearchDocuments": lambda r: {
        "filter": document_pb2.DocumentFilter(user_id=r.user_id, namespace_prefix=r.namespace)
    },
    "CreateMemory": lambda r: {
        "memory": memory_pb2.Memory(namespace=r.namespace, key=r.memory_key, content="upserted"),
        "upsert": True,
    },
}


def build_request(rpc: Rpc, res: Resources) -> pb_message.Message:
    """A well-formed request for ``rpc`` whose every id names one of ``res``.

    Fails for a request field named like an id that it cannot fill: a new
    RPC's ids must be taught here rather than left empty.
    """
    values = {name: make(res) for name, make in _FIELDS.items()}
    values.update(_OVERRIDES.get(rpc.name, lambda r: {})(res))
    request = rpc.input()
    for field in rpc.input.DESCRIPTOR.fields:
        if field.name in values:
            assign(request, field, values[field.name])
        elif field.name.endswith(("_id", "_ids")) and field.name not in _NOT_IDS:
            raise KeyError(f"no value for {rpc}.{field.name}: add it to _FIELDS")
    return request


def assign(message: pb_message.Message, field: FieldDescriptor, value: Any) -> None:
    if field.is_repeated:
        getattr(message, field.name).extend(value)
    elif isinstance(value, dict):
        value = message_factory.GetMessageClass(field.message_type)(**value)
        getattr(message, field.name).CopyFrom(value)
    elif field.message_type is not None:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


# The messages a client-streaming RPC sends after the one build_request makes.
_STREAM_TAILS: dict[str, Callable[[], list[pb_message.Message]]] = {
    "UploadDocument": lambda: [document_pb2.UploadDocumentRequest(content=b"uploaded text")],
}
