"""Scraping /metrics in tests: every sample by name and labels, and sums over them."""

from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample of http://127.0.0.1:port/metrics, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def scrape_after(port: int, before: Samples, name: str, calls: int) -> Samples:
    """A scrape once ``calls`` more calls are counted under ``name``.

    A call is counted as its handler ends, which may be just after its client
    has its answer (an aborted call's status is sent first).
    """
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(port)
        if total(samples, name) - total(before, name) >= calls or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value, 0 when it is absent (a series not recorded yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of every sample of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)
