"""fluvial: a distributed, replicated, durable log cluster speaking Fluvio's wire protocol.

The client API::

    import fluvial

    async with fluvial.connect() as fl:               # the current profile
        await fl.admin.create_topic("greetings", partitions=2)
        async with fl.producer("greetings") as p:
            await p.send(b"hello", key=b"k")
        async for record in fl.consumer("greetings", continuous=False):
            print(record.partition, record.offset, record.value)

``fluvial.sync`` offers the same names, blocking. Every error is a ``fluvial.errors.FluvialError``
subclass named after Fluvio's ErrorCode (``TopicNotFoundError``...).
"""

__version__ = "0.1.0"

from fluvial import errors  # noqa: E402
from fluvial.client import (  # noqa: E402
    Admin, Compression, Consumer, ConsumerOffsetInfo, DeliverySemantic, Fluvial, Isolation,
    Offset, PartitionInfo, ProduceFuture, Producer, ProducerClosedError, Record, RecordMetadata,
    SpuInfo, TopicInfo, connect,
)
from fluvial.errors import ConfigError, ConnectionLost, ErrorCode, FluvialError  # noqa: E402
from fluvial.client.stream import SinkClosed, StreamIncomplete  # noqa: E402
from fluvial.client.group import CommitRefusedError, GroupConsumer  # noqa: E402
from fluvial.client.smartmodule import SmartModule  # noqa: E402
from fluvial.client.call import ProcessorCallError  # noqa: E402

__all__ = [
    "Admin", "CommitRefusedError", "Compression", "ConfigError", "ConnectionLost", "Consumer",
    "ConsumerOffsetInfo", "DeliverySemantic", "ErrorCode", "Fluvial", "FluvialError",
    "GroupConsumer", "Isolation", "Offset", "PartitionInfo", "ProcessorCallError",
    "ProduceFuture", "Producer", "ProducerClosedError", "Record", "RecordMetadata", "SinkClosed",
    "SmartModule", "SpuInfo", "StreamIncomplete", "TopicInfo", "__version__", "connect", "errors",
]
