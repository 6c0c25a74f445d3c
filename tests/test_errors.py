"""The exception classes of ``fluvial.errors``: one per ErrorCode, each found by its code."""

from __future__ import annotations

import errno
import inspect

import pytest

import fluvial.errors as errors
import fluvial.storage.errors as serr
from fluvial.client.fluvial import MetadataTimeout
from fluvial.errors import (
    RETRIABLE, ConfigError, ConnectionLost, Error, ErrorCode, FluvialError, LocalTimeout, Retriable,
    error_class,
)
from fluvial.net.errors import ConnectError, RequestTimeout, TlsHandshakeError

CODES = [code for code in ErrorCode if code is not ErrorCode.None_]


@pytest.mark.parametrize("code", CODES, ids=lambda c: c.name)
def test_every_code_has_its_own_class_named_after_it(code):
    cls = error_class(code)
    assert cls is not FluvialError and cls.code is code
    assert cls.__name__ == code.name + ("" if code.name.endswith("Error") else "Error")
    assert getattr(errors, cls.__name__) is cls  # written out in errors.py, importable by name
    assert isinstance(Error(code).exception(), cls)


def test_every_class_maps_back_to_its_code():
    declared = [cls for _, cls in inspect.getmembers(errors, inspect.isclass)
                if issubclass(cls, FluvialError) and "code" in vars(cls) and cls is not FluvialError]
    assert sorted(cls.code for cls in declared) == sorted(CODES)
    for cls in declared:
        assert error_class(cls.code) is cls


def test_success_and_unknown_codes_fall_back_to_the_base_class():
    assert error_class(ErrorCode.None_) is FluvialError
    err = Error(ErrorCode.TopicNotFound).exception("Topic not found: t")
    assert str(err) == "Topic not found: t" and err.error.code is ErrorCode.TopicNotFound


# ------------------------------------------------------------------ storage errors carry a code

STORAGE_CODES = {
    # an instance of each storage error class, and the ErrorCode a server answers it with
    "StorageError": (lambda: serr.StorageError("x"), ErrorCode.StorageError),
    "InvalidBatch": (lambda: serr.InvalidBatch("empty record set"), ErrorCode.Other),
    "BatchTooLarge": (lambda: serr.BatchTooLarge("too big"), ErrorCode.MessageTooLarge),
    "StaleLeaderEpoch": (lambda: serr.StaleLeaderEpoch("old"), ErrorCode.NotLeaderForPartition),
    "StorageIOError": (lambda: serr.os_error(OSError(errno.EIO, "I/O error"), "write"),
                       ErrorCode.StorageError),
    "DiskFull": (lambda: serr.os_error(OSError(errno.ENOSPC, "No space left"), "write"),
                 ErrorCode.PartitionFull),
    "ShortCircuited": (lambda: serr.ShortCircuited("fsync failed"), ErrorCode.PartitionShortCircuited),
    "OffsetOutOfRange": (lambda: serr.OffsetOutOfRange(9, 0, 5), ErrorCode.OffsetOutOfRange),
    "CorruptLog": (lambda: serr.CorruptLog("s.log", 0, 0, "bad crc"), ErrorCode.StorageError),
    "ReplicaClosed": (lambda: serr.ReplicaClosed("closed"), ErrorCode.StorageError),
}


def test_the_table_names_every_storage_error_class():
    classes = {name for name, cls in inspect.getmembers(serr, inspect.isclass)
               if issubclass(cls, serr.StorageError)}
    assert classes == set(STORAGE_CODES)


@pytest.mark.parametrize("name", sorted(STORAGE_CODES))
def test_every_storage_error_carries_the_code_a_server_answers_with(name):
    make, code = STORAGE_CODES[name]
    exc = make()
    assert type(exc).__name__ == name and exc.code is code


def test_an_evicted_offset_carries_offset_evicted():
    assert serr.OffsetOutOfRange(2, 5, 9).code is ErrorCode.OffsetEvicted


# ------------------------------------------------------------------------- retriable, by type


def test_the_retriable_codes_are_the_codes_of_the_retriable_classes():
    assert RETRIABLE == {code for code in CODES if issubclass(error_class(code), Retriable)}
    assert RETRIABLE == {
        ErrorCode.NotLeaderForPartition, ErrorCode.PartitionNotLeader, ErrorCode.RequestTimedOut,
        ErrorCode.SpuOffline, ErrorCode.SpuNotFound, ErrorCode.PartitionPendingInitialization,
        ErrorCode.TopicPendingInitialization,
    }
    assert not issubclass(errors.TopicNotFoundError, Retriable)


def test_local_timeouts_and_lost_connections_are_retriable_like_the_server_codes():
    local = [RequestTimeout(5, "no response"), MetadataTimeout(detail="no metadata")]
    for exc in local:
        assert isinstance(exc, LocalTimeout) and isinstance(exc, Retriable)
        assert isinstance(exc, errors.RequestTimedOutError)  # `except RequestTimedOutError` too
        assert exc.code is ErrorCode.RequestTimedOut
    answered = Error(ErrorCode.RequestTimedOut, (1500, 0)).exception()
    assert isinstance(answered, Retriable) and not isinstance(answered, LocalTimeout)
    for exc in (ConnectionLost(detail="reset"), ConnectError(detail="refused"),
                TlsHandshakeError(detail="certificate verify failed")):
        assert isinstance(exc, Retriable) and not isinstance(exc, LocalTimeout)
    assert not isinstance(ConfigError("bad profile"), Retriable)
