"""SmartModules with the official ``fluvio`` client: ``ConsumerConfig().smartmodule(...)`` with
``partition_consumer(...).stream_with_config(...)``, AdHoc (a wasm path, which the client gzips) and
Predefined (``FluvioAdmin.create_smartmodule``, which sends raw wasm). The modules are the WAT ones
of tests/smartmodule/modules, compiled at test time."""

from __future__ import annotations

from pathlib import Path

import pytest

import fluvio
from fluvio import Offset

from smartmodule.modules import write_wasm

from .conftest import (
    Cluster, error_text, finish_producer_proc, produce_strings, start_producer_proc, take, unique_name,
)

pytestmark = pytest.mark.compat

WORDS = ["apple", "kiwi", "banana", "fig", "pear"]


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("wasm")
    return {n: write_wasm(n, d) for n in ("filter", "map", "aggregate", "filter_param", "trap", "infinite_loop")}


def _topic(cluster: Cluster, values: list[str]) -> str:
    topic = unique_name("sm")
    cluster.admin().create_topic(topic)
    if values:
        produce_strings(cluster.connect(), topic, values)
    return topic


def _stream(cluster: Cluster, topic: str, *, continuous: bool = False, **smartmodule) -> list:
    config = fluvio.ConsumerConfig()
    config.smartmodule(**smartmodule)
    if not continuous:
        config.disable_continuous()
    return cluster.connect().partition_consumer(topic, 0).stream_with_config(Offset.beginning(), config)


def test_adhoc_filter(cluster: Cluster, modules: dict[str, Path]) -> None:
    topic = _topic(cluster, WORDS)
    got = [r.value_string() for r in _stream(cluster, topic, path=str(modules["filter"]))]
    # (the official client numbers a response's records base_offset + index, with Fluvio's SPU too,
    # so offsets are not asserted here; fluvial's client gets the source offsets)
    assert got == ["apple", "banana", "pear"]


def test_non_continuous_stream_ends_when_a_filter_drops_the_last_records(cluster: Cluster,
                                                                          modules: dict[str, Path]) -> None:
    """The official client ends a non-continuous stream by counting each batch's offset span:
    the SPU's batches must span the input the filter dropped, at the end too."""
    topic = _topic(cluster, ["apple", "kiwi", "fig"])
    assert [r.value_string() for r in _stream(cluster, topic, path=str(modules["filter"]))] == ["apple"]
    topic = _topic(cluster, ["kiwi", "fig"])
    assert [r.value_string() for r in _stream(cluster, topic, path=str(modules["filter"]))] == []


def test_adhoc_params_and_aggregate(cluster: Cluster, modules: dict[str, Path]) -> None:
    topic = _topic(cluster, WORDS)
    got = [r.value_string() for r in _stream(cluster, topic, path=str(modules["filter_param"]),
                                             params={"needle": "an"})]
    assert got == ["banana"]
    got = [r.value_string() for r in _stream(cluster, topic, path=str(modules["aggregate"]),
                                             kind=fluvio.SmartModuleKind.Aggregate, aggregate=list(b">"))]
    assert got == [">apple", ">applekiwi", ">applekiwibanana", ">applekiwibananafig",
                   ">applekiwibananafigpear"]


def test_predefined_created_with_the_official_admin(cluster: Cluster, modules: dict[str, Path]) -> None:
    admin = cluster.admin()
    name = unique_name("upper")
    admin.create_smartmodule(name, str(modules["map"]), False)
    assert name in {m.name() for m in admin.list_smartmodules([])}
    topic = _topic(cluster, WORDS[:2])
    assert [r.value_string() for r in _stream(cluster, topic, name=name)] == ["APPLE", "KIWI"]
    admin.delete_smartmodule(name)
    assert name not in {m.name() for m in admin.list_smartmodules([])}


def test_live_tail_through_a_map_while_another_process_produces(cluster: Cluster,
                                                                modules: dict[str, Path]) -> None:
    topic = _topic(cluster, [])
    stream = _stream(cluster, topic, continuous=True, path=str(modules["map"]))
    proc = start_producer_proc(cluster, topic, 20, prefix="live", flush_every=5)
    got = [(r.offset(), r.value_string()) for r in take(stream, 20)]
    finish_producer_proc(proc)
    assert got == [(i, f"LIVE-{i}") for i in range(20)]


@pytest.mark.parametrize("module, text", [("trap", "`unreachable` instruction executed"),
                                          ("infinite_loop", "all fuel consumed")])
def test_hostile_module_errors_reach_the_client(cluster: Cluster, modules: dict[str, Path],
                                                module: str, text: str) -> None:
    topic = _topic(cluster, WORDS[:2])
    with pytest.raises(Exception) as e:
        list(_stream(cluster, topic, path=str(modules[module])))
    assert text in error_text(e.value)
    # the SPU serves on
    assert [r.value_string() for r in _stream(cluster, topic, path=str(modules["map"]))] == ["APPLE", "KIWI"]


def test_unknown_predefined_name(cluster: Cluster) -> None:
    topic = _topic(cluster, WORDS[:1])
    with pytest.raises(Exception) as e:
        list(_stream(cluster, topic, name="no-such-module"))
    assert "SmartModule no-such-module was not found" in error_text(e.value)
