"""``fluvial processor create --invoker grpc://HOST:PORT`` (riff's gRPC invoker) and its errors."""

from __future__ import annotations

import json
import socket

import pytest


def test_a_processor_with_an_invoker(local_cluster, fresh_topic):
    pytest.importorskip("grpc", reason="grpcio (the riff extra) is not installed")
    src, dst = fresh_topic(), fresh_topic()
    for t in (src, dst):
        assert local_cluster.invoke("topic", "create", t).exit_code == 0
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"grpc://127.0.0.1:{port}"
    r = local_cluster.invoke("processor", "create", "remote", "--invoker", url, "--input", src,
                             "--output", dst, "--window-count", "1", "--max-failures", "2")
    assert r.exit_code == 0, r.output
    described = json.loads(local_cluster.invoke("processor", "describe", "remote", "-O", "json").stdout)
    assert (described["invoker"], described["function"]) == (url, url)
    assert local_cluster.invoke("produce", src, input="x\n").exit_code == 0
    ran = local_cluster.run("run", "processor", "remote")
    assert ran.returncode == 1 and b"UNAVAILABLE" in ran.stderr, ran.stderr
    described = json.loads(local_cluster.invoke("processor", "describe", "remote", "-O", "json").stdout)
    assert described["state"] == "Failed" and f"riff invoker {url}: UNAVAILABLE" in described["last_error"]
    assert local_cluster.invoke("processor", "delete", "remote").exit_code == 0


def test_bad_invokers_are_usage_errors(local_cluster, monkeypatch):
    base = ["processor", "create", "p", "--input", "a", "--output", "b"]
    for url in ["http://h:1", "grpc://h", "grpc://:80", "grpc://h:0", "grpc://h:99999", "grpc://h:1/x"]:
        r = local_cluster.invoke(*base, "--invoker", url)
        assert r.exit_code == 2 and "must be grpc://HOST:PORT" in r.output, (url, r.output)
    monkeypatch.setattr("fluvial.processor.riff.grpc_available", lambda: False)
    r = local_cluster.invoke(*base, "--invoker", "grpc://127.0.0.1:8081")
    assert r.exit_code == 2 and "pip install 'fluvial[riff]'" in r.output, r.output
    assert "no processors" in local_cluster.invoke("processor", "list").output
