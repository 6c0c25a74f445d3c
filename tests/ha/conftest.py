"""The HA tests need Debian's etcd (package etcd-server): without it they are skipped, saying so."""

from __future__ import annotations

import pytest

from fluvial.sc.etcd_local import EtcdMissing, LocalEtcd, etcd_binary


def _skip_reason() -> str | None:
    try:
        etcd_binary()
    except EtcdMissing as e:
        return str(e)
    return None


@pytest.fixture(scope="session")
def etcd(tmp_path_factory):
    """A three-member local etcd shared by the tests of a run (each test uses its own prefix)."""
    reason = _skip_reason()
    if reason:
        print(f"skipping: {reason}")
        pytest.skip(reason)
    with LocalEtcd(tmp_path_factory.mktemp("etcd")) as cluster:
        yield cluster


@pytest.fixture
def own_etcd(tmp_path):
    """A three-member local etcd for one test (one that kills members)."""
    reason = _skip_reason()
    if reason:
        print(f"skipping: {reason}")
        pytest.skip(reason)
    with LocalEtcd(tmp_path / "etcd") as cluster:
        yield cluster
