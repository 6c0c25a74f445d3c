"""The fault-injecting stream, and the transport surviving fragmentation, delays and cuts."""

import pytest
import trio
import trio.testing

from fluvial.errors import ConnectionLost
from fluvial.net.multiplexer import open_multiplexer
from fluvial.net.server import serve_connection
from harness.faults import Faults


class RecordingStream(trio.abc.Stream):
    """A fake inner stream that records each write."""

    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    async def send_all(self, data):
        await trio.lowlevel.checkpoint()
        self.writes.append(bytes(data))

    async def wait_send_all_might_not_block(self):
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes=None):
        await trio.lowlevel.checkpoint()
        return b"x" * (max_bytes or 100)

    async def aclose(self):
        self.closed = True
        await trio.lowlevel.checkpoint()


async def test_writes_are_fragmented_and_reads_limited():
    inner = RecordingStream()
    stream = Faults(1, max_write_piece_bytes=3, max_read_bytes=2).wrap(inner)
    data = bytes(range(200))
    await stream.send_all(data)
    assert b"".join(inner.writes) == data
    assert max(map(len, inner.writes)) <= 3 and len(inner.writes) >= 67
    assert {len(await stream.receive_some(1000)) for _ in range(50)} == {1, 2}
    assert len(await stream.receive_some(1)) == 1


async def test_the_same_seed_makes_the_same_choices():
    def pieces(seed):
        inner = RecordingStream()
        return inner, Faults(seed, max_write_piece_bytes=16).wrap(inner)

    runs = []
    for seed in (5, 5, 6):
        inner, stream = pieces(seed)
        await stream.send_all(bytes(500))
        runs.append([len(w) for w in inner.writes])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


async def test_cut_after_n_bytes_ends_the_connection_for_both_sides():
    left, right = trio.testing.memory_stream_pair()
    faults = Faults(3, max_write_piece_bytes=4, cut_after_bytes=10)
    cut = faults.wrap(left)
    with pytest.raises(trio.BrokenResourceError, match="seed=3"):
        await cut.send_all(bytes(range(25)))
    assert cut.bytes_sent == 10
    received = bytearray()
    while chunk := await right.receive_some():
        received += chunk
    assert bytes(received) == bytes(range(10))  # exactly N bytes, then EOF
    with pytest.raises(trio.BrokenResourceError):
        await cut.receive_some()
    with pytest.raises(trio.BrokenResourceError):
        await cut.send_all(b"more")
    assert "cut after 10 bytes" in cut.events[0]


def test_faults_describe_themselves_and_check_arguments():
    assert str(Faults(9, max_write_piece_bytes=1, delay_probability=0.5)) == (
        "Faults(seed=9, max_write_piece_bytes=1, delay_probability=0.5, max_delay_seconds=0.0)")
    for bad in ({"max_write_piece_bytes": 0}, {"max_read_bytes": 0}, {"cut_after_bytes": -1},
                {"delay_probability": 2}):
        with pytest.raises(ValueError):
            Faults(0, **bad)


async def run_over_faulty_memory_streams(echo_server, faults, body):
    """Serve the echo handler over an in-memory pair with `faults` on both ends; run body(conn)."""
    left, right = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_connection, faults.wrap(right, salt=1), echo_server.handler)
        async with open_multiplexer(faults.wrap(left, salt=2)) as conn:
            await body(conn)
        nursery.cancel_scope.cancel()


def faults_for(seed):
    if seed == 0:  # every frame split at every byte, both ways, both sides
        return Faults(seed, max_write_piece_bytes=1, max_read_bytes=1)
    return Faults(seed, max_write_piece_bytes=seed % 5 + 1, max_read_bytes=seed % 7 + 1,
                  delay_probability=0.3)


@pytest.mark.parametrize("seed", range(6))
async def test_frames_split_across_reads_and_writes_are_decoded(echo_server, echo_api, seed):
    E, M = echo_api.EchoRequest, echo_api.Mode
    faults = faults_for(seed)

    async def body(conn):
        versions = await conn.handshake()
        assert versions.platform_version == "0.17.3", faults
        results = {}

        async def one(i):
            results[i] = (await conn.call(E(i, "abc" * i, M.GATHER, 8))).text

        async with conn.open_stream(E(50, "s", M.STREAM, 5)) as stream:
            async with trio.open_nursery() as nursery:
                for i in range(8):
                    nursery.start_soon(one, i)
            assert [(await stream.receive()).value for _ in range(5)] == [50, 51, 52, 53, 54], \
                faults
        assert results == {i: "abc" * i for i in range(8)}, faults

    with trio.fail_after(20):
        await run_over_faulty_memory_streams(echo_server, faults, body)


async def test_delays_in_virtual_time(echo_server, echo_api, autojump_clock):
    faults = Faults(11, max_write_piece_bytes=2, delay_probability=0.5, max_delay_seconds=3)

    async def body(conn):
        start = trio.current_time()
        resp = await conn.call(echo_api.EchoRequest(7, "slow"))
        assert (resp.value, resp.text) == (7, "slow"), faults
        assert trio.current_time() - start > 3, faults  # some delays did happen

    with trio.fail_after(1000):
        await run_over_faulty_memory_streams(echo_server, faults, body)


@pytest.mark.parametrize("cut_after_bytes", [0, 3, 20, 40])
async def test_a_cut_connection_fails_pending_calls_and_frees_the_server(echo_server, echo_api,
                                                                       cut_after_bytes):
    E, M = echo_api.EchoRequest, echo_api.Mode
    faults = Faults(cut_after_bytes, cut_after_bytes=cut_after_bytes)
    with trio.fail_after(10):
        tcp = await trio.open_tcp_stream("127.0.0.1", echo_server.port)
        async with open_multiplexer(faults.wrap(tcp)) as conn:
            # The first request frame is 29 bytes: with 40 it is sent whole and the second is cut.
            if cut_after_bytes > 29:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(conn.call, E(1, "", M.STREAM, 1), 0)
                    await echo_server.wait_until(lambda: echo_server.pushed == 1)
                    nursery.cancel_scope.cancel()
            with pytest.raises(ConnectionLost, match="fault injection"):
                await conn.call(E(2, "", M.HOLD), 0)
        # The server noticed and cancelled the stream handler.
        await echo_server.wait_until(lambda: echo_server.in_flight == 0)
