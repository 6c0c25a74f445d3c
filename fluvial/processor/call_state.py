"""Calling a processor (``fl.call(NAME)``): the calls' log layout and the runtime's exactly-once
bookkeeping for them (pure: no trio, no I/O). The trio halves are ``fluvial.processor.calls``
(the runtime's side) and ``fluvial.client.call`` (the caller's); docs/processors.md.

Theory of operation
-------------------
A call is a bounded stream (``fluvial.client.stream``) on the processor's *calls topic*
``processor-<name>-calls``; its stream id is a fresh call id. Every data record may name the
function's input it is for (header ``fluvial-call-input: <index>``, default 0). The caller's EOS
ends the call's input, its ABORT withdraws the call.

The runtime reads every partition of the calls topic and, per partition, feeds its records in
offset order to a ``CallAssembler``: a call is collected from its BEGIN marker, and at its EOS it
is complete and answered: the function is invoked once on all its records, and the outputs are
written as one bounded stream with the same id on the *replies topic*
``processor-<name>-replies`` (each record with ``fluvial-call-output: <index>``, the function's
output it came from), ending with EOS; a function that raised gets one record carrying the error
(header ``fluvial-call-error``) and an ABORT instead. Both topics have the same partition count,
so a call and its reply sit in the partitions with the same index (the stream id's hash).

Exactly once: calls are answered in the order of their EOS offsets within a partition, a
deterministic order. The reply batches (data and the final marker alike) are written with the
idempotent producer protocol under a producer id the calls own, with sequences derived from the
partition's progress (``reply_batches``): a replay of a call writes the same batches with the
same sequences, and the leader answers the ones it stored with their original offsets. Once a
reply is acknowledged, the progress (``CallsState``, under the key ``calls`` in the processor's
compacted state topic) records per calls partition:

* ``answered``: the EOS offset of the last call answered (an EOS at or below it was answered);
* ``next``: where a restart reads again: the first record of the oldest call still open, or
  after the answered EOS;
* ``seq``: the next sequence of the calls' producer on the replies partition with that index.

A kill at any instant either precedes the progress write (the call is answered again, the same
batches deduplicated) or follows it (the call is not seen again): every call's reply is in the
log exactly once for a deterministic function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fluvial.protocol.batch import stamp_producer
from fluvial.protocol.markers import (
    STREAM_HEADER, MarkerKind, encode_marker, marker_of, stream_id_bytes, stream_of,
)
from fluvial.protocol.producer_api import next_sequence
from fluvial.protocol.record_headers import encode_headers_batch

CALLS_KEY = b"calls"  # the calls' progress in the processor's state topic
INPUT_HEADER = "fluvial-call-input"  # on a call's record: the function's input (index) it is for
OUTPUT_HEADER = "fluvial-call-output"  # on a reply record: the function's output (index)
ERROR_HEADER = "fluvial-call-error"  # on the reply record that carries the function's error
RESERVED_SUFFIXES = ("-calls", "-replies")  # no processor name ends so: its state topic would
# be another processor's calls or replies topic
BATCH_RECORDS = 500  # a reply's records per batch (a deterministic split)
CALLS_RETENTION = 24 * 3600  # seconds the calls and replies topics keep records


def calls_topic(name: str) -> str:
    return f"processor-{name}-calls"


def replies_topic(name: str) -> str:
    return f"processor-{name}-replies"


# ------------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class PartitionProgress:
    next: int = 0  # where a restart reads this calls partition again
    answered: int = -1  # the EOS offset of the last call answered
    seq: int = 0  # the next sequence on the replies partition with the same index


@dataclass(frozen=True)
class CallsState:
    producer_id: int = -1
    partitions: dict[int, PartitionProgress] = field(default_factory=dict)

    def progress(self, partition: int) -> PartitionProgress:
        return self.partitions.get(partition, PartitionProgress())

    def answered(self, partition: int, eos_offset: int, next_offset: int, records: int) -> CallsState:
        """The state once the call ending at ``eos_offset`` has its reply (``records`` records,
        markers included) acknowledged; ``next_offset``: ``CallAssembler.restart_offset``."""
        p = self.progress(partition)
        parts = dict(self.partitions)
        parts[partition] = PartitionProgress(next_offset, eos_offset, next_sequence(p.seq, records))
        return replace(self, partitions=parts)

    def to_json(self) -> dict[str, Any]:
        return {"producer_id": self.producer_id,
                "partitions": {str(k): [v.next, v.answered, v.seq] for k, v in self.partitions.items()}}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CallsState:
        """Raises ValueError for a malformed snapshot."""
        try:
            return cls(int(d["producer_id"]),
                       {int(k): PartitionProgress(int(v[0]), int(v[1]), int(v[2]))
                        for k, v in d["partitions"].items()})
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as e:
            raise ValueError(f"malformed calls state: {e!r}") from None


# -------------------------------------------------------------------------------- calls


@dataclass
class Call:
    id: str
    begin: int  # the offset of its BEGIN marker
    records: list = field(default_factory=list)  # its data records (``Record``), in order
    eos: int = -1  # the offset of its EOS, once complete
    timestamp: int = -1  # its EOS's timestamp: its reply's batch timestamp


class CallAssembler:
    """One calls partition's open calls. ``feed`` every record of the partition (markers
    included) in offset order; it returns a ``Call`` at that call's EOS, else None.

    A stream whose BEGIN was not seen is ignored (its start was before where reading began: a
    call answered before a restart, or removed by retention), and so is an EOS at or below
    ``answered`` (answered before a restart) and a call withdrawn by ABORT."""

    def __init__(self, answered: int = -1):
        self.answered = answered
        self.open: dict[str, Call] = {}

    def feed(self, record: Any) -> Call | None:
        if record.is_control:
            m = marker_of(record.headers)
            if m is None:
                return None
            if m.kind is MarkerKind.BEGIN:
                self.open.setdefault(m.stream, Call(m.stream, record.offset))
                return None
            call = self.open.pop(m.stream, None)
            if call is None or m.kind is MarkerKind.ABORT or record.offset <= self.answered:
                return None
            call.eos, call.timestamp = record.offset, record.timestamp
            return call
        sid = stream_of(record.headers)
        call = None if sid is None else self.open.get(sid.decode(errors="replace"))
        if call is not None:
            call.records.append(record)
        return None

    def restart_offset(self, after: int) -> int:
        """Where to read again after a restart: the oldest open call's BEGIN, else ``after``."""
        return min([after, *(c.begin for c in self.open.values())])


def call_inputs(call: Call, inputs: Sequence[str], record_type: Any) -> list[tuple[str, list]]:
    """The call's records per input of the function (``[(topic, records)]``, ``inputs`` order),
    as ``record_type`` rows without the stream's and the input's headers.

    Raises:
        ValueError: a record names an input the function does not have.
    """
    per: list[list] = [[] for _ in inputs]
    for r in call.records:
        named, headers = b"0", []
        for k, v in r.headers:
            if k == INPUT_HEADER:
                named = v
            elif k != STREAM_HEADER:
                headers.append((k, v))
        index = int(named) if named.isdigit() else -1
        if not 0 <= index < len(inputs):
            raise ValueError(f"call {call.id}: the record at offset {r.offset} is for input "
                             f"{named.decode(errors='replace')!r}; the function has {len(inputs)} "
                             f"input(s), 0 to {len(inputs) - 1}")
        per[index].append(record_type((r.partition, r.offset, r.key, r.value, r.timestamp,
                                       tuple(headers))))
    return [(t, per[i]) for i, t in enumerate(inputs)]


def reply_batches(call: Call, outputs: Sequence[tuple[int, bytes | None, bytes, tuple]],
                  error: str | None, *, producer_id: int, first_sequence: int,
                  compression: int = 0) -> tuple[list[bytes], int]:
    """The call's reply: its outputs ``(output index, key, value, headers)`` in batches of
    ``BATCH_RECORDS`` and then its EOS marker; or, with ``error``, one record carrying it and an
    ABORT marker. Every batch carries ``producer_id`` and the sequences that follow on from
    ``first_sequence`` (a replay makes the same batches). Returns the batches and the number of
    records they hold."""
    sid = (STREAM_HEADER, stream_id_bytes(call.id))
    if error is None:
        records = [(k, v, (*h, (OUTPUT_HEADER, str(i).encode()), sid)) for i, k, v, h in outputs]
        end = MarkerKind.EOS
    else:
        first_line = error.strip().splitlines()[-1] if error.strip() else "error"
        records = [(None, error.encode(), ((ERROR_HEADER, first_line.encode()), sid))]
        end = MarkerKind.ABORT
    plain = [encode_headers_batch(records[i:i + BATCH_RECORDS], first_timestamp=call.timestamp,
                                  compression=compression)
             for i in range(0, len(records), BATCH_RECORDS)]
    plain.append(encode_marker(end, call.id, first_timestamp=call.timestamp, compression=compression))
    out, seq = [], first_sequence
    counts = [len(records[i:i + BATCH_RECORDS]) for i in range(0, len(records), BATCH_RECORDS)] + [1]
    for batch, n in zip(plain, counts):
        out.append(stamp_producer(batch, producer_id, 0, seq))
        seq = next_sequence(seq, n)
    return out, len(records) + 1


def record_sets(batches: Sequence[bytes], max_bytes: int) -> list[bytes]:
    """Consecutive ``batches`` joined into record sets of at most ``max_bytes`` (a larger batch
    alone): a reply goes out in few produce requests, and in the same ones on a replay."""
    out: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for b in batches:
        if group and size + len(b) > max_bytes:
            out.append(b"".join(group))
            group, size = [], 0
        group.append(b)
        size += len(b)
    if group:
        out.append(b"".join(group))
    return out


def reserved_name_error(name: str) -> str | None:
    """Why ``name`` cannot be a processor's (its state topic would be another's calls or replies
    topic), or None."""
    for suffix in RESERVED_SUFFIXES:
        if name.endswith(suffix):
            return f"a processor name cannot end with {suffix!r} (its calls use such topics)"
    return None


__all__ = [
    "BATCH_RECORDS", "CALLS_KEY", "CALLS_RETENTION", "ERROR_HEADER", "INPUT_HEADER",
    "OUTPUT_HEADER", "Call", "CallAssembler", "CallsState", "PartitionProgress", "call_inputs",
    "calls_topic", "record_sets", "replies_topic", "reply_batches", "reserved_name_error",
]
