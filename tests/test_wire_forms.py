"""The hand-made wire forms of the hot path give back exactly what the slower library calls did."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from google.protobuf import timestamp_pb2

from memoryd_server.pgtypes import JsonLoader
from memoryd_server.protoconv import timestamp
from memoryd_server.reads import vector_literal


def test_a_vector_literal_gives_back_every_float32_exactly():
    rng = np.random.default_rng(7)
    for vector in (
        rng.standard_normal(384).astype(np.float32),
        (rng.standard_normal(1536) * 1e-30).astype(np.float32),
        np.array([np.finfo(np.float32).max, np.finfo(np.float32).tiny, -0.0, 1e-45], np.float32),
    ):
        text = vector_literal(vector)
        assert text[0] + text[-1] == "[]"
        assert " " not in text
        parsed = np.array([float(v) for v in text[1:-1].split(",")], dtype=np.float32)
        assert parsed.tobytes() == vector.tobytes()


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 12, 3, 20, 13, 14, 123456, tzinfo=dt.UTC),
        dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(1, 1, 1, tzinfo=dt.UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-7))),
        dt.datetime(2026, 6, 1, 12, 0),  # naive: taken as UTC, as FromDatetime does
    ],
)
def test_timestamps_match_protobufs_own_conversion(value):
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(value)
    assert timestamp(value) == expected


def test_no_timestamp_leaves_the_field_unset():
    assert timestamp(None) is None


def test_the_json_loader_reads_what_psycopgs_reads_and_never_shares_empties():
    loader = JsonLoader(0)
    accented = '{"a": [1, 2.5, null], "été": "日"}'.encode()
    for text in (b"{}", b"[]", accented, b"[{}]"):
        assert loader.load(memoryview(text)) == json.loads(text)
    first = loader.load(b"{}")
    first["changed"] = True
    assert loader.load(b"{}") == {}
