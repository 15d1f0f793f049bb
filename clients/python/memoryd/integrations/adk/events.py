"""How ADK events map onto memoryd messages, and back.

An event is one message: its text is the message's content (what the context
window, SearchMessages and people read), its author the message's name, and
the whole event, as ADK's own JSON, sits in the message's metadata so that it
comes back exactly (bytes, function calls, actions and all).
"""

from __future__ import annotations

from typing import Any

from google.adk.events import Event

from memoryd._client import types as t

# The metadata field holding the event's JSON: a string, so numbers and bytes survive as written.
EVENT_FIELD = "adk_event"


def event_text(event: Event) -> str:
    """The event's text parts, joined."""
    if event.content is None or not event.content.parts:
        return ""
    return "\n".join(part.text for part in event.content.parts if part.text)


def _role(event: Event) -> t.Role:
    if event.author == "user":
        return "user"
    if event.get_function_responses():
        return "tool"
    return "assistant"


def _content(event: Event) -> str:
    """What the message says: the text, else what the event carries (never empty)."""
    if text := event_text(event):
        return text
    if calls := event.get_function_calls():
        return "(calls " + ", ".join(c.name or "?" for c in calls) + ")"
    if responses := event.get_function_responses():
        return "(results of " + ", ".join(r.name or "?" for r in responses) + ")"
    return f"({event.author} event without text)"


def to_message(event: Event) -> t.NewMessage:
    """The message that records ``event``."""
    usage = event.usage_metadata
    return t.NewMessage(
        role=_role(event),
        content=_content(event),
        name=event.author,
        token_count=(usage.total_token_count or 0) if usage else 0,
        metadata={
            EVENT_FIELD: event.model_dump_json(exclude_none=True, by_alias=False),
            "invocation_id": event.invocation_id,
        },
    )


def from_message(message: t.Message) -> Event:
    """The event a message records."""
    stored: Any = message.metadata.get(EVENT_FIELD)
    if isinstance(stored, str):
        return Event.model_validate_json(stored)
    # A message some other client appended: an event with its text.
    from google.genai import types as genai

    role = "user" if message.role == "user" else "model"
    return Event(
        id=message.id,
        author=message.name or message.role,
        content=genai.Content(role=role, parts=[genai.Part(text=message.content)]),
        timestamp=message.create_time.timestamp() if message.create_time else 0.0,
    )
