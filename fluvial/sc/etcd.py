"""The SC's metadata in etcd: a small client for etcd's v3 JSON gateway, and ``EtcdBackend``.

Why our own client: the Python etcd3 libraries are either unmaintained (``etcd3``, last release
2020, pinned to an old protobuf) or pull in grpcio and asyncio (``etcd3-py``, ``aetcd``), neither
of which fits a trio process. etcd serves the same v3 API as JSON over HTTP (the gRPC gateway,
``POST /v3/kv/range`` and friends, keys and values base64), which ``http.client`` speaks. The
calls block, so the trio layer runs the slow ones (watch, lease keepalive) in threads; a
transaction is one short request on loopback or a LAN, made inline like the file backend's fsync.

The request bodies and the decisions about answers are plain functions (``put_op``,
``mod_is``, ``EtcdBackend.plan`` ...), tested without etcd.

``EtcdBackend`` keeps one key per object, ``<prefix>/meta/<kind>/<name>``, holding the object in
the file backend's encoding (``FileBackend.encode`` of one object, with the SC-local epoch stamp
zeroed). Every save is one transaction whose compares are the ``mod_revision`` this SC last saw
for every key it writes or deletes (0 for a key it believes absent), plus, while it runs the
controller, the ``create_revision`` of its election key (fluvial.sc.election): two SCs never
overwrite each other's changes, and a controller that lost its election cannot write at all.
A failed compare raises ``MetadataConflict``: the SC undoes the change (fluvial.sc.state) and
the watch brings the newer version in (``accept``).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from fluvial.metadata.store import StoredObject
from fluvial.sc.backend import FileBackend, MetaReader, decode_objects

log = logging.getLogger("fluvial.sc.etcd")

DEFAULT_PREFIX = "/fluvial"
REQUEST_TIMEOUT = 2.0  # seconds per request and endpoint
WATCH_IDLE_SECONDS = 30.0  # a watch with nothing to say this long is opened again


class EtcdError(Exception):
    """etcd could not be reached on any endpoint, or answered with an error."""


class WatchCompacted(EtcdError):
    """The watch's start revision was compacted away: read everything again (``resync``)."""


class MetadataConflict(Exception):
    """A revision-guarded write lost: another SC changed a key first, or this SC no longer
    holds the controller election its write was guarded by."""


# ---------------------------------------------------------------------------------- pure


def parse_endpoints(url: str) -> list[tuple[str, int]]:
    """``etcd://h1:2379,h2:2379`` (or ``http://...``, or bare ``h:p,...``) -> [(host, port)].

    >>> parse_endpoints("etcd://a:1,b:2")
    [('a', 1), ('b', 2)]
    """
    rest = url.split("://", 1)[1] if "://" in url else url
    out = []
    for part in rest.strip("/").split(","):
        u = urlsplit("//" + part.strip())
        if not u.hostname or u.port is None:
            raise ValueError(f"an etcd endpoint must be host:port, got {part!r}")
        out.append((u.hostname, u.port))
    if not out:
        raise ValueError("no etcd endpoint given")
    return out


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text or "")


def prefix_end(key: str) -> str:
    """The ``range_end`` that selects every key starting with ``key`` (last byte + 1)."""
    b = key.encode()
    return (b[:-1] + bytes([b[-1] + 1])).decode()


def mod_is(key: str, revision: int) -> dict:
    """Compare: ``key``'s mod_revision equals ``revision`` (0: the key does not exist)."""
    return {"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}


def create_is(key: str, revision: int) -> dict:
    """Compare: ``key``'s create_revision equals ``revision`` (0: the key does not exist)."""
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": str(revision)}


def put_op(key: str, value: bytes, lease: int = 0) -> dict:
    put = {"key": b64(key), "value": b64(value)}
    if lease:
        put["lease"] = str(lease)
    return {"request_put": put}


def delete_op(key: str) -> dict:
    return {"request_delete_range": {"key": b64(key)}}


def range_op(key: str) -> dict:
    return {"request_range": {"key": b64(key)}}


@dataclass(frozen=True)
class Kv:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    lease: int = 0


def decode_kv(kv: Mapping) -> Kv:
    return Kv(unb64(kv["key"]).decode(), unb64(kv.get("value", "")), int(kv.get("mod_revision", 0)),
              int(kv.get("create_revision", 0)), int(kv.get("lease", 0)))


def header_revision(answer: Mapping) -> int:
    return int(answer.get("header", {}).get("revision", 0))


@dataclass(frozen=True)
class WatchEvent:
    kv: Kv
    deleted: bool


def decode_watch_line(line: bytes) -> tuple[list[WatchEvent], int, bool]:
    """One line of a ``/v3/watch`` stream -> (events, header revision, canceled)."""
    msg = json.loads(line)
    if "error" in msg:
        raise EtcdError(f"watch: {msg['error']}")
    res = msg.get("result", {})
    events = [WatchEvent(decode_kv(e["kv"]), e.get("type") == "DELETE") for e in res.get("events", [])]
    return events, header_revision(res), bool(res.get("canceled"))


# ------------------------------------------------------------------------------- client


class EtcdClient:
    """Blocking calls to etcd's JSON gateway. Each request goes to the endpoint that answered
    last, and on a connection error to the next one, so one member down changes nothing."""

    def __init__(self, endpoints: list[tuple[str, int]], timeout: float = REQUEST_TIMEOUT):
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._current = 0

    def call(self, path: str, body: Mapping) -> dict:
        data = json.dumps(body)
        errors = []
        for i in range(len(self.endpoints)):
            n = (self._current + i) % len(self.endpoints)
            host, port = self.endpoints[n]
            conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
            try:
                conn.request("POST", path, data, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                text = resp.read()
            except (OSError, http.client.HTTPException) as e:
                errors.append(f"{host}:{port}: {e}")
                continue
            finally:
                conn.close()
            answer = json.loads(text or b"{}")
            if resp.status != 200:
                msg = answer.get("message") or answer.get("error") or text[:200]
                if resp.status >= 500 and "leader" in str(msg):  # this member lost its quorum
                    errors.append(f"{host}:{port}: {msg}")
                    continue
                raise EtcdError(f"etcd {path}: {msg}")
            self._current = n
            return answer
        raise EtcdError(f"etcd unreachable: {'; '.join(errors)}")

    def range_prefix(self, prefix: str) -> tuple[list[Kv], int]:
        answer = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix))})
        return [decode_kv(kv) for kv in answer.get("kvs", [])], header_revision(answer)

    def get(self, key: str) -> Kv | None:
        kvs = self.call("/v3/kv/range", {"key": b64(key)}).get("kvs", [])
        return decode_kv(kvs[0]) if kvs else None

    def read_keys(self, keys: list[str]) -> tuple[dict[str, Kv | None], int]:
        """Every key's current value (None: absent), read at one revision, which is returned."""
        _, answer = self.txn([], [range_op(k) for k in keys])
        out = {}
        for key, r in zip(keys, answer.get("responses", [])):
            kvs = r.get("response_range", {}).get("kvs", [])
            out[key] = decode_kv(kvs[0]) if kvs else None
        return out, header_revision(answer)

    def txn(self, compare: list, success: list, failure: list = ()) -> tuple[bool, dict]:
        answer = self.call("/v3/kv/txn", {"compare": compare, "success": success, "failure": list(failure)})
        return bool(answer.get("succeeded")), answer

    def lease_grant(self, ttl: float) -> int:
        return int(self.call("/v3/lease/grant", {"TTL": str(max(1, round(ttl)))})["ID"])

    def lease_keepalive(self, lease: int) -> int:
        """The lease's remaining TTL; 0: it has expired (or was never granted)."""
        return int(self.call("/v3/lease/keepalive", {"ID": str(lease)}).get("result", {}).get("TTL", 0))

    def lease_revoke(self, lease: int) -> None:
        self.call("/v3/lease/revoke", {"ID": str(lease)})

    def watch(self, prefix: str, start_revision: int, on_events) -> int:
        """Stream changes under ``prefix`` from ``start_revision`` into ``on_events(events)``
        until the stream breaks or ``close_watch()``; returns the next revision to watch from
        (or raises EtcdError, with the revision in ``next_revision``). Blocking: run it in a
        thread."""
        host, port = self.endpoints[self._current]
        conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        self.next_revision = start_revision
        try:
            body = {"create_request": {"key": b64(prefix), "range_end": b64(prefix_end(prefix)),
                                       "start_revision": str(start_revision)}}
            conn.request("POST", "/v3/watch", json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise EtcdError(f"watch refused: {resp.status}")
            # a silent stream is read again from the next member: a link that drops packets
            # (rather than closing) must not leave this SC's cache stale for ever
            conn.sock.settimeout(WATCH_IDLE_SECONDS)
            self._watch_conn = conn
            while True:
                line = resp.readline()
                if not line:
                    raise EtcdError("watch stream closed")
                events, _rev, canceled = decode_watch_line(line)
                if canceled:
                    raise WatchCompacted(f"watch from revision {start_revision} canceled (compacted)")
                if events:
                    on_events(events)
                    self.next_revision = events[-1].kv.mod_revision + 1
        except WatchCompacted:
            raise
        except TimeoutError:  # idle: the caller watches again from ``next_revision``
            self._current = (self._current + 1) % len(self.endpoints)
            return self.next_revision
        except (OSError, http.client.HTTPException, ValueError) as e:
            self._current = (self._current + 1) % len(self.endpoints)
            raise EtcdError(f"watch on {host}:{port}: {e}") from e
        finally:
            self._watch_conn = None
            conn.close()

    def close_watch(self) -> None:
        """Ends a running ``watch`` from another thread."""
        conn = getattr(self, "_watch_conn", None)
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(2)
            except OSError:
                pass


# ------------------------------------------------------------------------------ backend


@dataclass(frozen=True)
class Change:
    """A remote change ``EtcdBackend.accept`` found new: put ``obj`` as ``name`` (None: delete)."""

    label: str
    name: str
    obj: StoredObject | None


class EtcdBackend:
    """``MetadataBackend`` over etcd (module docstring). ``guard`` is a list of extra compares
    every write must pass (the controller's election key while it holds it)."""

    def __init__(self, client: EtcdClient, prefix: str = DEFAULT_PREFIX):
        self.client = client
        self.prefix = prefix.rstrip("/") + "/meta/"
        self.guard: list[dict] = []
        # key -> (value or None for deleted, mod_revision): what this SC last saw in etcd
        self.known: dict[str, tuple[bytes | None, int]] = {}
        self.revision = 0  # the etcd revision this SC's view is complete up to
        self.conflicts = 0  # saves that lost a compare so far
        self.conflict_keys: list[str] = []  # the keys the last of them wrote
        self._kinds: dict[str, tuple[type, type, MetaReader | None]] = {}

    def key(self, label: str, name: str) -> str:
        return f"{self.prefix}{label}/{name}"

    def split(self, key: str) -> tuple[str, str]:
        label, _, name = key[len(self.prefix):].partition("/")
        return label, name

    @staticmethod
    def encode(obj: StoredObject) -> bytes:
        return FileBackend.encode([replace(obj, epoch=0)])

    def decode(self, label: str, name: str, value: bytes) -> StoredObject:
        spec_cls, status_cls, read_meta = self._kinds[label]
        return decode_objects(value, f"etcd {label}/{name}", spec_cls, status_cls, read_meta)[0]

    # ------------------------------------------------------------------------ interface

    def open(self) -> None:
        """Read everything under the prefix once; ``load`` then decodes from this snapshot and
        the watch continues from its revision."""
        kvs, rev = self.client.range_prefix(self.prefix)
        self.known = {kv.key: (kv.value, kv.mod_revision) for kv in kvs}
        self.revision = rev

    def load(self, label: str, spec_cls: type, status_cls: type,
             read_meta: MetaReader | None = None) -> list[StoredObject]:
        self._kinds[label] = (spec_cls, status_cls, read_meta)
        start = self.key(label, "")
        return [self.decode(label, key[len(start):], value) for key, (value, _) in sorted(self.known.items())
                if key.startswith(start) and value is not None]

    def plan(self, batch: Mapping[str, list[StoredObject]]) -> tuple[list[dict], list[dict], dict[str, bytes | None]]:
        """(compares, operations, key -> new value or None) that turn what this SC last saw
        into ``batch``; empty when nothing differs. Pure over ``known`` and ``guard``."""
        compare, ops, writes = list(self.guard), [], {}
        for label, objects in batch.items():
            start = self.key(label, "")
            wanted = {self.key(label, o.name): self.encode(o) for o in objects}
            stale = [k for k, (v, _) in self.known.items() if k.startswith(start) and v is not None
                     and k not in wanted]
            for key, value in wanted.items():
                old, rev = self.known.get(key, (None, 0))
                if old != value:
                    compare.append(mod_is(key, rev if old is not None else 0))
                    ops.append(put_op(key, value))
                    writes[key] = value
            for key in stale:
                compare.append(mod_is(key, self.known[key][1]))
                ops.append(delete_op(key))
                writes[key] = None
        return compare, ops, writes

    def save(self, batch: Mapping[str, list[StoredObject]], changed=None) -> None:
        compare, ops, writes = self.plan(batch)
        if not ops:
            return
        ok, answer = self.client.txn(compare, ops)
        if not ok:
            self.conflicts += 1
            self.conflict_keys = list(writes)
            raise MetadataConflict("another SC changed this metadata first (or this SC is no "
                                   "longer the controller); reload and retry")
        rev = header_revision(answer)
        for key, value in writes.items():
            self.known[key] = (value, rev)

    def reserve_producer_ids(self, block: int) -> tuple[int, int]:
        """A block of producer ids no other SC holds, as (first id, end): the end of the last
        block handed out lives in one key, moved on by compare-and-swap. Not fenced by the
        election: every SC serves producer ids. Raises OSError when etcd cannot be reached or
        the swap keeps losing."""
        key = self.prefix.removesuffix("meta/") + "producer-ids"
        try:
            for _ in range(50):
                kv = self.client.get(key)
                start = int(kv.value) if kv else 0
                ok, _ = self.client.txn([mod_is(key, kv.mod_revision if kv else 0)],
                                        [put_op(key, str(start + block).encode())])
                if ok:
                    return start, start + block
        except (EtcdError, ValueError) as e:
            raise OSError(f"cannot reserve producer ids in etcd: {e}") from e
        raise OSError("cannot reserve producer ids in etcd: every try lost a race")

    def fresh(self, found: Mapping[str, Kv | None], revision: int) -> list[Change]:
        """The changes in a fresh read of some keys (``EtcdClient.read_keys``) at ``revision``."""
        return self.accept([WatchEvent(kv, False) if kv is not None else
                            WatchEvent(Kv(key, b"", revision, 0), True) for key, kv in found.items()])

    def resync(self, kvs: list[Kv], revision: int) -> list[Change]:
        """The changes between what this SC saw and a fresh read of the whole prefix at
        ``revision`` (after a watch fell behind a compaction): newer keys, and deletions of
        keys no longer there."""
        present = {kv.key for kv in kvs}
        gone = [WatchEvent(Kv(key, b"", revision, 0), True) for key, (value, _) in self.known.items()
                if value is not None and key not in present]
        return self.accept([WatchEvent(kv, False) for kv in kvs] + gone)

    def accept(self, events: list[WatchEvent]) -> list[Change]:
        """Fold watched events into ``known``; returns the changes this SC has not made or seen
        yet (a write of its own comes back with the revision it already knows)."""
        out = []
        for ev in events:
            key, rev = ev.kv.key, ev.kv.mod_revision
            self.revision = max(self.revision, rev)
            if not key.startswith(self.prefix) or rev <= self.known.get(key, (None, 0))[1]:
                continue
            label, name = self.split(key)
            if label not in self._kinds:
                continue
            self.known[key] = (None if ev.deleted else ev.kv.value, rev)
            out.append(Change(label, name, None if ev.deleted else self.decode(label, name, ev.kv.value)))
        return out
