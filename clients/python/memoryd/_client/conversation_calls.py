"""Requests and responses of ConversationService calls, shared by the sync and async clients."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import field_mask_pb2

from memoryd._client import convert
from memoryd._client import types as t
from memoryd._client.memory_calls import search_options
from memoryd.v1 import conversation_pb2 as pb

SERVICE = "/memoryd.v1.ConversationService/"

# RPC name -> client method name; tests check it covers the whole service.
RPC_METHODS: dict[str, str] = {
    "CreateConversation": "create",
    "GetConversation": "get",
    "ListConversations": "list",
    "UpdateConversation": "update",
    "DeleteConversation": "delete",
    "AppendMessages": "append",
    "ListMessages": "list_messages",
    "GetContextWindow": "context_window",
    "SetMessageFeedback": "set_feedback",
    "SearchMessages": "search",
}

# Messages accepted by append: NewMessage, or a dict of its field names.
MessageInput = t.NewMessage | Mapping[str, Any]


def conversation_fields(
    *,
    user_id: str = "",
    agent_id: str = "",
    app_name: str = "",
    title: str = "",
    metadata: Mapping[str, Any] | None = None,
    state: Mapping[str, Any] | None = None,
) -> pb.Conversation:
    return pb.Conversation(
        user_id=user_id,
        agent_id=agent_id,
        app_name=app_name,
        title=title,
        metadata=convert.struct(metadata),
        state=convert.struct(state),
    )


def update_request(
    conversation_id: str,
    *,
    title: str | None,
    status: t.ConversationStatus | None,
    summary: str | None,
    metadata: Mapping[str, Any] | None,
    state: Mapping[str, Any] | None,
    expected_version: int | None,
) -> pb.UpdateConversationRequest:
    conv = pb.Conversation(id=conversation_id)
    paths = []
    if title is not None:
        conv.title = title
        paths.append("title")
    if status is not None:
        conv.status = convert.enum_value(pb.ConversationStatus, status, "conversation.status")
        paths.append("status")
    if summary is not None:
        conv.summary = summary
        paths.append("summary")
    if metadata is not None:
        conv.metadata.update(dict(metadata))
        paths.append("metadata")
    if state is not None:
        conv.state.update(dict(state))
        paths.append("state")
    request = pb.UpdateConversationRequest(
        conversation=conv, update_mask=field_mask_pb2.FieldMask(paths=paths)
    )
    if expected_version is not None:
        request.expected_version = expected_version
    return request


def append_request(
    conversation_id: str,
    messages: Sequence[MessageInput],
    *,
    request_id: str | None,
    create_if_missing: bool,
    user_id: str,
    agent_id: str,
    app_name: str,
    title: str,
) -> pb.AppendMessagesRequest:
    return pb.AppendMessagesRequest(
        conversation_id=conversation_id,
        messages=[convert.new_message_pb(m, i) for i, m in enumerate(messages)],
        request_id=request_id or str(uuid.uuid4()),
        create_if_missing=create_if_missing,
        conversation=conversation_fields(
            user_id=user_id, agent_id=agent_id, app_name=app_name, title=title
        )
        if create_if_missing
        else None,
    )


def list_request(
    *,
    user_id: str,
    agent_id: str,
    app_name: str,
    status: t.ConversationStatus | None,
    page_size: int,
    page_token: str,
) -> pb.ListConversationsRequest:
    return pb.ListConversationsRequest(
        page_size=page_size,
        page_token=page_token,
        user_id=user_id,
        agent_id=agent_id,
        app_name=app_name,
        status=convert.enum_value(pb.ConversationStatus, status, "status"),
    )


def list_messages_request(
    conversation_id: str,
    *,
    newest_first: bool,
    start_seq: int | None,
    page_size: int,
    page_token: str,
) -> pb.ListMessagesRequest:
    request = pb.ListMessagesRequest(
        conversation_id=conversation_id,
        page_size=page_size,
        page_token=page_token,
        newest_first=newest_first,
    )
    if start_seq is not None:
        request.start_seq = start_seq
    return request


def append_result(r: pb.AppendMessagesResponse, sent: pb.AppendMessagesRequest) -> t.AppendResult:
    """The appended messages: what the server assigned, merged into what was sent.

    The server no longer echoes the messages (return_messages), so a large
    append's answer stays small; the request holds the rest of each message.
    """
    messages = []
    for assigned, mine in zip(r.messages, sent.messages, strict=True):
        whole = pb.Message()
        whole.CopyFrom(mine)
        whole.MergeFrom(assigned)
        messages.append(convert.message(whole))
    return t.AppendResult(
        messages=tuple(messages), conversation=convert.conversation(r.conversation)
    )


def window(r: pb.GetContextWindowResponse) -> t.ContextWindow:
    return t.ContextWindow(
        messages=tuple(convert.message(m) for m in r.messages),
        summary=r.summary,
        total_tokens=r.total_tokens,
        omitted_message_count=r.omitted_message_count,
    )


def conversations_page(r: pb.ListConversationsResponse) -> t.Page[t.Conversation]:
    return t.Page(tuple(convert.conversation(c) for c in r.conversations), r.next_page_token)


def messages_page(r: pb.ListMessagesResponse) -> t.Page[t.Message]:
    return t.Page(tuple(convert.message(m) for m in r.messages), r.next_page_token)


def search_request(
    *,
    query_text: str,
    query_embedding: t.Embedding | None,
    filter: t.MessageFilter | None,
    top_k: int,
    mode: t.SearchMode | None,
    text_match: t.TextMatch | None,
    fusion: t.Fusion | None,
    embedding_model: str,
) -> pb.SearchMessagesRequest:
    f = filter or t.MessageFilter()
    return pb.SearchMessagesRequest(
        filter=pb.MessageFilter(
            conversation_ids=convert.strings(f.conversation_ids),
            user_id=f.user_id,
            app_name=f.app_name,
            agent_id=f.agent_id,
            roles=[convert.enum_value(pb.MessageRole, r, "filter.roles") for r in f.roles],
            create_time_start=convert.timestamp(f.create_time_start),
            create_time_end=convert.timestamp(f.create_time_end),
        ),
        query_text=query_text,
        query_embedding=convert.floats(query_embedding),
        embedding_model=embedding_model,
        top_k=top_k,
        **search_options(mode, text_match, fusion),
    )


def search_results(r: pb.SearchMessagesResponse) -> list[t.MessageSearchResult]:
    return [
        t.MessageSearchResult(
            message=convert.message(x.message),
            score=x.score,
            similarity_score=x.similarity_score,
            text_score=x.text_score,
            vector_rank=x.vector_rank,
            text_rank=x.text_rank,
        )
        for x in r.results
    ]
