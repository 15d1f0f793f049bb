"""Fixtures of the fault tests: real ``memoryd serve`` processes need a data directory."""

from tests.test_startup import pg_dir  # noqa: F401 - the fixture, shared with test_startup
