"""``client.conversations``: typed methods for every ConversationService RPC."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from google.protobuf import field_mask_pb2

from memoryd._client import convert
from memoryd._client import types as t
from memoryd._client.transport import SyncTransport
from memoryd.v1 import conversation_pb2 as pb

_SERVICE = "/memoryd.v1.ConversationService/"

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
}

# Messages accepted by append: NewMessage, or a dict of its field names.
MessageInput = t.NewMessage | Mapping[str, Any]


def _conversation_fields(
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


def _update_request(
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


def _append_request(
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
        conversation=_conversation_fields(
            user_id=user_id, agent_id=agent_id, app_name=app_name, title=title
        )
        if create_if_missing
        else None,
    )


def _list_request(
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


def _list_messages_request(
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


def _append_result(r: pb.AppendMessagesResponse) -> t.AppendResult:
    return t.AppendResult(
        messages=tuple(convert.message(m) for m in r.messages),
        conversation=convert.conversation(r.conversation),
    )


def _window(r: pb.GetContextWindowResponse) -> t.ContextWindow:
    return t.ContextWindow(
        messages=tuple(convert.message(m) for m in r.messages),
        summary=r.summary,
        total_tokens=r.total_tokens,
        omitted_message_count=r.omitted_message_count,
    )


def _conversations_page(r: pb.ListConversationsResponse) -> t.Page[t.Conversation]:
    return t.Page(tuple(convert.conversation(c) for c in r.conversations), r.next_page_token)


def _messages_page(r: pb.ListMessagesResponse) -> t.Page[t.Message]:
    return t.Page(tuple(convert.message(m) for m in r.messages), r.next_page_token)


class Conversations:
    """Conversations and their messages, on a synchronous channel."""

    def __init__(self, transport: SyncTransport) -> None:
        self._t = transport

    def create(
        self,
        *,
        conversation_id: str = "",
        user_id: str = "",
        agent_id: str = "",
        app_name: str = "",
        title: str = "",
        metadata: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> t.Conversation:
        """Create a conversation (the server assigns an id unless given); retried safely."""
        request = pb.CreateConversationRequest(
            conversation=_conversation_fields(
                user_id=user_id,
                agent_id=agent_id,
                app_name=app_name,
                title=title,
                metadata=metadata,
                state=state,
            ),
            conversation_id=conversation_id,
            request_id=request_id or str(uuid.uuid4()),
        )
        response = self._t.call(
            _SERVICE + "CreateConversation",
            request,
            pb.CreateConversationResponse,
            retryable=True,
            timeout=timeout,
        )
        return convert.conversation(response.conversation)

    def get(self, conversation_id: str, *, timeout: float | None = None) -> t.Conversation:
        """Get a conversation with its totals; NotFound if there is none."""
        response = self._t.call(
            _SERVICE + "GetConversation",
            pb.GetConversationRequest(conversation_id=conversation_id),
            pb.GetConversationResponse,
            retryable=True,
            timeout=timeout,
        )
        return convert.conversation(response.conversation)

    def list(
        self,
        *,
        user_id: str = "",
        agent_id: str = "",
        app_name: str = "",
        status: t.ConversationStatus | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> t.Page[t.Conversation]:
        """One page of conversations, most recent activity first."""
        request = _list_request(
            user_id=user_id,
            agent_id=agent_id,
            app_name=app_name,
            status=status,
            page_size=page_size,
            page_token=page_token,
        )
        response = self._t.call(
            _SERVICE + "ListConversations",
            request,
            pb.ListConversationsResponse,
            retryable=True,
            timeout=timeout,
        )
        return _conversations_page(response)

    def iter(
        self,
        *,
        user_id: str = "",
        agent_id: str = "",
        app_name: str = "",
        status: t.ConversationStatus | None = None,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[t.Conversation]:
        """Every matching conversation, fetching pages as needed (``timeout`` is per page)."""
        token = ""
        while True:
            page = self.list(
                user_id=user_id,
                agent_id=agent_id,
                app_name=app_name,
                status=status,
                page_size=page_size,
                page_token=token,
                timeout=timeout,
            )
            yield from page.items
            token = page.next_page_token
            if not token:
                return

    def update(
        self,
        conversation_id: str,
        *,
        title: str | None = None,
        status: t.ConversationStatus | None = None,
        summary: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
        expected_version: int | None = None,
        timeout: float | None = None,
    ) -> t.Conversation:
        """Replace the fields given (None: unchanged); Aborted on a stale expected_version."""
        request = _update_request(
            conversation_id,
            title=title,
            status=status,
            summary=summary,
            metadata=metadata,
            state=state,
            expected_version=expected_version,
        )
        response = self._t.call(
            _SERVICE + "UpdateConversation",
            request,
            pb.UpdateConversationResponse,
            retryable=False,
            timeout=timeout,
        )
        return convert.conversation(response.conversation)

    def delete(self, conversation_id: str, *, timeout: float | None = None) -> int:
        """Delete a conversation and its messages; returns how many messages went with it."""
        response = self._t.call(
            _SERVICE + "DeleteConversation",
            pb.DeleteConversationRequest(conversation_id=conversation_id),
            pb.DeleteConversationResponse,
            retryable=False,
            timeout=timeout,
        )
        return response.deleted_message_count

    def append(
        self,
        conversation_id: str,
        messages: Sequence[MessageInput],
        *,
        create_if_missing: bool = False,
        user_id: str = "",
        agent_id: str = "",
        app_name: str = "",
        title: str = "",
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> t.AppendResult:
        """Append messages in one transaction; retried safely under one request_id.

        With ``create_if_missing`` a missing conversation is created with the
        given user_id, agent_id, app_name and title.
        """
        request = _append_request(
            conversation_id,
            messages,
            request_id=request_id,
            create_if_missing=create_if_missing,
            user_id=user_id,
            agent_id=agent_id,
            app_name=app_name,
            title=title,
        )
        response = self._t.call(
            _SERVICE + "AppendMessages",
            request,
            pb.AppendMessagesResponse,
            retryable=True,
            timeout=timeout,
        )
        return _append_result(response)

    def list_messages(
        self,
        conversation_id: str,
        *,
        newest_first: bool = False,
        start_seq: int | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> t.Page[t.Message]:
        """One page of a conversation's messages."""
        request = _list_messages_request(
            conversation_id,
            newest_first=newest_first,
            start_seq=start_seq,
            page_size=page_size,
            page_token=page_token,
        )
        response = self._t.call(
            _SERVICE + "ListMessages",
            request,
            pb.ListMessagesResponse,
            retryable=True,
            timeout=timeout,
        )
        return _messages_page(response)

    def iter_messages(
        self,
        conversation_id: str,
        *,
        newest_first: bool = False,
        start_seq: int | None = None,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> Iterator[t.Message]:
        """Every message of a conversation, fetching pages as needed."""
        token = ""
        while True:
            page = self.list_messages(
                conversation_id,
                newest_first=newest_first,
                start_seq=start_seq,
                page_size=page_size,
                page_token=token,
                timeout=timeout,
            )
            yield from page.items
            token = page.next_page_token
            if not token:
                return

    def context_window(
        self,
        conversation_id: str,
        *,
        max_messages: int = 0,
        max_tokens: int = 0,
        include_system_messages: bool = False,
        timeout: float | None = None,
    ) -> t.ContextWindow:
        """The recent messages that fit the count and token budget, oldest first."""
        request = pb.GetContextWindowRequest(
            conversation_id=conversation_id,
            max_messages=max_messages,
            max_tokens=max_tokens,
            include_system_messages=include_system_messages,
        )
        response = self._t.call(
            _SERVICE + "GetContextWindow",
            request,
            pb.GetContextWindowResponse,
            retryable=True,
            timeout=timeout,
        )
        return _window(response)

    def set_feedback(
        self,
        conversation_id: str,
        message_id: str,
        rating: t.FeedbackRating,
        *,
        comment: str = "",
        timeout: float | None = None,
    ) -> t.Message:
        """Record feedback on a message, replacing any earlier feedback."""
        request = pb.SetMessageFeedbackRequest(
            conversation_id=conversation_id,
            message_id=message_id,
            rating=convert.enum_value(pb.FeedbackRating, rating, "rating"),
            comment=comment,
        )
        response = self._t.call(
            _SERVICE + "SetMessageFeedback",
            request,
            pb.SetMessageFeedbackResponse,
            retryable=False,
            timeout=timeout,
        )
        return convert.message(response.message)
