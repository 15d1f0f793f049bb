"""``AsyncClient.conversations``: the asyncio twin of ``conversations.py``, method for method."""

from __future__ import annotations

# ruff: noqa: ASYNC109 - `timeout` is the gRPC deadline of the call, not an asyncio timeout.
import builtins
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from memoryd._client import convert
from memoryd._client import types as t
from memoryd._client.conversation_calls import (
    SERVICE,
    MessageInput,
    append_request,
    append_result,
    conversation_fields,
    conversations_page,
    list_messages_request,
    list_request,
    messages_page,
    search_request,
    search_results,
    update_request,
    window,
)
from memoryd._client.transport import AsyncTransport
from memoryd.v1 import conversation_pb2 as pb


class AsyncConversations:
    """Conversations and their messages, on an asyncio channel."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def create(
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
            conversation=conversation_fields(
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
        response = await self._t.call(
            SERVICE + "CreateConversation",
            request,
            pb.CreateConversationResponse,
            retryable=True,
            timeout=timeout,
        )
        return convert.conversation(response.conversation)

    async def get(self, conversation_id: str, *, timeout: float | None = None) -> t.Conversation:
        """Get a conversation with its totals; NotFound if there is none."""
        response = await self._t.call(
            SERVICE + "GetConversation",
            pb.GetConversationRequest(conversation_id=conversation_id),
            pb.GetConversationResponse,
            retryable=True,
            timeout=timeout,
        )
        return convert.conversation(response.conversation)

    async def list(
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
        request = list_request(
            user_id=user_id,
            agent_id=agent_id,
            app_name=app_name,
            status=status,
            page_size=page_size,
            page_token=page_token,
        )
        response = await self._t.call(
            SERVICE + "ListConversations",
            request,
            pb.ListConversationsResponse,
            retryable=True,
            timeout=timeout,
        )
        return conversations_page(response)

    async def iter(
        self,
        *,
        user_id: str = "",
        agent_id: str = "",
        app_name: str = "",
        status: t.ConversationStatus | None = None,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[t.Conversation]:
        """Every matching conversation, fetching pages as needed (``timeout`` is per page)."""
        token = ""
        while True:
            page = await self.list(
                user_id=user_id,
                agent_id=agent_id,
                app_name=app_name,
                status=status,
                page_size=page_size,
                page_token=token,
                timeout=timeout,
            )
            for item in page.items:
                yield item
            token = page.next_page_token
            if not token:
                return

    async def update(
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
        request = update_request(
            conversation_id,
            title=title,
            status=status,
            summary=summary,
            metadata=metadata,
            state=state,
            expected_version=expected_version,
        )
        response = await self._t.call(
            SERVICE + "UpdateConversation",
            request,
            pb.UpdateConversationResponse,
            retryable=False,
            timeout=timeout,
        )
        return convert.conversation(response.conversation)

    async def delete(self, conversation_id: str, *, timeout: float | None = None) -> int:
        """Delete a conversation and its messages; returns how many messages went with it."""
        response = await self._t.call(
            SERVICE + "DeleteConversation",
            pb.DeleteConversationRequest(conversation_id=conversation_id),
            pb.DeleteConversationResponse,
            retryable=False,
            timeout=timeout,
        )
        return response.deleted_message_count

    async def append(
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
        request = append_request(
            conversation_id,
            messages,
            request_id=request_id,
            create_if_missing=create_if_missing,
            user_id=user_id,
            agent_id=agent_id,
            app_name=app_name,
            title=title,
        )
        response = await self._t.call(
            SERVICE + "AppendMessages",
            request,
            pb.AppendMessagesResponse,
            retryable=True,
            timeout=timeout,
        )
        return append_result(response, request)

    async def list_messages(
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
        request = list_messages_request(
            conversation_id,
            newest_first=newest_first,
            start_seq=start_seq,
            page_size=page_size,
            page_token=page_token,
        )
        response = await self._t.call(
            SERVICE + "ListMessages",
            request,
            pb.ListMessagesResponse,
            retryable=True,
            timeout=timeout,
        )
        return messages_page(response)

    async def iter_messages(
        self,
        conversation_id: str,
        *,
        newest_first: bool = False,
        start_seq: int | None = None,
        page_size: int = 0,
        timeout: float | None = None,
    ) -> AsyncIterator[t.Message]:
        """Every message of a conversation, fetching pages as needed."""
        token = ""
        while True:
            page = await self.list_messages(
                conversation_id,
                newest_first=newest_first,
                start_seq=start_seq,
                page_size=page_size,
                page_token=token,
                timeout=timeout,
            )
            for item in page.items:
                yield item
            token = page.next_page_token
            if not token:
                return

    async def context_window(
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
        response = await self._t.call(
            SERVICE + "GetContextWindow",
            request,
            pb.GetContextWindowResponse,
            retryable=True,
            timeout=timeout,
        )
        return window(response)

    async def search(
        self,
        *,
        query_text: str = "",
        query_embedding: t.Embedding | None = None,
        filter: t.MessageFilter | None = None,
        top_k: int = 0,
        mode: t.SearchMode | None = None,
        text_match: t.TextMatch | None = None,
        fusion: t.Fusion | None = None,
        embedding_model: str = "",
        timeout: float | None = None,
    ) -> builtins.list[t.MessageSearchResult]:
        """Past messages across the tenant's conversations that match, best first.

        The same modes as ``memories.search``; with the server's embedder on,
        messages are found by meaning shortly after they are appended.
        """
        request = search_request(
            query_text=query_text,
            query_embedding=query_embedding,
            filter=filter,
            top_k=top_k,
            mode=mode,
            text_match=text_match,
            fusion=fusion,
            embedding_model=embedding_model,
        )
        response = await self._t.call(
            SERVICE + "SearchMessages",
            request,
            pb.SearchMessagesResponse,
            retryable=True,
            timeout=timeout,
        )
        return search_results(response)

    async def set_feedback(
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
        response = await self._t.call(
            SERVICE + "SetMessageFeedback",
            request,
            pb.SetMessageFeedbackResponse,
            retryable=False,
            timeout=timeout,
        )
        return convert.message(response.message)
