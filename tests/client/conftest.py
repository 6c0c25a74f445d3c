"""Fixtures for the client tests: an in-process cluster (one SC and 1-3 SPUs in the test's own
trio run, ``harness.cluster``), and a client connected to it.

Rules: servers bind 127.0.0.1 port 0 under ``tmp_path``; every test body is bounded with
``trio.fail_after``; nothing sleeps to synchronise (tests wait on results, events, or poll with a
deadline); everything started is stopped when the fixture exits.
"""

from __future__ import annotations

import itertools

import pytest
import trio

import fluvial
from harness.cluster import open_test_cluster

TEST_TIMEOUT = 60

_names = itertools.count()


def topic_name(prefix: str = "t") -> str:
    """A fresh, valid topic name."""
    return f"{prefix}-{next(_names)}"


@pytest.fixture
async def cluster(tmp_path):
    with trio.fail_after(30):
        async with open_test_cluster(tmp_path / "cluster", spus=1) as c:
            yield c


@pytest.fixture
async def cluster3(tmp_path):
    with trio.fail_after(30):
        async with open_test_cluster(tmp_path / "cluster", spus=3, heartbeat_timeout=1.0) as c:
            yield c


@pytest.fixture
async def fl(cluster):
    async with fluvial.connect(endpoint=cluster.endpoint, metadata_timeout=10,
                               request_timeout=20) as client:
        yield client


@pytest.fixture
def new_topic(fl):
    """``await new_topic(partitions=1, replication=1, **create_topic_options)`` -> a fresh name."""

    async def create(partitions: int = 1, replication: int = 1, *, name: str | None = None,
                     **kw) -> str:
        name = name or topic_name()
        await fl.admin.create_topic(name, partitions, replication, **kw)
        return name

    return create
