"""The fluvial client: ``async with fluvial.connect() as fl`` then ``fl.producer``,
``fl.consumer`` and ``fl.admin``. ``fluvial.sync`` has the same API, blocking."""

from fluvial.client.admin import Admin
from fluvial.client.consumer import Consumer
from fluvial.client.fluvial import Fluvial, MetadataCache, connect
from fluvial.client.partitioner import (
    RoundRobinPartitioner, SiphashRoundRobinPartitioner, SpecificPartitioner,
)
from fluvial.client.producer import ProduceFuture, Producer, ProducerClosedError, ProducerStatistics
from fluvial.client.types import (
    Compression, ConsumerOffsetInfo, DeliverySemantic, Isolation, Offset, PartitionInfo, Record,
    RecordMetadata, ReplicaInfo, SpuInfo, TopicInfo,
)

__all__ = [
    "Admin", "Compression", "Consumer", "ConsumerOffsetInfo", "DeliverySemantic", "Fluvial",
    "Isolation", "MetadataCache", "Offset", "PartitionInfo", "ProduceFuture", "Producer",
    "ProducerClosedError", "ProducerStatistics", "Record", "RecordMetadata", "ReplicaInfo", "RoundRobinPartitioner",
    "SiphashRoundRobinPartitioner", "SpecificPartitioner", "SpuInfo", "TopicInfo", "connect",
]
