"""DocumentService: load throughput, and SearchDocuments top-10 latency against raw SQL
and against SearchMemories at the same row count.

Usage: python -m bench.documents [--documents 10000] [--chunks-per-document 5] [--dim 384]
       [--queries 200] [--workers 4]

Starts its own embedded PostgreSQL and an in-process memoryd with embedder
none (model "" of ``--dim`` dimensions), then:

1. loads ``--documents`` markdown documents of ``--chunks-per-document``
   sections each through PutDocument with the caller's chunks and vectors
   (clustered vectors, bench/datasets.py), from ``--workers`` threads, and
   reports documents and chunks per second; then the same vectors as memories
   through BatchCreateMemories (batches of 5,000), so both searches run over
   the same number of rows;
2. VACUUM ANALYZE, then per query, interleaved: SearchDocuments (top_k 10,
   vector), the server's SQL for it run directly with psycopg (built by
   ``memoryd_server.documents.search``: the same join, transaction settings,
   REPEATABLE READ snapshot and exact fallback, as the server's role under
   row-level security), and SearchMemories with the same vector. Reports
   p50/p95, the ratios of the p50s, and recall@10 against numpy's exact search.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.rows import dict_row

from bench import datasets
from memoryd.v1 import document_pb2 as dpb
from memoryd.v1 import document_pb2_grpc, memory_pb2_grpc
from memoryd.v1 import memory_pb2 as mpb
from memoryd_server.background import BackgroundServer
from memoryd_server.config import Settings
from memoryd_server.database import APP_ROLE
from memoryd_server.documents.search import CHUNK_SELECT, DOCUMENT_SELECT, chunk_distance, of_model
from memoryd_server.embeddings.registry import ModelSpace
from memoryd_server.memories.search import search_settings
from memoryd_server.telemetry import configure_logging
from memoryd_server.tenancy import DEFAULT_TENANT

TOP_K = 10
DEPTH = max(2 * TOP_K, 20)  # the server's candidate depth for a vector search
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
         "juliet", "kilo", "lima", "mike", "november", "oscar", "papa")  # fmt: skip


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


def p95(xs: list[float]) -> float:
    ordered = sorted(xs)
    return ordered[max(int(len(ordered) * 0.95) - 1, 0)]


def document_request(doc: int, per_doc: int, vectors: np.ndarray) -> dpb.PutDocumentRequest:
    """A markdown document of ``per_doc`` sections, each a caller-made chunk with its vector."""
    parts = [f"# Document {doc}\n\n"]
    spans = []
    for s in range(per_doc):
        start = sum(len(p) for p in parts)
        words = " ".join(WORDS[(doc + s + i) % len(WORDS)] for i in range(60))
        section = f"## Section {s}\n\n{words}.\n\n"
        parts.append(section)
        spans.append((start, start + len(section.rstrip()), s))
    content = "".join(parts)
    chunks = [
        dpb.ChunkInput(
            start_offset=a,
            end_offset=b,
            heading_path=[f"Document {doc}", f"Section {s}"],
            embedding=vectors[doc * per_doc + s].tolist(),
        )
        for a, b, s in spans
    ]
    return dpb.PutDocumentRequest(
        document=dpb.Document(namespace=["bench", "docs"], path=f"doc-{doc:06d}.md",
                              content=content),
        chunks=chunks,
    )  # fmt: skip


def load_documents(stub: document_pb2_grpc.DocumentServiceStub, reqs: list[dpb.PutDocumentRequest],
                   workers: int) -> tuple[float, dict[str, tuple[str, int]]]:  # fmt: skip
    """Seconds to put every document, and each chunk's row index by (document id, index)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        responses = list(pool.map(lambda r: stub.PutDocument(r, timeout=600), reqs))
    seconds = time.perf_counter() - started
    ids = {r.document.id: (r.document.path, i) for i, r in enumerate(responses)}
    return seconds, ids


def load_memories(stub: memory_pb2_grpc.MemoryServiceStub, vectors: np.ndarray) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(vectors), 5000):
        batch = [mpb.Memory(namespace=["bench", "memories"], content=f"memory {i}",
                            embedding=vectors[i].tolist())
                 for i in range(start, min(start + 5000, len(vectors)))]  # fmt: skip
        ids.extend(stub.BatchCreateMemories(
            mpb.BatchCreateMemoriesRequest(memories=batch), timeout=3600).memory_ids)  # fmt: skip
    return ids


def direct_sql(space: ModelSpace) -> tuple[sql.Composed, sql.Composed, sql.Composed, list[str]]:
    """SearchDocuments' vector SQL (index and exact) and its settings, as the server sends them."""
    select = sql.SQL(
        "SELECT {}, {}, {} AS distance, 0::float4 AS text_rank, now() AS query_time"
        " FROM document_chunks c JOIN documents d ON d.tenant_id = c.tenant_id"
        " AND d.id = c.document_id WHERE c.tenant_id = %(tenant)s AND {}"
    ).format(CHUNK_SELECT, DOCUMENT_SELECT, chunk_distance(space), of_model(space))
    index = sql.SQL("{} ORDER BY {} LIMIT %(k)s").format(select, chunk_distance(space))
    exact = sql.SQL("{} ORDER BY {} + 0 LIMIT %(k)s").format(select, chunk_distance(space))
    local = search_settings(DEPTH) | {"memoryd.tenant": DEFAULT_TENANT}
    settings = sql.SQL("SELECT {}").format(sql.SQL(", ").join(
        sql.SQL("set_config({}, {}, true)").format(sql.Literal(k), sql.Placeholder())
        for k in local))  # fmt: skip
    return index, exact, settings, list(local.values())


def timed(samples: list[float], call: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    result = call()
    samples.append(time.perf_counter() - t0)
    return result


def main() -> None:  # noqa: PLR0915 - one linear run, printed as it goes
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--chunks-per-document", type=int, default=5)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    configure_logging(Settings(log_level="warning", log_format="console"))
    per_doc = args.chunks_per_document
    rows = args.documents * per_doc
    data = datasets.clustered(rows, args.dim, queries=args.queries, seed=0)
    reqs = [document_request(d, per_doc, data.vectors) for d in range(args.documents)]
    exact = datasets.brute_force_top_k(data.vectors, data.queries, TOP_K)

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        settings = Settings(addr="127.0.0.1:0", data_dir=Path(tmp) / "pg", embedding_dim=args.dim,
                            pool_max_size=max(10, args.workers + 2))  # fmt: skip
        server = BackgroundServer(settings)
        uri = server.app.database_url
        assert uri is not None
        try:
            with grpc.insecure_channel(server.addr) as channel, psycopg.connect(uri) as conn:
                register_vector(conn)
                docs = document_pb2_grpc.DocumentServiceStub(channel)
                memories = memory_pb2_grpc.MemoryServiceStub(channel)
                seconds, doc_ids = load_documents(docs, reqs, args.workers)
                print(f"PutDocument: {args.documents} documents, {rows} chunks in {seconds:.1f} s:"
                      f" {args.documents / seconds:.0f} documents/s, {rows / seconds:.0f} chunks/s"
                      f" ({args.workers} client threads)", flush=True)  # fmt: skip
                started = time.perf_counter()
                memory_ids = load_memories(memories, data.vectors)
                mem_seconds = time.perf_counter() - started
                print(f"BatchCreateMemories: {rows} memories in {mem_seconds:.1f} s:"
                      f" {rows / mem_seconds:.0f} rows/s", flush=True)  # fmt: skip
                conn.autocommit = True
                conn.execute("VACUUM (ANALYZE) documents, document_chunks, memories")
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(APP_ROLE)))
                conn.autocommit = False
                row = conn.execute(
                    "SELECT dimension FROM embedding_models WHERE name = ''"
                ).fetchone()
                space = ModelSpace("", row[0] if row else args.dim, "external", "")
                conn.rollback()  # each direct search opens its own transaction
                index_sql, exact_sql, settings_sql, values = direct_sql(space)
                memory_row = {m: i for i, m in enumerate(memory_ids)}
                times: dict[str, list[float]] = {"documents": [], "sql": [], "memories": []}
                recalls: dict[str, list[float]] = {"documents": [], "sql": [], "memories": []}
                fallbacks = 0
                for qi, q in enumerate(data.queries):
                    truth = exact[qi].tolist()
                    found = timed(times["documents"], lambda q=q: docs.SearchDocuments(
                        dpb.SearchDocumentsRequest(query_embedding=q.tolist(), top_k=TOP_K),
                        timeout=60))  # fmt: skip
                    got = [
                        doc_ids[r.document.id][1] * per_doc + r.chunk.index for r in found.results
                    ]
                    recalls["documents"].append(datasets.recall(got, truth))

                    def direct(q: np.ndarray = q) -> list[dict[str, Any]]:
                        params = {"q": q, "k": DEPTH, "tenant": DEFAULT_TENANT}
                        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                        with conn.cursor(row_factory=dict_row) as cur:
                            cur.execute(settings_sql, values)
                            result = cur.execute(index_sql, params).fetchall()
                            if len(result) < DEPTH:
                                result = cur.execute(exact_sql, params).fetchall()
                        conn.rollback()
                        result.sort(key=lambda row: (row["distance"], str(row["id"])))
                        return result[:TOP_K]

                    direct_rows = timed(times["sql"], direct)
                    fallbacks += len(direct_rows) < TOP_K
                    got = [doc_ids[str(r["d_id"])][1] * per_doc + r["seq"] for r in direct_rows]
                    recalls["sql"].append(datasets.recall(got, truth))
                    mem = timed(times["memories"], lambda q=q: memories.SearchMemories(
                        mpb.SearchMemoriesRequest(query_embedding=q.tolist(), top_k=TOP_K),
                        timeout=60))  # fmt: skip
                    got = [memory_row[r.memory.id] for r in mem.results]
                    recalls["memories"].append(datasets.recall(got, truth))
        finally:
            server.stop()
    print(f"\nTop-{TOP_K} vector search over {rows} rows ({args.queries} queries, interleaved):")
    for name, label in (("documents", "SearchDocuments"), ("sql", "its SQL, direct"),
                        ("memories", "SearchMemories")):  # fmt: skip
        xs = times[name]
        print(f"  {label:17s} p50 {p50(xs) * 1000:6.2f} ms  p95 {p95(xs) * 1000:6.2f} ms"
              f"  recall@10 {statistics.mean(recalls[name]):.3f}")  # fmt: skip
    print(f"  SearchDocuments / its SQL p50:     {p50(times['documents']) / p50(times['sql']):.2f}")
    print(f"  SearchDocuments / SearchMemories:  "
          f"{p50(times['documents']) / p50(times['memories']):.2f}")  # fmt: skip
    print(f"  short answers of the direct SQL: {fallbacks}")


if __name__ == "__main__":
    main()
