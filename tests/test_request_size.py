"""Per-method request size limits and the bound on large requests (request_size.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from memoryd_server.config import Settings
from memoryd_server.errors import ResourceExhausted
from memoryd_server.request_size import (
    MAX_LARGE_REQUESTS,
    SMALL_REQUEST_BYTES,
    RequestSizes,
)

APPEND = "/memoryd.v1.ConversationService/AppendMessages"
CREATE = "/memoryd.v1.MemoryService/CreateMemory"
MIB = 1024 * 1024


def test_batch_methods_keep_the_receive_limit_others_get_4_mib() -> None:
    """Only the batch methods need more than one item's bytes."""
    sizes = RequestSizes(Settings(auth="off"))
    assert sizes.limit(APPEND) == 64 * MIB
    assert sizes.limit(CREATE) == SMALL_REQUEST_BYTES
    assert RequestSizes(Settings(auth="off", max_content_bytes=8 * MIB)).limit(CREATE) == 9 * MIB


def test_a_request_over_its_limit_names_the_limit() -> None:
    """Refused before parsing, naming the limit; no RetryInfo: retrying cannot help."""
    sizes = RequestSizes(Settings(auth="off"))
    with pytest.raises(ResourceExhausted) as caught, sizes.admit(CREATE, SMALL_REQUEST_BYTES + 1):
        pass
    assert f"CreateMemory accepts at most {SMALL_REQUEST_BYTES} bytes" in caught.value.message
    assert caught.value.retry_after is None


def test_large_requests_beyond_the_bound_are_refused_with_retry_info() -> None:
    """At most MAX_LARGE_REQUESTS large requests at once; a slot is freed when one ends."""
    sizes = RequestSizes(Settings(auth="off"))
    held = [sizes.admit(APPEND, 10 * MIB) for _ in range(MAX_LARGE_REQUESTS)]
    for slot in held:
        slot.__enter__()
    with pytest.raises(ResourceExhausted) as caught, sizes.admit(APPEND, 10 * MIB):
        pass
    assert caught.value.retry_after == 1.0
    with sizes.admit(APPEND, MIB):  # small requests are not counted
        pass
    held[0].__exit__(None, None, None)
    with sizes.admit(APPEND, 10 * MIB):
        assert sizes.large == MAX_LARGE_REQUESTS


def test_docs_state_the_real_limits() -> None:
    """docs/api.md, operators.md and the README give the limits this module enforces."""
    repo = Path(__file__).resolve().parents[1]
    sizes = RequestSizes(Settings(auth="off"))
    batch = f"`MEMORYD_MAX_RECEIVE_BYTES` ({sizes.batch_limit // MIB} MiB)"
    other = f"other methods {sizes.item_limit // MIB} MiB"
    api = (repo / "docs" / "api.md").read_text()
    assert batch in api
    assert other in api
    assert f"at most {MAX_LARGE_REQUESTS} requests over {SMALL_REQUEST_BYTES // MIB} MiB" in api
    operators = " ".join((repo / "docs" / "operators.md").read_text().split())
    assert batch in operators
    readme = (repo / "README.md").read_text()
    assert f"| `MEMORYD_MAX_RECEIVE_BYTES` | `{sizes.batch_limit}` |" in readme
    assert f"Other methods accept {sizes.item_limit // MIB} MiB" in readme
