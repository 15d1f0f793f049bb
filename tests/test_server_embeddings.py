"""Server-side embeddings: text in, memories out, with models side by side.

The session's ``embed_server`` runs MEMORYD_EMBEDDER=local (all-MiniLM-L6-v2
in process) with auth on, on the session database; each test gets its own
tenant. Nothing here sends a vector unless the test is about callers' vectors.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import psycopg
import pytest
from google.protobuf import timestamp_pb2

from memoryd.v1 import memory_pb2 as pb
from memoryd.v1 import memory_pb2_grpc
from memoryd.v1 import search_pb2 as spb
from memoryd_server.config import Settings
from tests import prometheus_scrape
from tests.conftest import ADMIN_SECRET, ServerThread, TenantKeys, assert_status, create_tenant_keys
from tests.embedding_servers import DIM, EXTERNAL_MODEL, LOCAL_MODEL, register_external_model

NOTES = [
    "Ada adopted a golden retriever puppy named Biscuit",
    "Ada's flight to Lisbon leaves on Friday morning",
    "Caroline went to the LGBTQ support group on 7 May 2023",
    "The quarterly budget review moved to the blue meeting room",
    "Grace prefers oat milk in her coffee",
]


@pytest.fixture(scope="session")
def embed_server(
    test_settings: Settings, memoryd_server: ServerThread, pg_uri: str
) -> Iterator[ServerThread]:
    """memoryd with the local embedder and auth on (beside memoryd_server, which migrated)."""
    del memoryd_server
    register_external_model(pg_uri)
    server = ServerThread(
        test_settings.replace(
            embedder="local", auth="on", admin_key=ADMIN_SECRET, auth_failures_per_second=0
        )
    )
    yield server
    server.stop()


@pytest.fixture
def keys(pg_uri: str, embed_server: ServerThread) -> TenantKeys:
    del embed_server
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        return create_tenant_keys(conn, f"e-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def stub(embed_server: ServerThread) -> Iterator[memory_pb2_grpc.MemoryServiceStub]:
    with grpc.insecure_channel(embed_server.addr) as channel:
        yield memory_pb2_grpc.MemoryServiceStub(channel)


class Memories:
    """One tenant's view of MemoryService on embed_server."""

    def __init__(self, stub: memory_pb2_grpc.MemoryServiceStub, keys: TenantKeys) -> None:
        self.stub = stub
        self.metadata = keys.metadata()

    def create(self, content: str, **fields: Any) -> pb.Memory:
        memory = pb.Memory(namespace=["notes"], content=content, **fields)
        request = pb.CreateMemoryRequest(memory=memory)
        return self.stub.CreateMemory(request, metadata=self.metadata).memory

    def search(self, **fields: Any) -> pb.SearchMemoriesResponse:
        request = pb.SearchMemoriesRequest(**fields)
        return self.stub.SearchMemories(request, metadata=self.metadata)

    def get(self, memory_id: str) -> pb.Memory:
        request = pb.GetMemoryRequest(memory_id=memory_id)
        return self.stub.GetMemory(request, metadata=self.metadata).memory


@pytest.fixture
def mem(stub: memory_pb2_grpc.MemoryServiceStub, keys: TenantKeys) -> Memories:
    return Memories(stub, keys)


def unit(seed: int) -> list[float]:
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return [float(v) for v in vector / np.linalg.norm(vector)]


def ts(value: dt.datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def test_a_text_only_memory_is_embedded_by_the_server(mem: Memories) -> None:
    """No vector sent: the server stores a unit 384-d vector of its model."""
    created = mem.create(NOTES[0])
    assert created.embedding_model == LOCAL_MODEL
    stored = mem.get(created.id)
    assert len(stored.embedding) == DIM
    assert np.linalg.norm(stored.embedding) == pytest.approx(1.0, abs=1e-5)


def test_embedding_batches_show_in_metrics(mem: Memories, embed_server: ServerThread) -> None:
    """Each model call counts its texts and time in /metrics (memoryd_embedding_batch_*)."""
    port = embed_server.app.metrics_port
    assert port is not None
    before = prometheus_scrape.scrape(port)
    mem.create("The ferry to Cíes leaves Vigo at nine")
    mem.search(query_text="when does the boat to the islands go?")
    after = prometheus_scrape.scrape(port)

    def moved(name: str) -> float:
        return prometheus_scrape.total(after, name) - prometheus_scrape.total(before, name)

    # Other servers of this process embed too (a shared registry): at least these two calls.
    assert moved("memoryd_embedding_batch_size_count") >= 2
    assert moved("memoryd_embedding_batch_size_sum") >= 2
    assert moved("memoryd_embedding_batch_seconds_sum") > 0


def test_a_question_recalls_by_meaning_with_no_shared_word(mem: Memories) -> None:
    """'Which dog does Ada own?' shares no word with the answer but finds it first."""
    for note in NOTES:
        mem.create(note)
    found = mem.search(query_text="what kind of pet is at her home?", top_k=3)
    assert found.mode == spb.SEARCH_MODE_HYBRID
    assert found.embedding_model == LOCAL_MODEL
    assert found.results[0].memory.content == NOTES[0]
    vector_only = mem.search(
        query_text="what kind of pet is at her home?", mode=spb.SEARCH_MODE_VECTOR, top_k=1
    )
    assert vector_only.mode == spb.SEARCH_MODE_VECTOR
    assert vector_only.results[0].memory.content == NOTES[0]
    assert vector_only.results[0].vector_rank == 1
    assert vector_only.results[0].text_rank == 0


def test_update_of_content_embeds_the_new_content(mem: Memories) -> None:
    created = mem.create("Grace drinks black coffee")
    before = np.array(mem.get(created.id).embedding)
    memory = pb.Memory(id=created.id, content="Grace switched to green tea")
    mem.stub.UpdateMemory(
        pb.UpdateMemoryRequest(memory=memory, update_mask={"paths": ["content"]}),
        metadata=mem.metadata,
    )
    after = np.array(mem.get(created.id).embedding)
    assert float(before @ after) < 0.95
    found = mem.search(query_text="tea drinker", mode=spb.SEARCH_MODE_VECTOR, top_k=1)
    assert found.results[0].memory.id == created.id


def test_models_side_by_side_never_mix(mem: Memories) -> None:
    """The same vector under two models: each search sees only its own model's rows."""
    vector = unit(7)
    external = mem.create("external vector", embedding=vector, embedding_model=EXTERNAL_MODEL)
    assert external.embedding_model == EXTERNAL_MODEL
    local = mem.create("local text", embedding=vector)  # no model: the tenant's serving one
    assert local.embedding_model == LOCAL_MODEL
    embedded = mem.create("embedded by the server")
    in_external = mem.search(query_embedding=vector, embedding_model=EXTERNAL_MODEL, top_k=10)
    assert [r.memory.id for r in in_external.results] == [external.id]
    assert in_external.embedding_model == EXTERNAL_MODEL
    in_local = mem.search(query_embedding=vector, top_k=10)
    assert {r.memory.id for r in in_local.results} == {local.id, embedded.id}
    assert in_local.results[0].memory.id == local.id


def test_a_callers_vector_must_fit_its_model(mem: Memories) -> None:
    assert_status(
        lambda: mem.create("x", embedding=unit(1), embedding_model="no-such-model"),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="memory.embedding_model",
        message="not registered",
    )
    assert_status(
        lambda: mem.create("x", embedding=[0.5] * 12),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="memory.embedding",
        message=f"model {LOCAL_MODEL!r} makes 384",
    )
    assert_status(
        lambda: mem.search(query_embedding=[0.5] * 12),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="query_embedding",
    )
    assert_status(
        lambda: mem.search(query_text="x", embedding_model="é" * 257),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="embedding_model",
    )


def test_natural_language_text_search_matches_any_meaningful_word(mem: Memories) -> None:
    """A question finds texts sharing some of its words; web search syntax needs all."""
    for note in NOTES:
        mem.create(note)
    question = "When did Caroline go to the support group?"
    found = mem.search(query_text=question, mode=spb.SEARCH_MODE_TEXT)
    assert found.mode == spb.SEARCH_MODE_TEXT
    assert found.embedding_model == ""
    assert [r.memory.content for r in found.results] == [NOTES[2]]
    assert found.results[0].text_rank == 1
    assert 0 < found.results[0].text_score < 1
    strict = mem.search(
        query_text=question, mode=spb.SEARCH_MODE_TEXT, text_match=spb.TEXT_MATCH_WEBSEARCH
    )
    assert list(strict.results) == []  # "go" is not in the memory
    exact = mem.search(
        query_text='"support group" -budget',
        mode=spb.SEARCH_MODE_TEXT,
        text_match=spb.TEXT_MATCH_WEBSEARCH,
    )
    assert [r.memory.content for r in exact.results] == [NOTES[2]]
    stop_words_only = mem.search(query_text="when did it", mode=spb.SEARCH_MODE_TEXT)
    assert list(stop_words_only.results) == []


def test_more_shared_words_rank_higher(mem: Memories) -> None:
    one = mem.create("the garden has roses")
    two = mem.create("roses and tulips in the garden by the tulips")
    found = mem.search(query_text="Where are the tulips and roses?", mode=spb.SEARCH_MODE_TEXT)
    assert [r.memory.id for r in found.results] == [two.id, one.id]


def test_rrf_scores_are_the_fused_ranks(mem: Memories) -> None:
    """Hybrid RRF: each result's fusion score is (1/(60+rv) + 1/(60+rt)) / (2/61)."""
    for note in NOTES:
        mem.create(note)
    found = mem.search(query_text="Ada's dog", top_k=5, fusion=spb.FUSION_RRF)
    assert found.mode == spb.SEARCH_MODE_HYBRID
    scores = [r.score for r in found.results]
    assert scores == sorted(scores, reverse=True)
    for r in found.results:
        parts = [1 / (60 + rank) for rank in (r.vector_rank, r.text_rank) if rank]
        assert r.fusion_score == pytest.approx(sum(parts) / (2 / 61), rel=1e-5)
        assert r.score == pytest.approx(r.fusion_score, rel=1e-5)
    weighted = mem.search(query_text="Ada's dog", top_k=5)  # the default
    best_text = max(r.text_score for r in weighted.results)
    assert best_text > 0
    for r in weighted.results:
        assert r.fusion_score == 0
        expected = 0.7 * r.similarity_score + 0.3 * r.text_score / best_text
        assert r.score == pytest.approx(expected, rel=1e-4)


def test_equal_scores_order_by_occur_time_then_content(mem: Memories) -> None:
    """Ties never depend on ids: the same data gives the same order on every load."""
    old = dt.datetime(2021, 1, 1, tzinfo=dt.UTC)
    new = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
    a_old = mem.create("apple pie recipe", occur_time=ts(old))
    b_new = mem.create("apple pie recipe", occur_time=ts(new))
    found = mem.search(query_text="apple pie recipe", mode=spb.SEARCH_MODE_TEXT)
    assert [r.memory.id for r in found.results] == [b_new.id, a_old.id]
    assert found.results[0].score == found.results[1].score


def test_occur_time_defaults_filters_and_drives_recency(mem: Memories) -> None:
    created = mem.create("default occur time")
    assert created.occur_time == created.create_time
    long_ago = dt.datetime(2019, 6, 1, tzinfo=dt.UTC)
    old = mem.create("trip to Kyoto", occur_time=ts(long_ago))
    assert old.occur_time.ToDatetime(dt.UTC) == long_ago
    recent = mem.create("trip to Osaka")
    filtered = mem.search(
        query_text="trip",
        mode=spb.SEARCH_MODE_TEXT,
        filter=pb.MemoryFilter(occur_time_end=ts(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))),
    )
    assert [r.memory.id for r in filtered.results] == [old.id]
    since = mem.search(
        query_text="trip",
        mode=spb.SEARCH_MODE_TEXT,
        filter=pb.MemoryFilter(occur_time_start=ts(long_ago + dt.timedelta(1))),
    )
    assert [r.memory.id for r in since.results] == [recent.id]
    by_recency = mem.search(
        query_text="trip", mode=spb.SEARCH_MODE_TEXT, weights=pb.RankingWeights(recency=1)
    )
    assert [r.memory.id for r in by_recency.results] == [recent.id, old.id]
    assert by_recency.results[1].recency_score < 1e-6
    bad = pb.MemoryFilter(occur_time_start=ts(long_ago), occur_time_end=ts(long_ago))
    assert_status(
        lambda: mem.search(query_text="trip", filter=bad),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="filter.occur_time_end",
    )


def test_update_occur_time(mem: Memories) -> None:
    created = mem.create("moved the event")
    when = dt.datetime(2024, 2, 29, 12, tzinfo=dt.UTC)
    updated = mem.stub.UpdateMemory(
        pb.UpdateMemoryRequest(
            memory=pb.Memory(id=created.id, occur_time=ts(when)),
            update_mask={"paths": ["occur_time"]},
        ),
        metadata=mem.metadata,
    ).memory
    assert updated.occur_time.ToDatetime(dt.UTC) == when


def test_search_mode_errors(mem: Memories) -> None:
    assert_status(
        lambda: mem.search(mode=spb.SEARCH_MODE_TEXT, query_embedding=unit(1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="query_text",
    )
    assert_status(
        lambda: mem.search(query_text="x", mode=42), grpc.StatusCode.INVALID_ARGUMENT, field="mode"
    )
    assert_status(
        lambda: mem.search(query_text="x", fusion=9),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="fusion",
    )
    assert_status(
        lambda: mem.search(query_text="x", text_match=-1),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="text_match",
    )
    assert_status(
        lambda: mem.search(query_text="ü" * 4097),
        grpc.StatusCode.INVALID_ARGUMENT,
        field="query_text",
    )


def test_a_server_without_embedder_searches_text_and_refuses_vector_modes(
    grpc_addr: str, uid: str
) -> None:
    """MEMORYD_EMBEDDER=none: a text query is a text search; VECTOR needs a vector."""
    with grpc.insecure_channel(grpc_addr) as channel:
        plain = memory_pb2_grpc.MemoryServiceStub(channel)
        plain.CreateMemory(
            pb.CreateMemoryRequest(
                memory=pb.Memory(namespace=["plain", uid], content=f"zebra {uid}")
            )
        )
        found = plain.SearchMemories(pb.SearchMemoriesRequest(query_text=f"zebra {uid}"))
        assert found.mode == spb.SEARCH_MODE_TEXT
        assert len(found.results) == 1
        assert found.results[0].memory.embedding_model == ""
        assert_status(
            lambda: plain.SearchMemories(
                pb.SearchMemoriesRequest(query_text="zebra", mode=spb.SEARCH_MODE_VECTOR)
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            message="takes vectors from callers",
        )


def test_tenants_never_see_each_others_memories(
    stub: memory_pb2_grpc.MemoryServiceStub, keys: TenantKeys, pg_uri: str
) -> None:
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        other = create_tenant_keys(conn, f"x-{uuid.uuid4().hex[:12]}")
    mine, theirs = Memories(stub, keys), Memories(stub, other)
    mine.create("Ada adopted a golden retriever puppy named Biscuit")
    for mode in (spb.SEARCH_MODE_VECTOR, spb.SEARCH_MODE_TEXT, spb.SEARCH_MODE_HYBRID):
        assert list(theirs.search(query_text="golden retriever", mode=mode).results) == []
        assert len(mine.search(query_text="golden retriever", mode=mode).results) == 1
