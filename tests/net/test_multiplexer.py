"""The client multiplexer: routing by correlation id, streams, timeouts, losing the connection."""

import random

import pytest
import trio
import trio.testing

from fluvial.errors import ConnectionLost, Error, ErrorCode, FluvialError, RequestTimedOutError
from fluvial.net.errors import ConnectError, RequestTimeout
from fluvial.net.multiplexer import open_connection, open_multiplexer
from fluvial.net.server import serve_connection
from fluvial.protocol.api import (
    ApiVersionsRequest,
    ApiVersionsResponse,
    decode_request,
    encode_response,
)
from fluvial.protocol.codec import DecodeError
from harness.faults import Faults


async def test_many_concurrent_calls_answered_out_of_order_are_routed(echo_server, echo_api):
    E, M = echo_api.EchoRequest, echo_api.Mode
    n = 50
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", echo_server.port) as conn:
            results = {}

            async def one(i):
                resp = await conn.call(E(i * 3, f"req-{i}", M.GATHER, n), 0)
                results[i] = (resp.value, resp.text)

            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(one, i)
            assert results == {i: (i * 3, f"req-{i}") for i in range(n)}
            assert echo_server.max_in_flight == n
            assert conn.statistics().outstanding_requests == 0


async def test_stream_of_responses_on_one_correlation_id(echo_server, echo_api):
    E, M = echo_api.EchoRequest, echo_api.Mode
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", echo_server.port) as conn:
            async with conn.open_stream(E(100, "w", M.STREAM, 40), 0) as stream:
                assert stream.correlation_id == 1
                # A plain call on the same connection while the stream is open.
                assert (await conn.call(E(5), 0)).value == 5
                values = []
                async for resp in stream:
                    values.append(resp.value)
                    if len(values) == 40:
                        break
                assert values == list(range(100, 140))
                assert conn.statistics().outstanding_streams == 1
            assert conn.statistics().outstanding_streams == 0


async def test_closing_a_stream_drops_its_later_frames_without_stalling(echo_server, echo_api):
    E, M = echo_api.EchoRequest, echo_api.Mode
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", echo_server.port) as conn:
            async with conn.open_stream(E(0, "", M.STREAM, 60), 0, max_queued_frames=4) as stream:
                assert [(await stream.receive()).value for _ in range(2)] == [0, 1]
            # The reader may be blocked on the full queue: closing must release it.
            await echo_server.wait_until(lambda: echo_server.pushed == 60)
            # This answer is behind every pushed frame on the wire.
            assert (await conn.call(E(9), 0)).value == 9
            assert conn.statistics().frames_dropped > 0
            async for _ in stream:
                raise AssertionError("a closed stream yields nothing")


async def test_unknown_correlation_ids_are_discarded(echo_server, echo_api):
    E, M = echo_api.EchoRequest, echo_api.Mode
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", echo_server.port) as conn:
            resp = await conn.call(E(33, "right", M.STRAY), 0)
            assert (resp.value, resp.text) == (33, "right")
            assert conn.statistics().frames_dropped == 2
            assert (await conn.call(E(34), 0)).value == 34


async def test_waiters_and_streams_get_connection_lost_when_the_server_closes(echo_server,
                                                                            echo_api):
    E, M = echo_api.EchoRequest, echo_api.Mode
    errors = []
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", echo_server.port) as conn:

            async def waiter(i):
                try:
                    await conn.call(E(i, "", M.HOLD), 0)
                except ConnectionLost as exc:
                    errors.append(exc)

            async with conn.open_stream(E(0, "", M.STREAM, 3), 0) as stream:
                async with trio.open_nursery() as nursery:
                    for i in range(3):
                        nursery.start_soon(waiter, i)
                    await echo_server.wait_until(
                        lambda: echo_server.in_flight == 4 and echo_server.pushed == 3)
                    with pytest.raises(ConnectionLost):
                        await conn.call(E(0, "", M.CLOSE), 0)
                # Frames already queued are still delivered, then the stream ends with the error.
                assert [(await stream.receive()).value for _ in range(3)] == [0, 1, 2]
                with pytest.raises(ConnectionLost):
                    await stream.receive()
            assert len(errors) == 3
            assert not conn.is_open
            with pytest.raises(ConnectionLost):
                await conn.call(E(1), 0)
            with pytest.raises(ConnectionLost):
                async with conn.open_stream(E(1), 0):
                    pass


async def test_aclose_fails_pending_calls(echo_server, echo_api):
    E, M = echo_api.EchoRequest, echo_api.Mode
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", echo_server.port) as conn:
            async with trio.open_nursery() as nursery:

                async def pending():
                    with pytest.raises(ConnectionLost, match="closed by the client"):
                        await conn.call(E(0, "", M.HOLD), 0)

                nursery.start_soon(pending)
                await echo_server.wait_until(lambda: echo_server.in_flight == 1)
                await conn.aclose()
            await conn.wait_closed()


async def test_a_bad_frame_from_the_server_ends_the_connection(echo_server, echo_api):
    E, M = echo_api.EchoRequest, echo_api.Mode
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", echo_server.port) as conn:
            with pytest.raises(ConnectionLost, match="bad frame"):
                await conn.call(E(0, "", M.SHORT), 0)
        async with open_connection("127.0.0.1", echo_server.port, max_frame_bytes=64) as conn:
            assert (await conn.call(E(1, "small"), 0)).value == 1
            with pytest.raises(ConnectionLost, match="exceeds the limit"):
                await conn.call(E(2, "x" * 100), 0)


async def test_an_undecodable_response_fails_only_that_call(echo_server, echo_api):
    E, M = echo_api.EchoRequest, echo_api.Mode
    with trio.fail_after(10):
        async with open_connection("127.0.0.1", echo_server.port) as conn:
            with pytest.raises(DecodeError):
                await conn.call(E(0, "", M.EMPTY), 0)
            assert (await conn.call(E(4), 0)).value == 4


async def test_timeout_raises_request_timeout_and_the_connection_lives_on(echo_server, echo_api,
                                                                        autojump_clock):
    E, M = echo_api.EchoRequest, echo_api.Mode
    with trio.fail_after(100):
        async with open_connection("127.0.0.1", echo_server.port) as conn:
            start = trio.current_time()
            with pytest.raises(RequestTimeout) as info:
                await conn.call(E(1, "", M.HOLD), 0, timeout=5)
            assert trio.current_time() - start == pytest.approx(5)
            exc = info.value
            assert isinstance(exc, RequestTimedOutError) and isinstance(exc, FluvialError)
            assert exc.code == ErrorCode.RequestTimedOut and exc.error.args[0] == 5000
            assert "EchoRequest" in str(exc)
            echo_server.permits.release()  # the late answer arrives and is dropped
            assert (await conn.call(E(2), 0, timeout=5)).value == 2
            assert conn.statistics().frames_dropped == 1


@pytest.mark.parametrize("seed", range(3))
async def test_cancelled_calls_never_corrupt_the_connection(echo_server, echo_api, seed):
    # Writes trickle a byte at a time; callers are cancelled at random points.
    E = echo_api.EchoRequest
    rng = random.Random(seed)
    faults = Faults(seed, max_write_piece_bytes=1, delay_probability=0.5)
    with trio.fail_after(20):
        tcp = await trio.open_tcp_stream("127.0.0.1", echo_server.port)
        async with open_multiplexer(faults.wrap(tcp)) as conn:
            answered = {}

            async def one(i, cancel_after):
                with trio.CancelScope() as scope:
                    if cancel_after is not None:
                        async def cancel_later():
                            for _ in range(cancel_after):
                                await trio.lowlevel.checkpoint()
                            scope.cancel()
                        nursery.start_soon(cancel_later)
                    answered[i] = (await conn.call(E(i, f"t{i}" * i), 0)).text

            async with trio.open_nursery() as nursery:
                for i in range(30):
                    nursery.start_soon(one, i, rng.choice([None, rng.randint(0, 40)]))
            assert conn.is_open, faults
            assert 0 < len(answered) < 30, faults  # some were cancelled, some answered
            assert all(text == f"t{i}" * i for i, text in answered.items()), faults
            assert (await conn.call(E(99, "after"), 0)).text == "after", faults


async def test_connect_refused_raises_connect_error():
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()
    with trio.fail_after(10):
        with pytest.raises(ConnectError, match="cannot connect"):
            async with open_connection("127.0.0.1", port):
                pass


async def test_handshake_raises_the_servers_error_code():
    async def handler(conn, payload):
        header, _ = decode_request(payload, {18: ApiVersionsRequest})
        resp = ApiVersionsResponse(error_code=Error(ErrorCode.PermissionDenied))
        await conn.send(encode_response(resp, header.correlation_id, header.api_version))

    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_connection, right, handler)
            async with open_multiplexer(left) as conn:
                with pytest.raises(FluvialError) as info:
                    await conn.handshake()
                assert info.value.code == ErrorCode.PermissionDenied
                assert conn.versions is None
