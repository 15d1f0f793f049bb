"""Opaque, tamper-checked page tokens bound to the query they continue."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from memoryd_server.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

T = TypeVar("T")


def invalid_token() -> InvalidArgument:
    """The error for a page token that is malformed, altered or holds a wrong position."""
    return InvalidArgument("page_token", "is not a valid page token for this request")


def page_size(requested: int, default: int = DEFAULT_PAGE_SIZE) -> int:
    """The page size to use: ``default`` for 0, INVALID_ARGUMENT out of range."""
    if requested < 0:
        raise InvalidArgument("page_size", "must not be negative")
    if requested > MAX_PAGE_SIZE:
        raise InvalidArgument("page_size", f"must be at most {MAX_PAGE_SIZE}")
    return requested or default


class PageTokens:
    """Signs and checks page tokens with an HMAC key shared by all replicas.

    A token carries the position after the last row of a page (keyset
    pagination) and a digest of the query it belongs to, so a token that was
    altered, or replayed with other filters or for another list, is rejected.
    """

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the page token secret must be at least 16 bytes")
        self._secret = secret

    def encode(self, kind: str, query: Mapping[str, Any], position: list[Any]) -> str:
        """A token for the page after ``position`` of ``kind`` under ``query``."""
        payload = json.dumps(
            {"k": kind, "q": _digest(query), "p": position}, separators=(",", ":")
        ).encode()
        mac = hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]
        return f"{_b64(payload)}.{_b64(mac)}"

    def next_page(
        self,
        rows: list[T],
        limit: int,
        kind: str,
        query: Mapping[str, Any],
        position: Callable[[T], list[Any]],
    ) -> tuple[list[T], str]:
        """``rows``, fetched with ``limit + 1``, cut to a page, and the token after its
        last row (``position`` of it); the token is empty on the last page."""
        if len(rows) <= limit:
            return rows, ""
        rows = rows[:limit]
        return rows, self.encode(kind, query, position(rows[-1]))

    def decode(self, token: str, kind: str, query: Mapping[str, Any]) -> list[Any] | None:
        """The position in ``token`` (None for an empty token), else INVALID_ARGUMENT."""
        if not token:
            return None
        invalid = invalid_token()
        body, dot, signature = token.partition(".")
        if not dot or len(token) > 4096:
            raise invalid
        try:
            payload = _unb64(body)
            mac = _unb64(signature)
        except (binascii.Error, ValueError):
            raise invalid from None
        expected = hmac.new(self._secret, payload, hashlib.sha256).digest()[:16]
        if not hmac.compare_digest(mac, expected):
            raise invalid
        data = json.loads(payload)
        if data.get("k") != kind or data.get("q") != _digest(query):
            raise InvalidArgument(
                "page_token", "was issued for a different request; keep the same filters"
            )
        position = data.get("p")
        if not isinstance(position, list):
            raise invalid
        return position


def _digest(query: Mapping[str, Any]) -> str:
    canonical = json.dumps(dict(query), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
