"""fluvial's SC API for idempotent producers: one request that hands out a producer id.

Not part of Fluvio's protocol: key 9001 on the SC's public port, version 0, not advertised in
ApiVersions (so the SC's advertisement stays the real SC's; fluvial's client sends version 0
without looking). An official client never sends it. docs/internal-protocol.md has the layout::

    AllocateProducerIdRequest  => (no fields)
    AllocateProducerIdResponse => error_code:ErrorCode  producer_id:i64  producer_epoch:i16

Every answer is a fresh id (never reused, also across SC restarts) at epoch 0.
"""

from __future__ import annotations

from typing import ClassVar

from fluvial.errors import Error
from fluvial.protocol.api import Request
from fluvial.protocol.codec import ERROR_CODE, I16, I64, message, wire

ALLOCATE_PRODUCER_ID_KEY = 9001
SEQUENCE_MODULUS = 1 << 31  # batch sequences are i32 >= 0 and wrap to 0 (Kafka's rule)
# Runs of sequences a leader remembers per producer (Kafka remembers 5 batches), and so the most
# batches an idempotent producer may have in flight per partition: a retry of any of them is
# still recognised as a duplicate.
MAX_REMEMBERED = 5
# How the message of a batch the leader refuses (a sequence gap, a fenced epoch) starts; it is
# sent as ErrorCode Other, since Fluvio has no code for it.
OUT_OF_ORDER = "OutOfOrderSequence"


def next_sequence(first_sequence: int, count: int) -> int:
    """The sequence of the record after a batch of ``count`` records starting at
    ``first_sequence`` (wrapping): ``next_sequence(2**31 - 2, 3) == 1``."""
    return (first_sequence + count) % SEQUENCE_MODULUS


@message
class AllocateProducerIdResponse:
    error_code: Error = wire(ERROR_CODE)
    producer_id: int = wire(I64, default=-1)
    producer_epoch: int = wire(I16, default=-1)


@message
class AllocateProducerIdRequest(Request):
    API_KEY: ClassVar[int] = ALLOCATE_PRODUCER_ID_KEY
    Response: ClassVar[type] = AllocateProducerIdResponse


__all__ = ["ALLOCATE_PRODUCER_ID_KEY", "MAX_REMEMBERED", "OUT_OF_ORDER", "SEQUENCE_MODULUS", "next_sequence", "AllocateProducerIdRequest", "AllocateProducerIdResponse"]
