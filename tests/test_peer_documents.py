"""``memoryd import-peer --format langchain``: LangChain documents become DocumentService
documents, grouped by source; a rerun changes nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import memoryd
from memoryd_server.portability.peers import PeerFormatError, import_peer
from tests.conftest import ServerThread

LANGCHAIN = Path(__file__).parent / "data" / "peers" / "langchain_documents.json"
ONBOARDING = (
    "# Onboarding\n\nWelcome to the team. Read the handbook first.\n\n## Laptop\n\n"
    "IT hands out laptops on Mondays."
)


@pytest.fixture
def client(memoryd_server: ServerThread) -> Iterator[memoryd.Client]:
    with memoryd.Client(memoryd_server.addr) as c:
        yield c


def test_langchain_documents_are_grouped_by_source(client: memoryd.Client, uid: str) -> None:
    report = import_peer(LANGCHAIN, "langchain", client, namespace_prefix=["lc", uid])
    assert report.total == 6
    assert report.imported == 5
    assert report.skipped == [(5, "not a LangChain document (no page_content string)")]
    docs = {d.path: d for d in client.documents.iter(filter=memoryd.DocumentFilter(
        namespace_prefix=["lc", uid]))}  # fmt: skip
    assert sorted(docs) == ["handbook/onboarding.md", "https://wiki.example.com/expenses",
                            "loose-note"]  # fmt: skip
    onboarding = client.documents.get(docs["handbook/onboarding.md"].id)
    assert onboarding.content == ONBOARDING  # the overlapping pieces merged by start_index
    assert onboarding.metadata["team"] == "people"
    assert onboarding.metadata["langchain"] == {"pieces": 2, "ids": ["p1", "p2"]}
    assert onboarding.media_type == "text/markdown"
    chunks = client.documents.list_chunks(onboarding.id).items
    assert [c.heading_path for c in chunks] == [("Onboarding",), ("Onboarding", "Laptop")]
    expenses = client.documents.get(docs["https://wiki.example.com/expenses"].id)
    assert expenses.content == "Expenses are filed monthly.\n\nExpense limits: 50 per day."
    assert expenses.source_uri == "https://wiki.example.com/expenses"

    again = import_peer(LANGCHAIN, "langchain", client, namespace_prefix=["lc", uid])
    assert again.imported == 0
    assert client.documents.get(onboarding.id).version == 1


def test_langchain_cli_and_a_wrong_file(
    memoryd_server: ServerThread, tmp_path: Path, uid: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memoryd_server", "import-peer", "--format", "langchain",
         str(LANGCHAIN), "--addr", memoryd_server.addr, "--namespace-prefix", f"cli/{uid}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "6 items, 5 imported, 1 skipped" in result.stdout
    assert "5 pieces grouped into 3 documents by source" in result.stdout
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"results": []}', encoding="utf-8")
    with (
        memoryd.Client(memoryd_server.addr) as c,
        pytest.raises(PeerFormatError, match="LangChain"),
    ):
        import_peer(wrong, "langchain", c)
