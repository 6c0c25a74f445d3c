"""Fixtures for the SmartModule tests: an in-process cluster (``harness.cluster``) and a client.
Servers bind 127.0.0.1 port 0 under ``tmp_path``; every test body is bounded."""

from __future__ import annotations

import itertools

import pytest
import trio

import fluvial
from harness.cluster import open_test_cluster

_names = itertools.count()


@pytest.fixture
async def cluster(tmp_path):
    with trio.fail_after(30):
        async with open_test_cluster(tmp_path / "cluster", spus=1) as c:
            yield c


@pytest.fixture
async def fl(cluster):
    async with fluvial.connect(endpoint=cluster.endpoint, metadata_timeout=10,
                               request_timeout=20) as client:
        yield client


@pytest.fixture
def new_topic(fl):
    async def create(values=(), partitions: int = 1) -> str:
        name = f"sm-{next(_names)}"
        await fl.admin.create_topic(name, partitions, 1)
        if values:
            async with fl.producer(name) as p:
                for v in values:
                    await p.send(v)
        return name

    return create
