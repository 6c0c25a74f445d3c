"""Streams on the log (pure): how an item operation is stored as a record, and how records fold
back into item state and into the events subscribers receive.

The data model (issue 18, iii's streams):

* a stream is a topic (``topic_for_stream``); its groups are spread over the topic's partitions
  by the group alone (``partition_for_group``), so every change to a group is in one partition,
  in log order;
* an item is addressed by ``(group, id)``; its state is the latest value stored under the record
  key ``["<group>", "<id>"]`` (JSON), and a record with that key and an empty value is its
  tombstone (a delete). A compacted topic keeps exactly what this fold needs;
* a custom event is a record under the key ``["<group>"]`` whose value is
  ``{"id": I|null, "type": NAME, "data": ...}``; it changes no state.

``PartitionState.apply`` folds one record into the state of one partition and returns the
``StreamEvent`` that the change makes, with a timestamp from the partition's clock: the record's
timestamp, or one more than the last timestamp handed out when that is not newer. Timestamps
therefore strictly increase within a partition (so per item and per group, which clients need:
they drop a frame whose timestamp is not newer than the last one they applied), and two readers
of the same log compute the same events with the same timestamps.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fluvial.client.partitioner import partition_for_key

#: Topic names the SC accepts (lowercase letters, digits and '-', at most 63 characters).
_TOPIC_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: Limits on names, so that a key stays small and a topic name valid.
MAX_NAME_LENGTH = 256


class StreamError(ValueError):
    """A bad stream, group or id name, or a record that is not a stream record."""


def check_name(kind: str, name: Any) -> str:
    """``name`` if it is a usable stream, group or item name; else ``StreamError``."""
    if not isinstance(name, str) or not name:
        raise StreamError(f"{kind} must be a non-empty string, not {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise StreamError(f"{kind} is longer than {MAX_NAME_LENGTH} characters")
    return name


def topic_for_stream(stream: str) -> str:
    """The topic that holds ``stream``: the name itself when it is a valid topic name, else a
    sanitised prefix and a hash (``chatMessage`` -> ``s-chatmessage-<8 hex>``), so that every
    stream name maps to one valid topic and two names never share one."""
    check_name("stream name", stream)
    if _TOPIC_NAME.match(stream):
        return stream
    digest = hashlib.sha1(stream.encode()).hexdigest()[:8]
    clean = re.sub(r"[^a-z0-9-]+", "-", stream.lower()).strip("-")[:40] or "x"
    return f"s-{clean}-{digest}"


def item_key(group: str, item_id: str) -> bytes:
    return json.dumps([group, item_id], separators=(",", ":")).encode()


def event_key(group: str) -> bytes:
    return json.dumps([group], separators=(",", ":")).encode()


def group_of_key(key: bytes | None) -> str:
    """The group a record key belongs to (``StreamError`` for a key that is not ours)."""
    if key is None:
        raise StreamError("a stream record has a key")
    try:
        parts = json.loads(key)
    except (ValueError, UnicodeDecodeError) as e:
        raise StreamError(f"a stream record key is JSON: {e}") from None
    if (not isinstance(parts, list) or len(parts) not in (1, 2)
            or not all(isinstance(p, str) for p in parts)):
        raise StreamError(f"not a stream record key: {key[:80]!r}")
    return parts[0]


def partition_for_group(group: str, partition_count: int) -> int:
    """The partition of every record of ``group`` (Fluvio's SipHash of the group's bytes)."""
    return partition_for_key(group.encode(), partition_count)


class GroupPartitioner:
    """A producer partitioner that sends a stream record to its group's partition."""

    __slots__ = ()

    def partition(self, key: bytes | None, partition_count: int) -> int:
        return partition_for_group(group_of_key(key), partition_count)


def stored_item(item_id: str, data: Any) -> Any:
    """What an item holds: an object gets its ``id`` (clients match group items by ``data.id``),
    anything else is stored as it is."""
    if isinstance(data, dict):
        return {**data, "id": item_id}
    return data


def encode_set(group: str, item_id: str, data: Any) -> tuple[bytes, bytes]:
    """(key, value) of the record that sets the item."""
    value = json.dumps(stored_item(item_id, data), separators=(",", ":")).encode()
    return item_key(group, item_id), value


def encode_delete(group: str, item_id: str) -> tuple[bytes, bytes]:
    """(key, value) of the item's tombstone: its key and an empty value."""
    return item_key(group, item_id), b""


def encode_event(group: str, item_id: str | None, event_type: str, data: Any) -> tuple[bytes, bytes]:
    """(key, value) of a custom event to the group (``item_id`` None) or to one item."""
    check_name("event type", event_type)
    body = {"id": item_id, "type": event_type, "data": data}
    return event_key(group), json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Entry:
    """One decoded stream record."""

    op: str  # "set", "delete" or "event"
    group: str
    id: str | None
    data: Any = None
    event_type: str | None = None


def decode_record(key: bytes | None, value: bytes) -> Entry:
    """The stream operation a record holds; ``StreamError`` for one that is not a stream record."""
    group_of_key(key)
    parts = json.loads(key)
    if len(parts) == 2:
        if not value:
            return Entry("delete", parts[0], parts[1])
        try:
            return Entry("set", parts[0], parts[1], json.loads(value))
        except (ValueError, UnicodeDecodeError) as e:
            raise StreamError(f"an item value is JSON: {e}") from None
    try:
        body = json.loads(value)
    except (ValueError, UnicodeDecodeError) as e:
        raise StreamError(f"an event value is JSON: {e}") from None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise StreamError("an event value is an object with a type")
    item_id = body.get("id")
    return Entry("event", parts[0], item_id if isinstance(item_id, str) else None,
                 body.get("data"), body["type"])


@dataclass(frozen=True)
class StreamEvent:
    """A change as subscribers see it: the iii ``stream`` frame without the stream name.

    ``id`` is the item's id (None for a group-wide custom event); ``event`` the frame's event
    object (``{"type": "create", "data": ...}`` ...); ``offset`` the record's offset.
    """

    timestamp: int
    group: str
    id: str | None
    event: dict
    offset: int


@dataclass
class _Item:
    data: Any
    timestamp: int


@dataclass
class PartitionState:
    """The items of one partition of a stream, folded from its records in log order.

    ``history`` keeps the last ``history_size`` events for resuming subscribers; ``evicted_ts``
    is the newest timestamp that fell out of it (a resume from before it cannot be served from
    the history).
    """

    history_size: int = 10_000
    groups: dict[str, dict[str, _Item]] = field(default_factory=dict)
    clock: int = 0
    next_offset: int = 0
    history: deque = field(default_factory=deque)
    evicted_ts: int = -1

    def tick(self, record_ts: int) -> int:
        """The next timestamp: the record's, unless that is not newer than the last one."""
        self.clock = record_ts if record_ts > self.clock else self.clock + 1
        return self.clock

    def apply(self, offset: int, key: bytes | None, value: bytes, record_ts: int) -> StreamEvent | None:
        """Fold one record; the event it makes, or None (a delete of an absent item, or a
        record that is not a stream record: skipped, so one bad record never stops a stream)."""
        self.next_offset = max(self.next_offset, offset + 1)
        try:
            entry = decode_record(key, value)
        except StreamError:
            return None
        items = self.groups.get(entry.group)
        if entry.op == "event":
            event = {"type": "event", "event": {"type": entry.event_type, "data": entry.data}}
        elif entry.op == "set":
            old = items.get(entry.id) if items else None
            event = {"type": "update" if old is not None else "create", "data": entry.data}
        else:
            old = items.pop(entry.id, None) if items else None
            if old is None:
                return None
            if not items:
                del self.groups[entry.group]
            event = {"type": "delete", "data": old.data}
        ts = self.tick(record_ts)
        if entry.op == "set":
            self.groups.setdefault(entry.group, {})[entry.id] = _Item(entry.data, ts)
        ev = StreamEvent(ts, entry.group, entry.id, event, offset)
        self.history.append(ev)
        while len(self.history) > self.history_size:
            self.evicted_ts = self.history.popleft().timestamp
        return ev

    def get(self, group: str, item_id: str) -> Any:
        item = self.groups.get(group, {}).get(item_id)
        return None if item is None else item.data

    def list(self, group: str) -> list:
        """The group's items, oldest first (in the order of their last change)."""
        items = self.groups.get(group, {})
        return [it.data for it in sorted(items.values(), key=lambda it: it.timestamp)]

    def since(self, timestamp: int, group: str, item_id: str | None) -> list[StreamEvent] | None:
        """The events of ``group`` (of one item when ``item_id`` is set) newer than
        ``timestamp``, or None when some of them are no longer in the history."""
        if timestamp < self.evicted_ts:
            return None
        return [ev for ev in self.history
                if ev.timestamp > timestamp and ev.group == group
                and (item_id is None or ev.id == item_id)]


def frame(stream: str, ev: StreamEvent) -> dict:
    """The iii ``stream`` frame of an event."""
    return {"type": "stream", "timestamp": ev.timestamp, "streamName": stream,
            "groupId": ev.group, "id": ev.id, "event": ev.event}


def sync_frame(stream: str, group: str, item_id: str | None, data: Any, timestamp: int) -> dict:
    """The ``sync`` frame sent right after a join: the item (or None), or the group's items."""
    return {"type": "stream", "timestamp": timestamp, "streamName": stream, "groupId": group,
            "id": item_id, "event": {"type": "sync", "data": data}}
