"""How failures become one error line, a hint and an exit code (``fluvial.cli.common``)."""

from __future__ import annotations

import pytest
import trio
import typer

from fluvial.cli.common import ClusterUnreachable, describe_error, handle_errors
from fluvial.errors import ConfigError, Error, ErrorCode, error_class
from fluvial.client.fluvial import MetadataTimeout
from fluvial.net.errors import ConnectError, RequestTimeout, TlsHandshakeError


@pytest.mark.parametrize("exc, topic, expected", [
    (ConnectError(detail="cannot connect to h:1: refused"), None,
     ("cannot connect to h:1: refused", "is the cluster running", 3)),
    (TlsHandshakeError(detail="TLS handshake with h:1 failed: certificate verify failed"), None,
     ("TLS handshake with h:1 failed: certificate verify failed", "check the TLS settings", 3)),
    (ConnectError(detail="cannot reach SPU 1 at h:2: SSL certificate"), None,  # by type, not text
     ("cannot reach SPU 1 at h:2: SSL certificate", "is the cluster running", 3)),
    (ClusterUnreachable(detail="no answer"), None, ("no answer", "is the cluster running", 3)),
    (RequestTimeout(30, "no response to Produce within 30s"), None,
     ("no response to Produce within 30s", "is the cluster running", 3)),
    (MetadataTimeout(detail="timed out searching metadata Topic"), None,
     ("timed out searching metadata Topic", "is the cluster running", 3)),
    (error_class(ErrorCode.RequestTimedOut)(Error(ErrorCode.RequestTimedOut, (1500, 0))), None,
     ("the request 'Produce' exceeded the timeout 1500 ms", None, 1)),
    (error_class(ErrorCode.TopicNotFound)(detail="Topic not found: orders"), None,
     ("topic 'orders' not found", "list the topics with `fluvial topic list`", 1)),
    (error_class(ErrorCode.TopicNotFound)(detail="not found"), "orders",
     ("topic 'orders' not found", "list the topics with `fluvial topic list`", 1)),
    (error_class(ErrorCode.TopicNotFound)(detail="Topic not found: t (no partition t-5)"), None,
     ("Topic not found: t (no partition t-5)", "list the topics with `fluvial topic list`", 1)),
    (error_class(ErrorCode.TopicAlreadyExists)(detail="exists"), "orders",
     ("topic 'orders' already exists", "`fluvial topic describe orders` shows it", 1)),
    (error_class(ErrorCode.PermissionDenied)(), None, ("permission denied", "policy.toml", 1)),
    (error_class(ErrorCode.CompressionError)(detail="no match"), "t",
     ("no match", "`fluvial topic describe t`", 1)),
    (ConfigError("no profile is selected; run `fluvial cluster start`"), None,
     ("no profile is selected; run `fluvial cluster start`", None, 1)),
    (ConfigError("bad tls_policy"), None, ("bad tls_policy", "see `fluvial profile list`", 1)),
    (FileNotFoundError(2, "No such file or directory", "x.txt"), None,
     ("No such file or directory: x.txt", None, 1)),
    (ZeroDivisionError("oops"), None, ("ZeroDivisionError: oops", "this is a bug in fluvial", 1)),
])
def test_describe_error(exc, topic, expected):
    message, hint, code = describe_error(exc, topic=topic)
    assert (message, code) == (expected[0], expected[2])
    if expected[1] is None:
        assert hint is None
    else:
        assert expected[1] in hint


def _exit_code(exc: BaseException) -> int:
    with pytest.raises(typer.Exit) as caught:
        with handle_errors():
            raise exc
    return caught.value.exit_code


def test_exceptions_inside_groups_are_unwrapped(capsys):
    assert _exit_code(BaseExceptionGroup("g", [KeyboardInterrupt()])) == 130
    assert _exit_code(KeyboardInterrupt()) == 130
    group = ExceptionGroup("outer", [ExceptionGroup("inner", [ConnectError(detail="refused")])])
    assert _exit_code(group) == 3
    assert capsys.readouterr().err.startswith("error: refused\n")
    assert _exit_code(BaseExceptionGroup("g", [typer.Exit(7)])) == 7
    assert _exit_code(BrokenPipeError()) == 0


def test_trio_cancellations_are_not_taken_for_the_error():
    async def main():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            raise error_class(ErrorCode.SpuNotFound)(detail="gone")

    with pytest.raises(typer.Exit) as caught:
        with handle_errors():
            trio.run(main)
    assert caught.value.exit_code == 1


def test_usage_errors_pass_through():
    with pytest.raises(typer.BadParameter):
        with handle_errors():
            raise typer.BadParameter("bad")
