"""Per-method request size limits, and a bound on large requests handled at once.

gRPC's receive limit is server-wide, so it must fit the batch methods (64 MiB
by default), and every method then parsed whatever it was sent: one rejected
60 MiB memory cost 250 MB of memory, 145 MB never returned (issue 12 item 9).
A request's bytes are checked against its method's limit before they are
parsed, and only a few requests above SMALL_REQUEST_BYTES are parsed at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from memoryd_server.config import Settings
from memoryd_server.errors import ResourceExhausted

# The methods that take many items at once: they keep MEMORYD_MAX_RECEIVE_BYTES.
BATCH_METHODS = frozenset(
    {
        "/memoryd.v1.ConversationService/AppendMessages",
        "/memoryd.v1.MemoryService/BatchCreateMemories",
        # A document with up to 10,000 caller-made chunks and their vectors.
        "/memoryd.v1.DocumentService/PutDocument",
    }
)
# Any other request: one item (content up to MEMORYD_MAX_CONTENT_BYTES, an
# embedding, metadata) fits in this, with room to spare; a gRPC client's default.
SMALL_REQUEST_BYTES = 4 * 1024 * 1024
# Room beside the content for the rest of a one-item request.
ITEM_HEADROOM_BYTES = 1024 * 1024
# Larger requests parsed at once: parsing costs several times a request's size,
# so this bounds the server's memory to a few hundred MB whatever clients send.
MAX_LARGE_REQUESTS = 2
LARGE_RETRY_SECONDS = 1.0


class RequestSizes:
    """Each method's limit, and the count of large requests being handled."""

    def __init__(self, settings: Settings) -> None:
        self.batch_limit = settings.max_receive_bytes
        self.item_limit = min(
            max(SMALL_REQUEST_BYTES, settings.max_content_bytes + ITEM_HEADROOM_BYTES),
            settings.max_receive_bytes,
        )
        self.large = 0

    def limit(self, method: str) -> int:
        return self.batch_limit if method in BATCH_METHODS else self.item_limit

    @contextmanager
    def admit(self, method: str, size: int) -> Iterator[None]:
        """Hold a large request's slot while it is handled; ResourceExhausted if none.

        A request over its method's limit is refused before it is parsed, with a
        message naming the limit; retrying it cannot help.
        """
        limit = self.limit(method)
        if size > limit:
            name = method.rsplit("/", 1)[-1]
            raise ResourceExhausted(
                f"the request is {size} bytes; {name} accepts at most {limit} bytes"
            )
        if size <= SMALL_REQUEST_BYTES:
            yield
            return
        if self.large >= MAX_LARGE_REQUESTS:
            raise ResourceExhausted(
                f"{MAX_LARGE_REQUESTS} requests over {SMALL_REQUEST_BYTES} bytes are being"
                " handled; retry",
                retry_after=LARGE_RETRY_SECONDS,
            )
        self.large += 1
        try:
            yield
        finally:
            self.large -= 1
