"""API key secrets: their format, their hash, and the authorization header.

A secret is ``mdk_`` and 43 URL-safe characters (256 random bits). With that
much entropy a plain SHA-256 is a sound stored form: no dictionary or
brute-force attack applies, so a slow password hash would only add latency to
every cache miss.
"""

from __future__ import annotations

import hashlib
import re
import secrets

SECRET_PREFIX = "mdk_"  # noqa: S105 - a marker, not a secret
# The characters of a secret shown in listings (the "mdk_" marker and 8 more).
PREFIX_CHARS = 12
# Longer authorization values are refused before any hashing or lookup.
MAX_AUTHORIZATION_CHARS = 512
_BEARER = re.compile(r"Bearer ([\x21-\x7e]{1,500})", re.ASCII)


def new_secret() -> str:
    """A fresh API key secret."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> bytes:
    """The SHA-256 of ``secret``: the only form the server stores or caches."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def prefix_of(secret: str) -> str:
    """The part of ``secret`` that listings show."""
    return secret[:PREFIX_CHARS]


def bearer_token(value: str) -> str | None:
    """The key in an ``authorization: Bearer <key>`` value; None if malformed."""
    if len(value) > MAX_AUTHORIZATION_CHARS:
        return None
    match = _BEARER.fullmatch(value.strip())
    return match.group(1) if match else None
