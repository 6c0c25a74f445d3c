"""A processor's windows and its exactly-once bookkeeping (pure: no trio, no I/O).

Theory of operation
-------------------
A processor keeps its progress in an internal state topic (``processor-<name>``, compacted,
every record a full snapshot under the key ``state``: the latest is all that counts)::

    {"producer_id": P, "next": {"in/0": 17, ...}, "seq": {"out/0": 9, ...},
     "windows_done": 4, "pending": [{"index": 5, "ranges": {"in/0": [17, 20]}, "timestamp": T}, ...]}

* ``next``: per input partition, the first offset not yet consumed (the committed position).
* ``seq``: per output partition, the next sequence of the processor's producer ``P`` there.
* ``pending``: the *run* of windows planned and not yet committed (consecutive indexes), their
  input ranges fixed *before* the function is invoked, so a restart invokes them again on
  exactly the same records.
* ``epoch``: the producer epoch of the runtime that owns the processor (fencing: a newer
  runtime's epoch makes the leaders refuse an older one's writes).

The runtime's loop, one run of windows at a time:

1. **Plan**: ``plan_counts`` / ``plan_time`` fix the next windows' ranges from the committed
   positions and what the inputs hold: every count window already complete (up to a limit) in
   one run, or the one time window closing now; the snapshot with ``pending`` is written and
   acknowledged (not for ``replayable`` runs: a replay plans them identically). (When the
   previous run's commit is still unwritten, the same snapshot commits it.)
2. **Invoke** the function on each window's records, in order.
3. **Write** their outputs: ``assign_outputs`` places each window's (key hash, or the output's
   index in the window for records without a key) and gives each output partition's batch the
   first sequence ``seq[tp]`` of the state with the run's earlier windows committed: derived
   from the windows, so a replay stamps the same records with the same sequences under the same
   producer id, and the leader answers a batch it already stored with its original offsets
   instead of storing it twice (fluvial.spu.producer_state). All the run's batches to one
   partition go in one request, all partitions at once.
4. **Commit** (``committed``, window after window): only after every output is acknowledged,
   ``next`` moves to the window's end and ``seq`` past its outputs; the snapshot is written in
   the background (the next run does not wait for it: a kill before it is written replays runs
   whose outputs are all stored, answered as duplicates).

**One runtime per processor** (fencing, as Kafka's ``transactional.id``): a starting runtime
reads the state topic, takes the epoch after every one it saw (``StateLog.epoch``) and writes a
*fence* record (key ``fence``: its epoch and a token of its own) stamped with the processor's
producer id at that epoch, sequence 0; every later snapshot it writes carries that epoch and the
next sequence. The state topic's leader then refuses the older runtimes' writes (an older epoch
is fenced: fluvial.spu.producer_state), so they can neither plan nor commit again. The runtime
owns the processor when the first fence of its epoch or a newer one in the log is its own
(``StateLog.claim``; two runtimes racing for one epoch both read that same first fence); a
newer fence arriving later fences it. Its state is the last snapshot before its fence: no
write of an older runtime can land after it.

A kill at any instant leaves either no pending run (the next one is planned afresh) or the
pending one, replayed identically: for a deterministic function no output is lost and none is
doubled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fluvial.protocol.producer_api import next_sequence

STATE_KEY = b"state"
MAX_RUN_RECORDS = 5000  # a run of count windows takes at most max(this, one window) records


def tp(topic: str, partition: int) -> str:
    """The bookkeeping name of a topic partition: ``"topic/partition"``."""
    return f"{topic}/{partition}"


def state_topic(name: str) -> str:
    """The processor's internal state topic."""
    return f"processor-{name}"


@dataclass(frozen=True)
class Window:
    index: int
    ranges: dict[str, tuple[int, int]]  # input partition -> [start, end)
    timestamp: int  # ms; the outputs' batch timestamp (the same on a replay)

    @property
    def size(self) -> int:
        return sum(e - s for s, e in self.ranges.values())

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "ranges": {k: list(v) for k, v in self.ranges.items()},
                "timestamp": self.timestamp}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Window:
        return cls(int(d["index"]), {k: (int(v[0]), int(v[1])) for k, v in d["ranges"].items()},
                   int(d["timestamp"]))


@dataclass(frozen=True)
class ProcessorState:
    producer_id: int = -1
    next: dict[str, int] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)
    windows_done: int = 0
    pending: tuple[Window, ...] = ()
    epoch: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"producer_id": self.producer_id, "next": dict(self.next), "seq": dict(self.seq),
                "windows_done": self.windows_done, "pending": [w.to_json() for w in self.pending],
                "epoch": self.epoch}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ProcessorState:
        """Raises ValueError (KeyError, TypeError included) for a malformed snapshot. (A
        snapshot of before runs has one pending window, or null, and no epoch.)"""
        try:
            pending = d.get("pending") or []
            if isinstance(pending, Mapping):
                pending = [pending]
            return cls(int(d["producer_id"]), {k: int(v) for k, v in d["next"].items()},
                       {k: int(v) for k, v in d["seq"].items()}, int(d["windows_done"]),
                       tuple(Window.from_json(w) for w in pending), int(d.get("epoch", 0)))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"malformed processor state: {e!r}") from None

    @property
    def next_index(self) -> int:
        return self.pending[0].index if self.pending else self.windows_done

    def start_of(self, part: str, log_start: int = 0) -> int:
        return max(self.next.get(part, 0), log_start)

    # -- planning ----------------------------------------------------------------------------

    def plan_count(self, ends: Mapping[str, int], count: int, timestamp: int,
                   order: Sequence[str]) -> Window | None:
        """The next count window: ``count`` records taken from the input partitions in
        ``order`` up to their high watermarks ``ends``; None while fewer are available."""
        available = sum(max(0, ends.get(p, 0) - self.start_of(p)) for p in order)
        if available < count:
            return None
        ranges, left = {}, count
        for p in order:
            s = self.start_of(p)
            take = min(left, max(0, ends.get(p, 0) - s))
            if take:
                ranges[p] = (s, s + take)
                left -= take
        return Window(self.windows_done, ranges, timestamp)

    def plan_counts(self, ends: Mapping[str, int], count: int, timestamp: int,
                    order: Sequence[str], max_records: int = MAX_RUN_RECORDS) -> tuple[Window, ...]:
        """Every count window complete in ``ends``, in order (as many as ``plan_count`` gives
        one after the other), while the run holds at most ``max(max_records, count)`` records;
        ``()`` while not even one is complete."""
        state, run = self, []
        while (len(run) + 1) * count <= max(max_records, count):
            w = state.plan_count(ends, count, timestamp, order)
            if w is None:
                break
            run.append(w)
            state = state.committed(w, {})
        return tuple(run)

    def plan_time(self, ends: Mapping[str, int], timestamp: int,
                  order: Sequence[str]) -> Window | None:
        """The time window closing now: everything up to the high watermarks; None when empty
        (an empty window is not invoked)."""
        ranges = {p: (self.start_of(p), ends[p]) for p in order
                  if ends.get(p, 0) > self.start_of(p)}
        return Window(self.windows_done, ranges, timestamp) if ranges else None

    def planned(self, run: Sequence[Window]) -> ProcessorState:
        return replace(self, pending=tuple(run))

    def committed(self, window: Window, out_counts: Mapping[str, int]) -> ProcessorState:
        """The state once ``window``'s outputs (``out_counts`` records per output partition)
        are acknowledged (and those of the pending windows before it: it leaves the run's
        later windows pending)."""
        nxt = dict(self.next)
        for p, (_, end) in window.ranges.items():
            nxt[p] = end
        seq = dict(self.seq)
        for p, n in out_counts.items():
            seq[p] = next_sequence(seq.get(p, 0), n)
        return ProcessorState(self.producer_id, nxt, seq, window.index + 1,
                              tuple(w for w in self.pending if w.index > window.index), self.epoch)


def replayable(window_count: int, order: Sequence[str]) -> bool:
    """Count windows of one input partition are a function of the committed position alone
    (window k after it holds its offsets ``[next + k*count, next + (k+1)*count)``), and so are
    their outputs' sequences: a replay plans the same windows without a recorded plan, so the
    runtime writes none for them (their outputs need not wait for a state write). With several
    partitions a window's share of each depends on what had arrived when it was planned, and a
    time window on the clock: those plans are written before their outputs."""
    return window_count > 0 and len(order) == 1


FENCE_KEY = b"fence"
OWNED, FENCED, UNDECIDED = "owned", "fenced", "undecided"


def fence_value(epoch: int, token: str, pid: int, host: str) -> bytes:
    """A fence record's value (key ``FENCE_KEY``)."""
    return json.dumps({"epoch": epoch, "token": token, "pid": pid, "host": host}).encode()


class StateLog:
    """What a state topic's records say, fed in offset order (``feed``): the latest snapshot,
    the newest epoch seen and, for a runtime that wrote a fence (``claim``), whether it owns
    the processor.

    Worked example: snapshots at epoch 2, then fences (3, "a") and (3, "b"): ``epoch`` is 3;
    the runtime with token "a" owns the processor, "b" is fenced (and so is "a" once a fence
    of epoch 4 follows).
    """

    def __init__(self) -> None:
        self.state = ProcessorState()
        self.epoch = 0
        self.verdict = UNDECIDED
        self.owner: dict[str, Any] = {}  # the newest fence's fields (its pid and host)
        self._mine: tuple[int, str] | None = None

    def claim(self, epoch: int, token: str) -> None:
        """From now on, decide for the runtime that wrote the fence ``(epoch, token)``."""
        self._mine = (epoch, token)

    def feed(self, key: bytes | None, value: bytes) -> None:
        """One record of the state topic. Raises ValueError for a malformed one."""
        if key == STATE_KEY:
            try:
                self.state = ProcessorState.from_json(json.loads(value))
            except json.JSONDecodeError as e:
                raise ValueError(f"malformed processor state: {e}") from None
            self.epoch = max(self.epoch, self.state.epoch)
        elif key == FENCE_KEY:
            try:
                fence = json.loads(value)
                epoch, token = int(fence["epoch"]), str(fence["token"])
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"malformed processor fence: {e!r}") from None
            self.epoch = max(self.epoch, epoch)
            if self._mine is None or self.verdict == FENCED or epoch < self._mine[0]:
                return
            self.owner = fence
            if self.verdict == UNDECIDED:
                self.verdict = OWNED if (epoch, token) == self._mine else FENCED
            elif epoch > self._mine[0]:
                self.verdict = FENCED


def assign_outputs(outputs: Sequence[tuple[str, bytes | None, bytes, tuple]],
                   partitions: Mapping[str, int], key_hash) -> dict[str, list[tuple]]:
    """Each output ``(topic, key, value, headers)`` placed on a partition of its topic: by key
    hash, or by its index among the window's outputs to that topic when it has no key
    (deterministic: a replay places every record where the first run did). Returns
    ``{"topic/partition": [(key, value, headers), ...]}`` in order."""
    out: dict[str, list[tuple]] = {}
    counters: dict[str, int] = {}
    for topic, key, value, headers in outputs:
        n = partitions[topic]
        if key is not None:
            p = key_hash(key) % n
        else:
            i = counters.get(topic, 0)
            counters[topic] = i + 1
            p = i % n
        out.setdefault(tp(topic, p), []).append((key, value, headers))
    return out


__all__ = ["FENCE_KEY", "FENCED", "MAX_RUN_RECORDS", "OWNED", "STATE_KEY", "StateLog", "fence_value", "replayable", "ProcessorState", "Window", "assign_outputs", "state_topic", "tp"]
