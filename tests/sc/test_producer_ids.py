"""Producer ids (fluvial.sc.producer_ids): fresh, never reused after a restart, and a damaged
file stops the SC from handing out ids rather than repeating them."""

from __future__ import annotations

import pytest
import trio

from fluvial.net.multiplexer import open_connection
from fluvial.protocol.producer_api import AllocateProducerIdRequest
from fluvial.sc.producer_ids import ProducerIdAllocator, ProducerIdsCorrupt
from fluvial.sc.server import ScConfig, serve_sc


def test_ids_are_fresh_across_restarts_and_blocks(tmp_path):
    path = tmp_path / "sc" / "producer_ids"
    a = ProducerIdAllocator(path, block=3)
    first = [a.allocate() for _ in range(5)]
    assert first == [0, 1, 2, 3, 4]
    b = ProducerIdAllocator(path, block=3)  # a restart: starts after the last reserved block
    assert b.allocate() == 6
    assert ProducerIdAllocator(path, block=3).allocate() == 9


def test_a_damaged_file_is_refused(tmp_path):
    path = tmp_path / "producer_ids"
    ProducerIdAllocator(path).allocate()
    data = bytearray(path.read_bytes())
    data[3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ProducerIdsCorrupt):
        ProducerIdAllocator(path)
    path.write_bytes(b"short")
    with pytest.raises(ProducerIdsCorrupt):
        ProducerIdAllocator(path)


async def test_an_sc_with_a_damaged_file_answers_without_an_id(tmp_path):
    (tmp_path / "producer_ids").write_bytes(b"garbage")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            public, _ = await nursery.start(serve_sc, ScConfig(data_dir=tmp_path, public_port=0,
                                                               private_port=0))
            async with open_connection("127.0.0.1", public) as conn:
                resp = await conn.call(AllocateProducerIdRequest())
            assert not resp.error_code.ok and resp.producer_id == -1
            nursery.cancel_scope.cancel()
