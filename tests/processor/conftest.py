"""Fixtures for the processor tests: the client tests' in-process cluster and client, and
``new_topic`` (``tests/client/conftest.py``)."""

from client.conftest import cluster, fl, new_topic  # noqa: F401  (fixtures, shared)
