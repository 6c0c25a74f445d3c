"""The official client over verified (mutual) TLS: the `local` profile `cluster start` writes,
and explicit `set_tls_file_paths` (issue core-7)."""

from __future__ import annotations

import fluvio
import pytest

pytestmark = pytest.mark.compat


def test_cluster_start_writes_a_verified_tls_profile(cluster):
    text = cluster.config_path.read_text()
    assert 'tls_policy = "verified"' in text and 'domain = "fluvial.local"' in text


def test_set_tls_file_paths_connects_produces_and_consumes(cluster):
    certs = cluster.home / "certs"
    cfg = fluvio.FluvioConfig.new(cluster.endpoint)
    cfg.set_tls_file_paths("fluvial.local", str(certs / "client-admin.key"),
                           str(certs / "client-admin.crt"), str(certs / "ca.crt"))
    admin = fluvio.FluvioAdmin.connect_with_config(cfg)
    admin.create_topic("tls-files")
    client = fluvio.Fluvio.connect_with_config(cfg)
    producer = client.topic_producer("tls-files")
    out = [producer.send_string(f"secret-{i}") for i in range(20)]
    producer.flush()
    assert [o.wait().offset() for o in out] == list(range(20))
    b = fluvio.ConsumerConfigExtBuilder("tls-files")
    b.offset_start(fluvio.Offset.beginning())
    b.disable_continuous(True)
    assert [r.value_string() for r in client.consumer_with_config(b.build())] == [f"secret-{i}" for i in range(20)]


def test_plaintext_client_is_refused_by_the_tls_port(cluster):
    cfg = fluvio.FluvioConfig.new(cluster.endpoint)
    cfg.disable_tls()
    with pytest.raises(Exception):
        fluvio.FluvioAdmin.connect_with_config(cfg)
