"""ADK's own Runner on MemorydSessionService and MemorydMemoryService (a scripted model, no LLM).

The agent remembers a preference in one session; in a later session it calls
ADK's load_memory tool, which searches memoryd, and answers from what it found.
The runner's events, function calls and output_key state all persist.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.tools.load_memory_tool import load_memory_tool
from google.genai import types

from memoryd.integrations.adk import MemorydMemoryService, MemorydSessionService
from tests.conftest import ServerThread, TenantKeys


class ScriptedModel(BaseLlm):
    """Answers "Noted." to a statement; to a question, looks in memory first."""

    requests: list[LlmRequest] = []  # noqa: RUF012 - pydantic field, given per instance

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        del stream
        self.requests.append(llm_request)
        last = llm_request.contents[-1].parts or []
        said = " ".join(p.text for p in last if p.text)
        if any(p.function_response for p in last):
            found = str(last[0].function_response.response)  # type: ignore[union-attr]
            answer = "A window seat." if "window seat" in found else "I don't know."
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=answer)]))
        elif said.endswith("?"):
            call = types.FunctionCall(name="load_memory", args={"query": said})
            yield LlmResponse(
                content=types.Content(role="model", parts=[types.Part(function_call=call)])
            )
        else:
            yield LlmResponse(
                content=types.Content(role="model", parts=[types.Part(text="Noted.")])
            )


def user_says(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


def test_runner_remembers_across_sessions(
    embedding_memoryd: ServerThread, embed_tenant: TenantKeys
) -> None:
    async def run() -> None:
        sessions = MemorydSessionService(embedding_memoryd.addr, api_key=embed_tenant.member)
        memory = MemorydMemoryService(embedding_memoryd.addr, api_key=embed_tenant.member)
        model = ScriptedModel(model="scripted", requests=[])
        agent = LlmAgent(
            name="assistant", model=model, tools=[load_memory_tool], output_key="last_reply"
        )
        runner = Runner(
            agent=agent, app_name="travel", session_service=sessions, memory_service=memory
        )

        first = await sessions.create_session(app_name="travel", user_id="u7", session_id="s-1")
        replies = [
            e
            async for e in runner.run_async(
                user_id="u7",
                session_id=first.id,
                new_message=user_says("I always book a window seat"),
            )
        ]
        assert [p.text for e in replies if e.content for p in e.content.parts or ()] == ["Noted."]
        stored = await sessions.get_session(app_name="travel", user_id="u7", session_id="s-1")
        assert stored is not None
        assert [e.author for e in stored.events] == ["user", "assistant"]
        assert stored.state["last_reply"] == "Noted."
        await memory.add_session_to_memory(stored)

        await sessions.create_session(app_name="travel", user_id="u7", session_id="s-2")
        events: list[Any] = [
            e
            async for e in runner.run_async(
                user_id="u7", session_id="s-2", new_message=user_says("Which seat do I like?")
            )
        ]
        assert events[-1].content.parts[0].text == "A window seat."
        later = await sessions.get_session(app_name="travel", user_id="u7", session_id="s-2")
        assert later is not None
        kinds = [
            "call"
            if e.get_function_calls()
            else "result"
            if e.get_function_responses()
            else e.author
            for e in later.events
        ]
        assert kinds == ["user", "call", "result", "assistant"]
        assert later.state["last_reply"] == "A window seat."
        result = later.events[2].get_function_responses()[0].response
        assert "I always book a window seat" in str(result)

    asyncio.run(run())
