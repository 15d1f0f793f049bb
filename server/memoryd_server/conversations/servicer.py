"""ConversationService: validate requests, call the store, map rows to protos."""

from __future__ import annotations

from typing import Any

import grpc.aio
from psycopg_pool import AsyncConnectionPool

from memoryd.v1 import conversation_pb2 as pb
from memoryd.v1 import conversation_pb2_grpc as pb_grpc
from memoryd_server import quotas, tenancy
from memoryd_server.config import Settings
from memoryd_server.conversations import convert, models, store
from memoryd_server.conversations import messages as message_store
from memoryd_server.conversations.search import search_messages
from memoryd_server.embeddings.service import Embeddings
from memoryd_server.errors import InvalidArgument
from memoryd_server.ids import check_resource_id, parse_uuid, uuid7
from memoryd_server.pagination import PageTokens, invalid_token, page_size
from memoryd_server.protoconv import request_hash, struct_to_dict
from memoryd_server.search_query import MODES_PB, resolve_query
from memoryd_server.validation import check_chars, check_enum, check_text

Context = grpc.aio.ServicerContext[Any, Any]

MAX_MESSAGES_PER_APPEND = 1000
# The most message bytes AppendMessages echoes back (return_messages): with the
# ids, times and conversation the answer stays under the 4 MiB that gRPC
# clients receive by default, so a stored append is never reported as failed.
MAX_ECHO_BYTES = 3 * 1024 * 1024
MAX_WINDOW_MESSAGES = 1000
DEFAULT_WINDOW_MESSAGES = 20
MAX_SEARCH_RESULTS = 100
DEFAULT_SEARCH_RESULTS = 10


class ConversationServicer(pb_grpc.ConversationServiceServicer):
    """The proto boundary of ConversationService."""

    def __init__(self, pool: AsyncConnectionPool, settings: Settings, tokens: PageTokens,
                 embeddings: Embeddings) -> None:  # fmt: skip
        self._pool = pool
        self._embeddings = embeddings
        self._settings = settings
        self._tokens = tokens

    # -- validation -------------------------------------------------------

    def _new_conversation(
        self, field: str, conv: pb.Conversation, conversation_id: str
    ) -> models.NewConversation:
        limit = self._settings.max_content_bytes
        return models.NewConversation(
            id=conversation_id,
            user_id=check_chars(f"{field}.user_id", conv.user_id, 256),
            agent_id=check_chars(f"{field}.agent_id", conv.agent_id, 256),
            app_name=check_chars(f"{field}.app_name", conv.app_name, 256),
            title=check_chars(f"{field}.title", conv.title, 1024),
            metadata=struct_to_dict(f"{field}.metadata", conv.metadata, limit),
            state=struct_to_dict(f"{field}.state", conv.state, limit),
        )

    def _new_message(self, field: str, msg: pb.Message) -> models.NewMessage:
        role = convert.ROLE_TO_DB.get(
            check_enum(f"{field}.role", msg.role, pb.MessageRole.DESCRIPTOR)
        )
        if role is None:
            raise InvalidArgument(f"{field}.role", "is required")
        limit = self._settings.max_content_bytes
        content = check_text(
            f"{field}.content", quotas.check_content(f"{field}.content", msg.content, limit), limit
        )
        if not content and not msg.tool_calls:
            raise InvalidArgument(f"{field}.content", "is empty and the message has no tool_calls")
        if msg.token_count < 0:
            raise InvalidArgument(f"{field}.token_count", "must not be negative")
        tool_calls = []
        for i, call in enumerate(msg.tool_calls):
            path = f"{field}.tool_calls[{i}]"
            if not call.name:
                raise InvalidArgument(f"{path}.name", "is required")
            tool_calls.append(
                {
                    "id": check_chars(f"{path}.id", call.id, 256),
                    "name": check_chars(f"{path}.name", call.name, 256),
                    "arguments": struct_to_dict(f"{path}.arguments", call.arguments, limit),
                }
            )
        return models.NewMessage(
            role=role,
            content=content,
            name=check_chars(f"{field}.name", msg.name, 256),
            tool_calls=tool_calls,
            tool_call_id=check_chars(f"{field}.tool_call_id", msg.tool_call_id, 256),
            token_count=msg.token_count,
            model=check_chars(f"{field}.model", msg.model, 256),
            metadata=struct_to_dict(f"{field}.metadata", msg.metadata, limit),
        )

    # -- RPCs -------------------------------------------------------------

    async def CreateConversation(
        self, request: pb.CreateConversationRequest, context: Context
    ) -> pb.CreateConversationResponse:
        conversation_id = (
            check_resource_id("conversation_id", request.conversation_id)
            if request.conversation_id
            else str(uuid7())
        )
        new = self._new_conversation("conversation", request.conversation, conversation_id)
        created = await store.create_conversation(
            self._pool,
            tenant_id=tenancy.tenant_of(context),
            actor=tenancy.actor_of(context),
            actor_name=tenancy.actor_name_of(context),
            new=new,
            request_id=check_chars("request_id", request.request_id, 128),
            request_hash=request_hash(request),
            max_conversations=quotas.current().max_conversations,
        )
        return pb.CreateConversationResponse(conversation=convert.conversation_to_pb(created))

    async def GetConversation(
        self, request: pb.GetConversationRequest, context: Context
    ) -> pb.GetConversationResponse:
        found = await store.get_conversation(
            self._pool,
            tenant_id=tenancy.tenant_of(context),
            conversation_id=check_resource_id("conversation_id", request.conversation_id),
        )
        return pb.GetConversationResponse(conversation=convert.conversation_to_pb(found))

    async def ListConversations(
        self, request: pb.ListConversationsRequest, context: Context
    ) -> pb.ListConversationsResponse:
        status = check_enum("status", request.status, pb.ConversationStatus.DESCRIPTOR)
        filter_ = models.ConversationFilter(
            user_id=check_chars("user_id", request.user_id, 256),
            agent_id=check_chars("agent_id", request.agent_id, 256),
            app_name=check_chars("app_name", request.app_name, 256),
            status=convert.STATUS_TO_DB.get(status),
        )
        tenant = tenancy.tenant_of(context)
        query = {"tenant": tenant, **vars(filter_)}
        limit = page_size(request.page_size)
        position = self._tokens.decode(request.page_token, "conversations", query)
        after = None
        if position is not None:
            after = _decode_activity(position)
        rows = await store.list_conversations(
            self._pool, tenant_id=tenant, filter=filter_, limit=limit + 1, after=after
        )
        rows, token = self._tokens.next_page(
            rows, limit, "conversations", query, lambda c: [c.last_activity_time.isoformat(), c.id]
        )
        return pb.ListConversationsResponse(
            conversations=[convert.conversation_to_pb(c) for c in rows], next_page_token=token
        )

    async def UpdateConversation(
        self, request: pb.UpdateConversationRequest, context: Context
    ) -> pb.UpdateConversationResponse:
        conversation_id = check_resource_id("conversation.id", request.conversation.id)
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument(
                "update_mask",
                "must name at least one of " + ", ".join(sorted(models.UPDATABLE_FIELDS)),
            )
        conv = request.conversation
        limit = self._settings.max_content_bytes
        changes: dict[str, Any] = {}
        for path in paths:
            if path not in models.UPDATABLE_FIELDS:
                raise InvalidArgument(
                    "update_mask",
                    f"{path!r} is not an updatable field; use "
                    + ", ".join(sorted(models.UPDATABLE_FIELDS)),
                )
            if path == "title":
                changes["title"] = check_chars("conversation.title", conv.title, 1024)
            elif path == "summary":
                changes["summary"] = check_text("conversation.summary", conv.summary, limit)
            elif path == "status":
                status = convert.STATUS_TO_DB.get(
                    check_enum("conversation.status", conv.status, pb.ConversationStatus.DESCRIPTOR)
                )
                if status is None:
                    raise InvalidArgument("conversation.status", "must not be UNSPECIFIED")
                changes["status"] = status
            else:
                changes[path] = struct_to_dict(f"conversation.{path}", getattr(conv, path), limit)
        expected = request.expected_version if request.HasField("expected_version") else None
        updated = await store.update_conversation(
            self._pool,
            tenant_id=tenancy.tenant_of(context),
            actor=tenancy.actor_of(context),
            actor_name=tenancy.actor_name_of(context),
            conversation_id=conversation_id,
            changes=changes,
            expected_version=expected,
        )
        return pb.UpdateConversationResponse(conversation=convert.conversation_to_pb(updated))

    async def DeleteConversation(
        self, request: pb.DeleteConversationRequest, context: Context
    ) -> pb.DeleteConversationResponse:
        count = await store.delete_conversation(
            self._pool,
            tenant_id=tenancy.tenant_of(context),
            conversation_id=check_resource_id("conversation_id", request.conversation_id),
        )
        return pb.DeleteConversationResponse(deleted_message_count=count)

    async def AppendMessages(
        self, request: pb.AppendMessagesRequest, context: Context
    ) -> pb.AppendMessagesResponse:
        conversation_id = check_resource_id("conversation_id", request.conversation_id)
        if not request.messages:
            raise InvalidArgument("messages", "must hold at least one message")
        if len(request.messages) > MAX_MESSAGES_PER_APPEND:
            raise InvalidArgument("messages", f"must hold at most {MAX_MESSAGES_PER_APPEND}")
        messages = [self._new_message(f"messages[{i}]", m) for i, m in enumerate(request.messages)]
        if request.return_messages:
            size = sum(m.ByteSize() for m in request.messages)
            if size > MAX_ECHO_BYTES:
                raise InvalidArgument(
                    "return_messages",
                    f"the messages take {size} bytes; they are echoed up to {MAX_ECHO_BYTES}",
                )
        create = None
        if request.create_if_missing:
            create = self._new_conversation("conversation", request.conversation, conversation_id)
        tenant = tenancy.tenant_of(context)
        serving = await self._embeddings.registry.serving(tenant)
        appended, conversation = await message_store.append_messages(
            self._pool,
            tenant_id=tenant,
            actor=tenancy.actor_of(context),
            actor_name=tenancy.actor_name_of(context),
            conversation_id=conversation_id,
            messages=messages,
            request_id=check_chars("request_id", request.request_id, 128),
            request_hash=request_hash(request, ignore=("return_messages",)),
            create_if_missing=create,
            max_conversations=quotas.current().max_conversations,
            embed_model=serving.name if self._embeddings.can_embed(serving) else None,
        )
        to_pb = convert.message_to_pb if request.return_messages else convert.appended_to_pb
        return pb.AppendMessagesResponse(
            messages=[to_pb(m) for m in appended],
            conversation=convert.conversation_to_pb(conversation),
        )

    async def ListMessages(
        self, request: pb.ListMessagesRequest, context: Context
    ) -> pb.ListMessagesResponse:
        conversation_id = check_resource_id("conversation_id", request.conversation_id)
        tenant = tenancy.tenant_of(context)
        limit = page_size(request.page_size, default=100)
        start = request.start_seq if request.HasField("start_seq") else None
        if start is not None and start < 0:
            raise InvalidArgument("start_seq", "must not be negative")
        query = {
            "tenant": tenant,
            "conversation": conversation_id,
            "newest_first": request.newest_first,
            "start": start,
        }
        position = self._tokens.decode(request.page_token, "messages", query)
        from_seq = start
        if position is not None:
            if len(position) != 1 or not isinstance(position[0], int):
                raise invalid_token()
            from_seq = position[0]
        rows = await message_store.list_messages(
            self._pool,
            tenant_id=tenant,
            conversation_id=conversation_id,
            limit=limit + 1,
            newest_first=request.newest_first,
            from_seq=from_seq,
        )
        token = ""
        if len(rows) > limit:
            token = self._tokens.encode("messages", query, [rows[limit].seq])
            rows = rows[:limit]
        return pb.ListMessagesResponse(
            messages=[convert.message_to_pb(m) for m in rows], next_page_token=token
        )

    async def GetContextWindow(
        self, request: pb.GetContextWindowRequest, context: Context
    ) -> pb.GetContextWindowResponse:
        conversation_id = check_resource_id("conversation_id", request.conversation_id)
        if request.max_messages < 0:
            raise InvalidArgument("max_messages", "must not be negative")
        if request.max_messages > MAX_WINDOW_MESSAGES:
            raise InvalidArgument("max_messages", f"must be at most {MAX_WINDOW_MESSAGES}")
        if request.max_tokens < 0:
            raise InvalidArgument("max_tokens", "must not be negative")
        max_tokens = request.max_tokens or None
        max_messages = request.max_messages or (
            MAX_WINDOW_MESSAGES if max_tokens else DEFAULT_WINDOW_MESSAGES
        )
        window = await message_store.get_context_window(
            self._pool,
            tenant_id=tenancy.tenant_of(context),
            conversation_id=conversation_id,
            max_messages=max_messages,
            max_tokens=max_tokens,
            include_system_messages=request.include_system_messages,
        )
        return pb.GetContextWindowResponse(
            messages=[convert.message_to_pb(m) for m in window.messages],
            summary=window.summary,
            total_tokens=window.total_tokens,
            omitted_message_count=window.omitted_message_count,
        )

    async def SetMessageFeedback(
        self, request: pb.SetMessageFeedbackRequest, context: Context
    ) -> pb.SetMessageFeedbackResponse:
        conversation_id = check_resource_id("conversation_id", request.conversation_id)
        message_id = parse_uuid("message_id", request.message_id)
        rating = convert.RATING_TO_DB.get(
            check_enum("rating", request.rating, pb.FeedbackRating.DESCRIPTOR)
        )
        if rating is None:
            raise InvalidArgument("rating", "must be POSITIVE or NEGATIVE")
        updated = await message_store.set_message_feedback(
            self._pool,
            tenant_id=tenancy.tenant_of(context),
            conversation_id=conversation_id,
            message_id=message_id,
            rating=rating,
            comment=check_chars("comment", request.comment, 4096),
        )
        return pb.SetMessageFeedbackResponse(message=convert.message_to_pb(updated))

    async def SearchMessages(
        self, request: pb.SearchMessagesRequest, context: Context
    ) -> pb.SearchMessagesResponse:
        tenant = tenancy.tenant_of(context)
        filter_ = convert.message_filter("filter", request.filter)
        if not 0 <= request.top_k <= MAX_SEARCH_RESULTS:
            raise InvalidArgument("top_k", f"must be 1 to {MAX_SEARCH_RESULTS}")
        query = await resolve_query(
            self._embeddings, tenant, query_text=request.query_text,
            query_embedding=request.query_embedding, embedding_model=request.embedding_model,
            mode=request.mode, text_match=request.text_match, fusion=request.fusion,
        )  # fmt: skip
        results = await search_messages(
            self._pool, tenant_id=tenant, filter=filter_, query=query,
            top_k=request.top_k or DEFAULT_SEARCH_RESULTS,
        )  # fmt: skip
        return pb.SearchMessagesResponse(
            results=[
                pb.MessageSearchResult(
                    message=convert.message_to_pb(r.message), score=r.score.score,
                    similarity_score=r.score.similarity, text_score=r.score.text,
                    vector_rank=r.vector_rank, text_rank=r.text_rank,
                ) for r in results
            ],
            mode=MODES_PB[query.mode],
            embedding_model=query.model_name,
        )  # fmt: skip


def _decode_activity(position: list[Any]) -> tuple[Any, str]:
    import datetime as dt

    try:
        when, last_id = position
        return dt.datetime.fromisoformat(when), str(last_id)
    except (TypeError, ValueError):
        raise invalid_token() from None
