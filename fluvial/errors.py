"""Fluvio's ErrorCode table, the wire value of an error, and fluvial's exceptions.

Pure: no I/O. The tag numbers and payload layouts are Fluvio v0.17.3's
(`crates/fluvio-protocol/src/link/error_code.rs`); see ../shared/fluvio-protocol/errors.md.

* ``ErrorCode`` is the i16 tag. Member names are Fluvio's variant names, verbatim
  (``FetchSessionNotFoud`` keeps the source's spelling, since users grep for it).
* ``Error`` is the wire value: a code plus its payload fields, e.g.
  ``Error(ErrorCode.Other, ("boom",))``. ``Error.message`` is Fluvio's Display text.
* ``FluvialError`` is the exception; each code has a subclass named after it
  (``TopicNotFoundError``, ``NotLeaderForPartitionError``...), found with ``error_class(code)``.
* ``Retriable`` is the base of what a client may retry: the retriable codes' classes
  (``RETRIABLE``), a lost or refused connection (``ConnectionLost``) and a timeout this process
  measured itself (``LocalTimeout``, which the CLI tells apart from a RequestTimedOut the server
  answered with by its class).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ErrorCode(IntEnum):
    UnknownServerError = -1
    None_ = 0
    OffsetOutOfRange = 1
    Other = 2
    NotLeaderForPartition = 6
    RequestTimedOut = 7
    MessageTooLarge = 10
    PermissionDenied = 13
    StorageError = 56
    InvalidCreateRequest = 60
    InvalidDeleteRequest = 61
    OffsetEvicted = 71
    PartitionFull = 72
    PartitionShortCircuited = 73
    SpuError = 1000
    SpuRegisterationFailed = 1001
    SpuOffline = 1002
    SpuNotFound = 1003
    SpuAlreadyExists = 1004
    TopicError = 2000
    TopicNotFound = 2001
    TopicAlreadyExists = 2002
    TopicPendingInitialization = 2003
    TopicInvalidConfiguration = 2004
    TopicNotProvisioned = 2005
    TopicInvalidName = 2006
    TopicDeleted = 2007
    TopicInvalidReplicaType = 2008
    PartitionPendingInitialization = 3000
    PartitionNotLeader = 3001
    FetchSessionNotFoud = 3002
    OffsetFlushRequestError = 3003
    OffsetManagementDisabled = 3004
    MaxRetryReached = 3005
    ManagedConnectorError = 5000
    ManagedConnectorNotFound = 5001
    ManagedConnectorAlreadyExists = 5002
    SmartModuleError = 6000
    SmartModuleNotFound = 6001
    SmartModuleInvalid = 6002
    SmartModuleInvalidExports = 6003
    SmartModuleRuntimeError = 6004
    SmartModuleChainInitError = 6005
    SmartModuleInitError = 6006
    SmartModuleLookBackError = 6007
    SmartModuleMemoryLimitExceeded = 6008
    TableFormatError = 7000
    TableFormatNotFound = 7001
    TableFormatAlreadyExists = 7002
    DerivedStreamObjectError = 8000
    DerivedStreamNotFound = 8001
    DerivedStreamJoinFetchError = 8002
    DerivedStreamInvalid = 8003
    CompressionError = 9000
    DeduplicationSmartModuleNotLoaded = 10000
    DeduplicationSmartModuleNameInvalid = 10001
    MirrorNotFound = 11001
    MirrorAlreadyExists = 11002
    MirrorProduceFromHome = 11003
    MirrorDeleteFromRemote = 11004
    MirrorInvalidType = 11005
    MirrorProduceFromRemoteNotAllowed = 11006
    SystemSpecDeletionAttempt = 12001
    SystemSpecUpdatingAttempt = 12002


# Payload field kinds after the tag, in wire order. Kinds are decoded by fluvial.protocol.codec:
# str, opt_str, i64, u64, replica_key (str topic + u32 partition), request_kind (u8, 0 = Produce),
# sm_runtime (SmartModuleTransformRuntimeError), sm_init (SmartModuleInitRuntimeError).
PAYLOAD: dict[ErrorCode, tuple[str, ...]] = {
    ErrorCode.Other: ("str",),
    ErrorCode.RequestTimedOut: ("u64", "request_kind"),
    ErrorCode.OffsetEvicted: ("i64", "i64"),
    ErrorCode.PartitionFull: ("replica_key",),
    ErrorCode.OffsetFlushRequestError: ("str",),
    ErrorCode.SmartModuleNotFound: ("str",),
    ErrorCode.SmartModuleInvalid: ("str", "opt_str"),
    ErrorCode.SmartModuleInvalidExports: ("str", "str"),
    ErrorCode.SmartModuleRuntimeError: ("sm_runtime",),
    ErrorCode.SmartModuleChainInitError: ("str",),
    ErrorCode.SmartModuleInitError: ("sm_init",),
    ErrorCode.SmartModuleLookBackError: ("str",),
    ErrorCode.SmartModuleMemoryLimitExceeded: ("u64", "u64"),
    ErrorCode.DerivedStreamNotFound: ("str",),
    ErrorCode.DerivedStreamInvalid: ("str",),
    ErrorCode.DeduplicationSmartModuleNameInvalid: ("str",),
    ErrorCode.SystemSpecDeletionAttempt: ("str", "str"),
    ErrorCode.SystemSpecUpdatingAttempt: ("str", "str"),
}

# Fluvio's Display text; {0}, {1} are payload fields.
MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.UnknownServerError: "An unknown server error occurred",
    ErrorCode.None_: "ErrorCode indicated success. If you see this it is likely a bug.",
    ErrorCode.OffsetOutOfRange: "Offset out of range",
    ErrorCode.Other: "Other error: {0}",
    ErrorCode.NotLeaderForPartition: "the given SPU is not the leader for the partition",
    ErrorCode.RequestTimedOut: "the request '{1}' exceeded the timeout {0} ms",
    ErrorCode.MessageTooLarge: "the message is too large to send",
    ErrorCode.PermissionDenied: "permission denied",
    ErrorCode.StorageError: "a storage error occurred",
    ErrorCode.InvalidCreateRequest: "invalid create request",
    ErrorCode.InvalidDeleteRequest: "invalid Delete request",
    ErrorCode.OffsetEvicted: "Offset {0} is evicted. The next available is {1}",
    ErrorCode.PartitionFull: "Partition storage is full",
    ErrorCode.PartitionShortCircuited: "Partition is short-circuited",
    ErrorCode.SpuError: "an error occurred on the SPU",
    ErrorCode.SpuRegisterationFailed: "failed to register an SPU",
    ErrorCode.SpuOffline: "the SPU is offline",
    ErrorCode.SpuNotFound: "the SPU was not found",
    ErrorCode.SpuAlreadyExists: "the SPU already exists",
    ErrorCode.TopicError: "a topic error occurred",
    ErrorCode.TopicNotFound: "the topic was not found",
    ErrorCode.TopicAlreadyExists: "the topic already exists",
    ErrorCode.TopicPendingInitialization: "the topic has not been initialized",
    ErrorCode.TopicInvalidConfiguration: "the topic configuration is invalid",
    ErrorCode.TopicNotProvisioned: "the topic is not provisioned",
    ErrorCode.TopicInvalidName: "the topic name is invalid",
    ErrorCode.TopicDeleted: "the topic was deleted",
    ErrorCode.TopicInvalidReplicaType: "the topic has invalid replica type",
    ErrorCode.PartitionPendingInitialization: "the partition is not initialized",
    ErrorCode.PartitionNotLeader: "the partition is not a leader",
    ErrorCode.FetchSessionNotFoud: "the fetch session was not found",
    ErrorCode.OffsetFlushRequestError: "offset flush error: {0}",
    ErrorCode.OffsetManagementDisabled: "the offset management is disabled for the stream",
    ErrorCode.MaxRetryReached: "max retry attempts reached",
    ErrorCode.ManagedConnectorError: "an error occurred while managing a connector",
    ErrorCode.ManagedConnectorNotFound: "the managed connector was not found",
    ErrorCode.ManagedConnectorAlreadyExists: "an error occurred while managing a connector",
    ErrorCode.SmartModuleError: "an error occurred while managing a SmartModule",
    ErrorCode.SmartModuleNotFound: "SmartModule {0} was not found",
    ErrorCode.SmartModuleInvalid: "SmartModule is invalid: {0}",
    ErrorCode.SmartModuleInvalidExports: (
        "SmartModule is not a valid '{1}' SmartModule due to {0}. "
        "Are you missing a #[smartmodule({1})] attribute?"
    ),
    ErrorCode.SmartModuleRuntimeError: "SmartModule transform error {0}",
    ErrorCode.SmartModuleChainInitError: "Error initializing {0} SmartModule Chain",
    ErrorCode.SmartModuleInitError: "SmartModule init error {0}",
    ErrorCode.SmartModuleLookBackError: "SmartModule look_back error: {0}",
    ErrorCode.SmartModuleMemoryLimitExceeded: (
        "SmartModule memory limit exceeded: requested {0} bytes, max allowed {1} bytes"
    ),
    ErrorCode.TableFormatError: "a tableformat error occurred",
    ErrorCode.TableFormatNotFound: "the tableformat was not found",
    ErrorCode.TableFormatAlreadyExists: "the tableformat already exists",
    ErrorCode.DerivedStreamObjectError: "DerivedStream object error",
    ErrorCode.DerivedStreamNotFound: "the derivedstream was not found",
    ErrorCode.DerivedStreamJoinFetchError: "the derivedstream join data cannot be fetched",
    ErrorCode.DerivedStreamInvalid: "the derivedstream {0} is invalid",
    ErrorCode.CompressionError: "a compression error occurred in the SPU",
    ErrorCode.DeduplicationSmartModuleNotLoaded: (
        "Deduplication SmartModule is not loaded into the cluster"
    ),
    ErrorCode.DeduplicationSmartModuleNameInvalid: "Deduplication SmartModule name is invalid: {0}",
    ErrorCode.MirrorNotFound: "the mirror was not found",
    ErrorCode.MirrorAlreadyExists: "the mirror already exists",
    ErrorCode.MirrorProduceFromHome: "produce from home is not allowed",
    ErrorCode.MirrorDeleteFromRemote: "delete from remote is not allowed",
    ErrorCode.MirrorInvalidType: "the mirror is invalid",
    ErrorCode.MirrorProduceFromRemoteNotAllowed: "produce from remote target is not allowed",
    ErrorCode.SystemSpecDeletionAttempt: "system {0} '{1}' can only be deleted forcibly",
    ErrorCode.SystemSpecUpdatingAttempt: "system {0} '{1}' can only be updated forcibly",
}

@dataclass(frozen=True, slots=True)
class Error:
    """An ErrorCode as it travels: the tag and its payload fields in wire order."""

    code: ErrorCode = ErrorCode.None_
    args: tuple = ()

    @property
    def ok(self) -> bool:
        return self.code == ErrorCode.None_

    @property
    def message(self) -> str:
        text = MESSAGES[self.code]
        shown = ["Produce" if a == 0 and kind == "request_kind" else a
                 for a, kind in zip(self.args, PAYLOAD.get(self.code, ()))]
        return text.format(*shown) if shown else text

    def exception(self, detail: str | None = None) -> FluvialError:
        return error_class(self.code)(self, detail)

    @classmethod
    def other(cls, text: str) -> Error:
        return cls(ErrorCode.Other, (text,))


OK = Error()


class FluvialError(Exception):
    """Base of every error fluvial raises on purpose."""

    code: ErrorCode = ErrorCode.UnknownServerError

    def __init__(self, error: Error | str | None = None, detail: str | None = None):
        if isinstance(error, str):
            error, detail = Error.other(error), detail or error
        self.error = error or Error(self.code)
        self.detail = detail
        super().__init__(detail or self.error.message)


class Retriable(FluvialError):
    """Base of the errors a client may retry after refreshing metadata or reconnecting."""


class ConfigError(FluvialError):
    """A profile, flag or configuration value is wrong."""


class ConnectionLost(Retriable):
    """The peer closed the connection or it failed under us."""


# -------------------------------------------------------------- one exception class per ErrorCode


class UnknownServerError(FluvialError):
    code = ErrorCode.UnknownServerError


class OffsetOutOfRangeError(FluvialError):
    code = ErrorCode.OffsetOutOfRange


class OtherError(FluvialError):
    code = ErrorCode.Other


class NotLeaderForPartitionError(Retriable):
    code = ErrorCode.NotLeaderForPartition


class RequestTimedOutError(Retriable):
    code = ErrorCode.RequestTimedOut


class MessageTooLargeError(FluvialError):
    code = ErrorCode.MessageTooLarge


class PermissionDeniedError(FluvialError):
    code = ErrorCode.PermissionDenied


class StorageError(FluvialError):
    code = ErrorCode.StorageError


class InvalidCreateRequestError(FluvialError):
    code = ErrorCode.InvalidCreateRequest


class InvalidDeleteRequestError(FluvialError):
    code = ErrorCode.InvalidDeleteRequest


class OffsetEvictedError(FluvialError):
    code = ErrorCode.OffsetEvicted


class PartitionFullError(FluvialError):
    code = ErrorCode.PartitionFull


class PartitionShortCircuitedError(FluvialError):
    code = ErrorCode.PartitionShortCircuited


class SpuError(FluvialError):
    code = ErrorCode.SpuError


class SpuRegisterationFailedError(FluvialError):
    code = ErrorCode.SpuRegisterationFailed


class SpuOfflineError(Retriable):
    code = ErrorCode.SpuOffline


class SpuNotFoundError(Retriable):
    code = ErrorCode.SpuNotFound


class SpuAlreadyExistsError(FluvialError):
    code = ErrorCode.SpuAlreadyExists


class TopicError(FluvialError):
    code = ErrorCode.TopicError


class TopicNotFoundError(FluvialError):
    code = ErrorCode.TopicNotFound


class TopicAlreadyExistsError(FluvialError):
    code = ErrorCode.TopicAlreadyExists


class TopicPendingInitializationError(Retriable):
    code = ErrorCode.TopicPendingInitialization


class TopicInvalidConfigurationError(FluvialError):
    code = ErrorCode.TopicInvalidConfiguration


class TopicNotProvisionedError(FluvialError):
    code = ErrorCode.TopicNotProvisioned


class TopicInvalidNameError(FluvialError):
    code = ErrorCode.TopicInvalidName


class TopicDeletedError(FluvialError):
    code = ErrorCode.TopicDeleted


class TopicInvalidReplicaTypeError(FluvialError):
    code = ErrorCode.TopicInvalidReplicaType


class PartitionPendingInitializationError(Retriable):
    code = ErrorCode.PartitionPendingInitialization


class PartitionNotLeaderError(Retriable):
    code = ErrorCode.PartitionNotLeader


class FetchSessionNotFoudError(FluvialError):
    code = ErrorCode.FetchSessionNotFoud


class OffsetFlushRequestError(FluvialError):
    code = ErrorCode.OffsetFlushRequestError


class OffsetManagementDisabledError(FluvialError):
    code = ErrorCode.OffsetManagementDisabled


class MaxRetryReachedError(FluvialError):
    code = ErrorCode.MaxRetryReached


class ManagedConnectorError(FluvialError):
    code = ErrorCode.ManagedConnectorError


class ManagedConnectorNotFoundError(FluvialError):
    code = ErrorCode.ManagedConnectorNotFound


class ManagedConnectorAlreadyExistsError(FluvialError):
    code = ErrorCode.ManagedConnectorAlreadyExists


class SmartModuleError(FluvialError):
    code = ErrorCode.SmartModuleError


class SmartModuleNotFoundError(FluvialError):
    code = ErrorCode.SmartModuleNotFound


class SmartModuleInvalidError(FluvialError):
    code = ErrorCode.SmartModuleInvalid


class SmartModuleInvalidExportsError(FluvialError):
    code = ErrorCode.SmartModuleInvalidExports


class SmartModuleRuntimeError(FluvialError):
    code = ErrorCode.SmartModuleRuntimeError


class SmartModuleChainInitError(FluvialError):
    code = ErrorCode.SmartModuleChainInitError


class SmartModuleInitError(FluvialError):
    code = ErrorCode.SmartModuleInitError


class SmartModuleLookBackError(FluvialError):
    code = ErrorCode.SmartModuleLookBackError


class SmartModuleMemoryLimitExceededError(FluvialError):
    code = ErrorCode.SmartModuleMemoryLimitExceeded


class TableFormatError(FluvialError):
    code = ErrorCode.TableFormatError


class TableFormatNotFoundError(FluvialError):
    code = ErrorCode.TableFormatNotFound


class TableFormatAlreadyExistsError(FluvialError):
    code = ErrorCode.TableFormatAlreadyExists


class DerivedStreamObjectError(FluvialError):
    code = ErrorCode.DerivedStreamObjectError


class DerivedStreamNotFoundError(FluvialError):
    code = ErrorCode.DerivedStreamNotFound


class DerivedStreamJoinFetchError(FluvialError):
    code = ErrorCode.DerivedStreamJoinFetchError


class DerivedStreamInvalidError(FluvialError):
    code = ErrorCode.DerivedStreamInvalid


class CompressionError(FluvialError):
    code = ErrorCode.CompressionError


class DeduplicationSmartModuleNotLoadedError(FluvialError):
    code = ErrorCode.DeduplicationSmartModuleNotLoaded


class DeduplicationSmartModuleNameInvalidError(FluvialError):
    code = ErrorCode.DeduplicationSmartModuleNameInvalid


class MirrorNotFoundError(FluvialError):
    code = ErrorCode.MirrorNotFound


class MirrorAlreadyExistsError(FluvialError):
    code = ErrorCode.MirrorAlreadyExists


class MirrorProduceFromHomeError(FluvialError):
    code = ErrorCode.MirrorProduceFromHome


class MirrorDeleteFromRemoteError(FluvialError):
    code = ErrorCode.MirrorDeleteFromRemote


class MirrorInvalidTypeError(FluvialError):
    code = ErrorCode.MirrorInvalidType


class MirrorProduceFromRemoteNotAllowedError(FluvialError):
    code = ErrorCode.MirrorProduceFromRemoteNotAllowed


class SystemSpecDeletionAttemptError(FluvialError):
    code = ErrorCode.SystemSpecDeletionAttempt


class SystemSpecUpdatingAttemptError(FluvialError):
    code = ErrorCode.SystemSpecUpdatingAttempt


class LocalTimeout(RequestTimedOutError):
    """No answer within a timeout this process set itself (a request, the first metadata): the
    cluster is not responding. Its code stays RequestTimedOut, so ``except RequestTimedOutError``
    catches it too; a RequestTimedOut the server answered with is not a ``LocalTimeout``."""


def _classes_by_code() -> dict[ErrorCode, type[FluvialError]]:
    """The classes above, by the code each one declares (``FluvialError`` itself excluded)."""
    return {cls.code: cls for cls in globals().values()
            if isinstance(cls, type) and issubclass(cls, FluvialError) and cls is not FluvialError
            and "code" in vars(cls)}


_CLASSES = _classes_by_code()

# Codes a client may retry after refreshing metadata or reconnecting: those of the Retriable
# classes. SpuNotFound is one because the client's metadata may name an SPU that has just left
# or not yet arrived.
RETRIABLE = frozenset(code for code, cls in _CLASSES.items() if issubclass(cls, Retriable))


def error_class(code: ErrorCode) -> type[FluvialError]:
    """The exception class for ``code`` (``TopicNotFoundError`` for TopicNotFound, ...)."""
    return _CLASSES.get(code, FluvialError)
