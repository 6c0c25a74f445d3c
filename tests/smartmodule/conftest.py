"""Fixtures for the SmartModule tests: the in-process cluster and client of the client tests
(``tests/client/conftest.py``), and ``new_topic(values)`` that fills a fresh topic."""

from __future__ import annotations

import itertools

import pytest

from client.conftest import cluster, fl  # noqa: F401  (fixtures, shared)

_names = itertools.count()


@pytest.fixture
def new_topic(fl):  # noqa: F811
    async def create(values=(), partitions: int = 1) -> str:
        name = f"sm-{next(_names)}"
        await fl.admin.create_topic(name, partitions, 1)
        if values:
            async with fl.producer(name) as p:
                for v in values:
                    await p.send(v)
        return name

    return create
