"""The streams gateway (trio): iii's streams protocol over WebSocket, on fluvial's log.

    async with fluvial.connect() as fl:
        port = await nursery.start(serve_gateway, fl, GatewayConfig(port=0))

The bytes and decisions are elsewhere and pure: ``model`` (records -> state and events),
``frames`` (client frames), ``registry`` (who gets what), ``http`` (requests, routes). This
module only moves them:

* one ``StreamView`` per stream that a socket joined: it reads the stream's topic from the
  beginning (the state), then tails it and publishes every change, in log order, to the
  sockets the registry names. Nobody has to call the gateway for that: writes from any client
  reach it through the log, and every gateway on the cluster computes the same events;
* one task pair per socket: a reader that parses frames and joins or leaves, and a writer that
  drains the socket's bounded queue. A socket whose queue overflows (a slow subscriber) is
  closed; the others are not affected.

Resource handling: everything runs in the nursery of ``serve_gateway``; cancelling it closes
every socket and stops the views. Error handling: a bad frame is answered with an ``error``
frame; a bad request with an HTTP error; a failing hook counts as a refusal; a view whose
consumer fails is restarted from where it was.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import socket
import ssl
from dataclasses import dataclass
from importlib import resources
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection, BytesMessage, CloseConnection, Ping, RejectConnection, Request, TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from fluvial.client.streams import read_partition, topic_exists
from fluvial.client.types import Offset
from fluvial.errors import FluvialError
from fluvial.gateway import http
from fluvial.gateway.frames import (
    MAX_FRAME_BYTES, FrameError, Join, Subscription, encode, error_frame, parse_client_frame,
    unauthorized_frame, ws_text_frame,
)
from fluvial.gateway.hooks import DEFAULT_HOOK_TIMEOUT, auth_context, call_hook, join_allowed
from fluvial.gateway.model import (
    PartitionState, StreamError, check_name, frame, partition_for_group, sync_frame,
    topic_for_stream,
)
from fluvial.gateway.registry import Registry, TooManySubscriptions
from fluvial.net.tls import TlsStream

log = logging.getLogger("fluvial.gateway")

DEFAULT_PORT = 31112
#: The most queued frames one write sends.
WRITE_COALESCE = 1024
#: Seconds between attempts to (re)open a stream's topic.
VIEW_RETRY_SECONDS = 0.5


@dataclass
class GatewayConfig:
    """Args:
        host, port: where to listen (port 0: any free port, returned by ``serve_gateway``).
        auth_function, on_join, on_leave: callables (``hooks``), or None.
        hook_timeout: seconds a hook may take.
        max_connections: sockets (and HTTP requests) at once; more get HTTP 503.
        max_frame_bytes: the largest client frame (larger: the socket is closed, 1009).
        max_subscriptions: per socket.
        queue_size: frames queued for one socket; a socket whose queue is full is closed.
        history_size: events kept per partition for resuming subscribers (``since``).
        handshake_timeout: seconds to receive a request head.
        send_buffer_bytes: the kernel's send buffer of each socket (None: the kernel's own
            autotuning, up to megabytes); with the queue, what a slow subscriber may hold.
        tail_fetch_bytes: the most record bytes per fetch when tailing a stream: the most
            frames published at once before the sockets' writers get to run.
        ssl_context: serve TLS (wss://, https://) with it.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    auth_function: Any = None
    on_join: Any = None
    on_leave: Any = None
    hook_timeout: float = DEFAULT_HOOK_TIMEOUT
    max_connections: int = 10_000
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_body_bytes: int = 1024 * 1024
    max_subscriptions: int = 1000
    queue_size: int = 10_000
    history_size: int = 10_000
    handshake_timeout: float = 10.0
    send_buffer_bytes: int | None = None
    tail_fetch_bytes: int = 256 * 1024
    ssl_context: ssl.SSLContext | None = None


class StreamView:
    """The state of one stream, kept current by tailing its topic; publishes each change."""

    def __init__(self, gateway: Gateway, stream: str):
        self.gateway = gateway
        self.stream = stream
        self.topic = topic_for_stream(stream)
        self.partitions: dict[int, PartitionState] = {}
        self.partition_count = 0
        self.ready = trio.Event()

    def state_for(self, group: str) -> PartitionState | None:
        if not self.partition_count:
            return None
        return self.partitions.get(partition_for_group(group, self.partition_count))

    async def _exists(self) -> bool:
        while True:
            try:
                return await topic_exists(self.gateway.fl, self.topic)
            except FluvialError as e:
                log.warning("stream %s: no metadata (%s); retrying", self.stream, e)
                await trio.sleep(VIEW_RETRY_SECONDS)

    async def run(self) -> None:
        fl = self.gateway.fl
        load_first = await self._exists()
        if not load_first:
            # No topic yet: joins see empty state now, and every record once it exists.
            self.ready.set()
            while not await self._exists():
                await fl.metadata.wait_changed(timeout=VIEW_RETRY_SECONDS)
        count = fl.metadata.partition_count(self.topic)
        self.partitions = {p: PartitionState(history_size=self.gateway.config.history_size)
                           for p in range(count)}
        self.partition_count = count  # joins from now on see these states (empty until loaded)
        async with trio.open_nursery() as nursery:
            for p in range(count):
                await nursery.start(self._tail, p, load_first)
            self.ready.set()

    async def _tail(self, partition: int, load_first: bool,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        fl = self.gateway.fl
        state = self.partitions[partition]
        if load_first:
            while True:
                try:
                    await read_partition(fl, self.topic, partition, state)
                    break
                except FluvialError as e:
                    log.warning("stream %s: loading partition %d failed (%s); retrying",
                                self.stream, partition, e)
                    await trio.sleep(VIEW_RETRY_SECONDS)
        task_status.started()
        while True:
            try:
                async with fl.consumer(self.topic, partition=partition,
                                       offset=Offset.absolute(state.next_offset),
                                       max_bytes=self.gateway.config.tail_fetch_bytes,
                                       isolation="read_committed") as consumer:
                    while records := await consumer.receive_many():
                        events = []
                        for r in records:
                            if r.offset < state.next_offset:
                                continue
                            ev = state.apply(r.offset, r.key, r.value, r.timestamp)
                            if ev is not None:
                                events.append(ev)
                        self.gateway.publish(self.stream, events)
                        await trio.sleep(0)  # let the sockets' writers drain between batches
            except FluvialError as e:
                log.warning("stream %s: tailing partition %d failed (%s); resuming at %d",
                            self.stream, partition, e, state.next_offset)
            await trio.sleep(VIEW_RETRY_SECONDS)


@dataclass(eq=False)
class _Socket:
    id: int
    send: trio.MemorySendChannel
    scope: trio.CancelScope
    context: Any = None
    closed_reason: str | None = None
    mid_frame: bool = False  # part of a frame is written and the rest is not (yet)
    closing: bool = False  # no more frames: the connection is being closed
    pending: int = 0  # frames queued or held by the writer, not yet written
    direct: socket.socket | None = None  # plaintext: the socket, for writes without a task switch


@dataclass
class GatewayStats:
    connections: int = 0
    refused: int = 0
    slow_closed: int = 0
    frames_sent: int = 0


class Gateway:
    def __init__(self, fl: Any, config: GatewayConfig, nursery: trio.Nursery):
        self.fl = fl
        self.config = config
        self.nursery = nursery
        self.registry = Registry(config.max_subscriptions)
        self.views: dict[str, StreamView] = {}
        self.sockets: dict[int, _Socket] = {}
        self.streams = fl.streams()
        self.stats = GatewayStats()
        self._ids = itertools.count(1)
        self._slots = trio.Semaphore(config.max_connections)

    # -- fan-out ---------------------------------------------------------------------------

    def view(self, stream: str) -> StreamView:
        v = self.views.get(stream)
        if v is None:
            v = self.views[stream] = StreamView(self, stream)
            self.nursery.start_soon(v.run)
        return v

    def publish(self, stream: str, events: list) -> None:
        """Send a batch of changes (in log order) to their subscribers: each change is framed
        once, and each socket gets its frames of the batch in one write."""
        out: dict[int, list[bytes]] = {}
        for ev in events:
            targets = self.registry.targets(stream, ev.group, ev.id)
            if targets:
                data = ws_text_frame(encode(frame(stream, ev)))
                for sid in targets:
                    out.setdefault(sid, []).append(data)
        for sid, frames in out.items():
            self._push(self.sockets.get(sid), frames[0] if len(frames) == 1 else b"".join(frames),
                       len(frames))

    def _send_json(self, sock: _Socket, msg: dict) -> None:
        self._push(sock, ws_text_frame(encode(msg)))

    def _push(self, sock: _Socket | None, data: bytes, frames: int = 1) -> None:
        """Send or queue ``frames`` whole WebSocket frames (``data``) for ``sock``; one more
        than ``queue_size`` frames waiting closes it (a slow subscriber)."""
        if sock is None or sock.closed_reason or sock.closing:
            return
        if sock.direct is not None and sock.pending == 0:
            # Fast path: nothing queued, so write now, without waking the writer task (with a
            # hundred subscribers, a hundred task switches per change were the gateway's cost).
            try:
                n = sock.direct.send(data)
            except BlockingIOError:
                n = 0
            except OSError:
                return  # the reader sees the broken connection
            if n == len(data):
                self.stats.frames_sent += frames
                return
            if n:
                sock.mid_frame = True  # until the writer has sent the rest of this frame
            data = data[n:]  # the rest goes through the queue, ahead of anything after it
        if sock.pending + frames > self.config.queue_size:
            sock.closed_reason = "slow subscriber: queue overflow"
            self.stats.slow_closed += 1
            sock.scope.cancel()
            return
        try:
            sock.send.send_nowait((data, frames))
            sock.pending += frames
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def join(self, sock: _Socket, sub: Subscription) -> None:
        if self.config.on_join is not None:
            outcome = await call_hook("join", self.config.on_join, sub.hook_args(sock.context),
                                      self.config.hook_timeout)
            if not join_allowed(outcome):
                self._send_json(sock, unauthorized_frame(sub, 0))
                return
        view = self.view(sub.stream)
        await view.ready.wait()
        # From here to the registration nothing awaits: the snapshot and the events after it
        # are one sequence.
        state = view.state_for(sub.group)
        try:
            self.registry.add(sock.id, sub)
        except TooManySubscriptions as e:
            self._send_json(sock, error_frame("too_many_subscriptions", str(e)))
            return
        events = None
        if sub.since is not None and state is not None:
            events = state.since(sub.since, sub.group, sub.id)
        if events is not None:
            for ev in events:
                self._send_json(sock, frame(sub.stream, ev))
            return
        if state is None:
            data, ts = (None if sub.id is not None else []), 0
        else:
            data = state.get(sub.group, sub.id) if sub.id is not None else state.list(sub.group)
            ts = state.clock
        self._send_json(sock, sync_frame(sub.stream, sub.group, sub.id, data, ts))

    async def leave(self, sock: _Socket, sub: Subscription) -> None:
        removed = self.registry.remove(sock.id, sub.subscription_id)
        if removed is not None:
            await self._leave_hook(sock, removed)

    async def _leave_hook(self, sock: _Socket, sub: Subscription) -> None:
        if self.config.on_leave is not None:
            await call_hook("leave", self.config.on_leave, sub.hook_args(sock.context),
                            self.config.hook_timeout)

    # -- connections -------------------------------------------------------------------------

    async def handle(self, stream: trio.SocketStream) -> None:
        if self.config.send_buffer_bytes is not None:
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.send_buffer_bytes)
        if self.config.ssl_context is not None:
            stream = TlsStream(stream, self.config.ssl_context, server_side=True)
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            self.stats.refused += 1
            await _reply_and_close(stream, http.error_response(503, "too many connections"))
            return
        try:
            self.stats.connections += 1
            await self._serve(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
            pass
        except Exception:  # a bug must cost one connection, never the gateway
            log.exception("gateway connection failed")
        finally:
            self._slots.release()
            await _close(stream)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        buffer = b""
        try:
            with trio.fail_after(self.config.handshake_timeout):
                while (split := http.split_head(buffer)) is None:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
            head, rest = split
            req = http.parse_head(head)
        except http.HttpError as e:
            await _reply_and_close(stream, http.error_response(e.status, str(e)))
            return
        except trio.TooSlowError:
            return
        if req.is_websocket and req.path == "/":
            await self._serve_websocket(stream, req, head + rest)
        else:
            await self._serve_http(stream, req, rest)

    async def _authenticate(self, stream: trio.abc.Stream, req: http.RequestHead) -> tuple[bool, Any]:
        if self.config.auth_function is None:
            return True, None
        arg = {"headers": dict(req.headers), "path": req.path, "query_params": req.query,
               "addr": _peer(stream)}
        return auth_context(await call_hook("auth", self.config.auth_function, arg,
                                            self.config.hook_timeout))

    async def _serve_websocket(self, stream: trio.abc.Stream, req: http.RequestHead,
                               received: bytes) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        try:
            ws.receive_data(received)
            handshake = next(iter(ws.events()), None)
        except RemoteProtocolError as e:
            await _reply_and_close(stream, http.error_response(400, f"bad WebSocket handshake: {e}"))
            return
        if not isinstance(handshake, Request):
            await _reply_and_close(stream, http.error_response(400, "bad WebSocket handshake"))
            return
        accepted, context = await self._authenticate(stream, req)
        if not accepted:
            await _reply_and_close(stream, ws.send(RejectConnection(status_code=401)))
            return
        await stream.send_all(ws.send(AcceptConnection()))
        # Bounded by frames in _push (queue_size); the channel itself only hands them over.
        send, receive = trio.open_memory_channel[Any](math.inf)
        sock = _Socket(next(self._ids), send, trio.CancelScope(), context)
        if isinstance(stream, trio.SocketStream):
            sock.direct = socket.socket(fileno=os.dup(stream.socket.fileno()))
            sock.direct.setblocking(False)
        self.sockets[sock.id] = sock
        try:
            last = b""
            with sock.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, stream, sock, receive)
                    last = await self._reader(stream, ws, sock)
                    nursery.cancel_scope.cancel()
            sock.closing = True
            if sock.closed_reason:
                log.info("closed socket %d: %s", sock.id, sock.closed_reason)
                last = _close_bytes(ws, 1008, sock.closed_reason)
            if last and not sock.mid_frame:  # after half a data frame a close frame is garbage
                with trio.move_on_after(1):
                    await _send_quietly(stream, last)
                    if ws.state is ConnectionState.LOCAL_CLOSING:
                        await _drain_until_closed(stream, ws)
        finally:
            del self.sockets[sock.id]
            if sock.direct is not None:
                sock.direct.close()
            send.close()
            subs = self.registry.drop_socket(sock.id)
            with trio.CancelScope(shield=True), trio.move_on_after(self.config.hook_timeout):
                for sub in subs:
                    await self._leave_hook(sock, sub)

    async def _writer(self, stream, sock: _Socket, receive: trio.MemoryReceiveChannel) -> None:
        async for item in receive:
            # Everything queued goes out in one write: one turn of this task drains the queue.
            items = [item]
            while len(items) < WRITE_COALESCE:
                try:
                    items.append(receive.receive_nowait())
                except trio.WouldBlock:
                    break
            data = b"".join(d for d, _ in items)
            frames = sum(k for _, k in items)
            sock.mid_frame = True
            await stream.send_all(data)
            sock.mid_frame = False
            sock.pending -= frames
            self.stats.frames_sent += frames

    async def _reader(self, stream, ws: WSConnection, sock: _Socket) -> bytes:
        """Read and act on frames until the socket closes; the bytes to send last."""
        parts: list[str] = []
        size = 0
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return b""
            try:
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, CloseConnection):
                        return ws.send(event.response())
                    if isinstance(event, Ping):
                        self._push(sock, ws.send(event.response()))
                    elif isinstance(event, (TextMessage, BytesMessage)):
                        size += len(event.data)
                        if size > self.config.max_frame_bytes:
                            return _close_bytes(ws, 1009, "frame too large")
                        parts.append(event.data if isinstance(event, TextMessage)
                                     else event.data.decode("utf-8", "replace"))
                        if event.message_finished:
                            text = "".join(parts)
                            parts, size = [], 0
                            await self._on_frame(sock, text)
            except (RemoteProtocolError, LocalProtocolError) as e:
                log.info("socket %d: protocol error %s", sock.id, e)
                return b""

    async def _on_frame(self, sock: _Socket, text: str) -> None:
        try:
            msg = parse_client_frame(text, self.config.max_frame_bytes)
        except FrameError as e:
            self._send_json(sock, error_frame(e.code, str(e)))
            return
        if isinstance(msg, Join):
            await self.join(sock, msg.sub)
        else:
            await self.leave(sock, msg.sub)

    # -- HTTP --------------------------------------------------------------------------------

    async def _serve_http(self, stream: trio.abc.Stream, req: http.RequestHead, rest: bytes) -> None:
        try:
            op = http.route(req.method, req.path)
            n = req.content_length
            if n > self.config.max_body_bytes:
                raise http.HttpError(413, f"body larger than {self.config.max_body_bytes} bytes")
            body = rest
            with trio.fail_after(self.config.handshake_timeout):
                while len(body) < n:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    body += data
            if op.kind != "ui" and op.kind != "health":
                accepted, _ = await self._authenticate(stream, req)
                if not accepted:
                    raise http.HttpError(401, "unauthorized")
            reply = await self._http_op(op, body[:n])
        except http.HttpError as e:
            reply = http.error_response(e.status, str(e))
        except (StreamError, ValueError) as e:
            reply = http.error_response(400, str(e))
        except trio.TooSlowError:
            return
        except FluvialError as e:
            reply = http.error_response(503, str(e))
        await _reply_and_close(stream, reply)

    async def _http_op(self, op: http.Op, body: bytes) -> bytes:
        if op.kind == "ui":
            page = resources.files("fluvial.gateway").joinpath("ui.html").read_bytes()
            return http.response(200, page, "text/html; charset=utf-8")
        if op.kind == "health":
            return http.json_response(200, {"ok": True})
        check_name("stream name", op.stream)
        check_name("group", op.group)
        if op.kind in ("get", "list"):
            view = self.view(op.stream)
            await view.ready.wait()
            state = view.state_for(op.group)
            if op.kind == "list":
                return http.json_response(200, [] if state is None else state.list(op.group))
            item = None if state is None else state.get(op.group, op.id)
            if item is None:
                raise http.HttpError(404, "no such item")
            return http.json_response(200, item)
        if op.kind == "set":
            item = await self.streams.set(op.stream, op.group, op.id, http.parse_json_body(body))
            return http.json_response(200, item)
        if op.kind == "delete":
            await self.streams.delete(op.stream, op.group, op.id)
            return http.json_response(200, {"deleted": op.id})
        msg = http.parse_json_body(body)
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            raise http.HttpError(400, 'a custom event is {"type": NAME, "data": ..., "id": ID?}')
        item_id = msg.get("id")
        await self.streams.send(op.stream, op.group, msg["type"], msg.get("data"),
                                item_id if isinstance(item_id, str) else None)
        return http.json_response(200, {"sent": msg["type"]})


def _close_bytes(ws: WSConnection, code: int, reason: str) -> bytes:
    try:
        return ws.send(CloseConnection(code=code, reason=reason))
    except LocalProtocolError:
        return b""


def _peer(stream: trio.abc.Stream) -> str:
    inner = getattr(stream, "transport_stream", stream)
    try:
        host, port = inner.socket.getpeername()[:2]
        return f"{host}:{port}"
    except (AttributeError, OSError):
        return ""


async def _drain_until_closed(stream: trio.abc.Stream, ws: WSConnection) -> None:
    """After our close frame: read until the peer answers it (the closing handshake) or leaves."""
    try:
        while ws.state is ConnectionState.LOCAL_CLOSING:
            data = await stream.receive_some(65536)
            if not data:
                return
            ws.receive_data(data)
            for _ in ws.events():
                pass
    except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError,
            RemoteProtocolError):
        pass


async def _reply_and_close(stream: trio.abc.Stream, reply: bytes) -> None:
    """Send an HTTP reply and close without a reset: unread request bytes at close would make
    the kernel send RST, and the client could lose the reply. So: reply, end our side, and read
    what the client still sends (a second at most)."""
    await _send_quietly(stream, reply)
    with trio.move_on_after(1):
        try:
            if isinstance(stream, trio.SocketStream):
                await stream.send_eof()
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
            pass
    await _close(stream)


async def _send_quietly(stream: trio.abc.Stream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
        pass


async def _close(stream: trio.abc.Stream) -> None:
    with trio.move_on_after(1) as scope:
        scope.shield = True
        try:
            await stream.aclose()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
            pass


async def serve_gateway(fl: Any, config: GatewayConfig, *,
                        task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve the gateway on ``config.host:config.port`` over the connection ``fl``; reports the
    bound port through ``task_status`` and runs until cancelled."""
    async with trio.open_nursery() as nursery:
        gateway = Gateway(fl, config, nursery)
        listeners = await trio.open_tcp_listeners(config.port, host=config.host)
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, gateway.handle, listeners)
        gateway.port = port
        task_status.started(gateway)
        await trio.sleep_forever()


__all__ = ["DEFAULT_PORT", "Gateway", "GatewayConfig", "serve_gateway"]
