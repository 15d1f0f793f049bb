"""A LangGraph agent that stores and recalls through MemorydStore (a fake chat model, no LLM).

The graph is the one LangGraph's long-term memory guide builds: a node writes
what the user says to the store, another searches it and puts what it finds
in front of the model. Two threads of the same user share the memory: the
second recalls what the first stored, sync and async alike.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.store.base import BaseStore

from memoryd.integrations.langgraph import MemorydStore
from tests.conftest import ServerThread, TenantKeys


class RecordingModel(GenericFakeChatModel):
    """The fake chat model, remembering every prompt it was given."""

    prompts: list[list[BaseMessage]] = []  # noqa: RUF012 - pydantic field, one list per model

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        self.prompts.append(list(input))
        return super().invoke(input, config, **kwargs)

    async def ainvoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        self.prompts.append(list(input))
        return await super().ainvoke(input, config, **kwargs)


def build_graph(model: RecordingModel) -> StateGraph[MessagesState]:
    def remember(
        state: MessagesState, config: RunnableConfig, *, store: BaseStore
    ) -> dict[str, Any]:
        user = config["configurable"]["user_id"]
        said = state["messages"][-1].content
        if isinstance(said, str) and said.lower().startswith("remember"):
            store.put(
                ("memories", user), str(uuid.uuid4()), {"text": said.split(":", 1)[1].strip()}
            )
        return {}

    def respond(
        state: MessagesState, config: RunnableConfig, *, store: BaseStore
    ) -> dict[str, Any]:
        user = config["configurable"]["user_id"]
        question = str(state["messages"][-1].content)
        found = store.search(("memories", user), query=question, limit=3)
        facts = "\n".join(item.value["text"] for item in found)
        prompt = [SystemMessage(f"What you know about the user:\n{facts}"), *state["messages"]]
        return {"messages": [model.invoke(prompt)]}

    graph = StateGraph(MessagesState)
    graph.add_node("remember", remember)
    graph.add_node("respond", respond)
    graph.add_edge(START, "remember")
    graph.add_edge("remember", "respond")
    return graph


def test_agent_recalls_across_threads(store: MemorydStore) -> None:
    model = RecordingModel(
        messages=iter([AIMessage("Noted."), AIMessage("Noted."), AIMessage("A window seat.")]),
        prompts=[],
    )
    app = build_graph(model).compile(store=store)
    user: RunnableConfig = {"configurable": {"user_id": "user-7", "thread_id": "t1"}}
    app.invoke(
        {"messages": [HumanMessage("Remember: I prefer a window seat on long flights")]}, user
    )
    app.invoke({"messages": [HumanMessage("Remember: my dog is called Biscuit")]}, user)

    other_thread: RunnableConfig = {"configurable": {"user_id": "user-7", "thread_id": "t2"}}
    answer = app.invoke(
        {"messages": [HumanMessage("Where do I like to sit on a plane?")]}, other_thread
    )
    assert answer["messages"][-1].content == "A window seat."
    system = model.prompts[-1][0].content
    assert isinstance(system, str)
    assert system.splitlines()[1] == "I prefer a window seat on long flights"
    assert len(store.search(("memories", "user-7"))) == 2

    # Another user of the same app recalls nothing of user-7's.
    stranger: RunnableConfig = {"configurable": {"user_id": "user-8", "thread_id": "t3"}}
    model.messages = iter([AIMessage("I don't know.")])
    app.invoke({"messages": [HumanMessage("Where do I like to sit?")]}, stranger)
    assert model.prompts[-1][0].content == "What you know about the user:\n"


def test_agent_async(embedding_memoryd: ServerThread, embed_tenant: TenantKeys) -> None:
    """The same graph, run with ainvoke: its nodes' store calls go through abatch."""

    async def run() -> None:
        store = MemorydStore(embedding_memoryd.addr, api_key=embed_tenant.member)
        model = RecordingModel(
            messages=iter([AIMessage("Noted."), AIMessage("Lisbon.")]), prompts=[]
        )

        async def remember(
            state: MessagesState, config: RunnableConfig, *, store: BaseStore
        ) -> dict[str, Any]:
            said = str(state["messages"][-1].content)
            if said.startswith("Remember:"):
                await store.aput(
                    ("memories", "u"), "home", {"text": said.removeprefix("Remember:").strip()}
                )
            return {}

        async def respond(
            state: MessagesState, config: RunnableConfig, *, store: BaseStore
        ) -> dict[str, Any]:
            found = await store.asearch(("memories", "u"), query=str(state["messages"][-1].content))
            prompt = [SystemMessage("\n".join(i.value["text"] for i in found)), *state["messages"]]
            return {"messages": [await model.ainvoke(prompt)]}

        graph = StateGraph(MessagesState)
        graph.add_node("remember", remember)
        graph.add_node("respond", respond)
        graph.add_edge(START, "remember")
        graph.add_edge("remember", "respond")
        app = graph.compile(store=store)
        await app.ainvoke({"messages": [HumanMessage("Remember: I live in Lisbon")]})
        answer = await app.ainvoke({"messages": [HumanMessage("Which city is my home?")]})
        assert answer["messages"][-1].content == "Lisbon."
        assert model.prompts[-1][0].content == "I live in Lisbon"
        item = await store.aget(("memories", "u"), "home")
        assert item is not None
        assert item.value == {"text": "I live in Lisbon"}
        await store.aclose()

    asyncio.run(run())
