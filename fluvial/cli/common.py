"""What every ``fluvial`` noun shares: the global options, connecting, exit codes and errors,
and the parsers for durations and sizes.

Exit codes
----------
* 0: done (``consume`` also returns 0 when stopped with Ctrl-C).
* 1: the command failed (the cluster refused it, a bad profile, a missing file...).
* 2: the command line is wrong (typer's usage errors, and the checks in this package).
* 3: the cluster is unreachable: connection refused or timed out, or no answer in time.
* 130: interrupted with Ctrl-C (the commands that do not treat it as "stop").

Every failure is one red ``error:`` line on stderr, usually followed by a ``hint:`` line that says
what to run next (``describe_error``).
"""

from __future__ import annotations

import math
import os
import re
import signal
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional, TypeVar

import trio
import typer

from fluvial.client.profile import TlsAnonymous, TlsDisabled, TlsPolicy, TlsVerified
from fluvial.errors import ConfigError, ConnectionLost, ErrorCode, FluvialError, LocalTimeout
from fluvial.net.errors import TlsHandshakeError
from fluvial.protocol.content_type import ContentTypeError

__all__ = [
    "CONNECT_TIMEOUT_SECONDS", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_UNREACHABLE",
    "EXIT_USAGE", "ClusterUnreachable", "GlobalOptions", "OutputFormat", "check_partitions",
    "describe_error", "fail", "format_duration", "format_size", "global_options", "handle_errors",
    "open_client", "parse_duration", "parse_size", "run_client", "set_global_options",
    "tls_policy_from_flags", "usage_error",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

CONNECT_TIMEOUT_SECONDS = 15.0  # connecting to the SC and receiving its first metadata
REQUEST_TIMEOUT_SECONDS = 30.0  # one admin or offset request

T = TypeVar("T")


class OutputFormat(str, Enum):
    """``-O`` of the list and describe commands."""

    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[OutputFormat, typer.Option("-O", "--output", help="table, json or yaml.",
                                                    case_sensitive=False)]


class ClusterUnreachable(ConnectionLost):
    """The SC did not answer within ``CONNECT_TIMEOUT_SECONDS``."""


# ------------------------------------------------------------------------------ global options


@dataclass(frozen=True)
class GlobalOptions:
    """The options given before the noun: ``fluvial -c HOST:PORT --tls ... topic list``."""

    cluster: str | None = None
    profile: str | None = None
    tls: TlsPolicy | None = None
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS

    def connect_args(self) -> dict[str, Any]:
        return {"endpoint": self.cluster, "profile": self.profile, "tls": self.tls}

    def argv(self) -> list[str]:
        """The global flags that give another fluvial command these options (what a supervisor
        passes to the processes it starts); ``tls_policy_from_flags`` reads them back.

        Raises:
            ConfigError: a TLS policy with inline PEM (only a profile holds those: use -P).
        """
        out = ["-c", self.cluster] if self.cluster else ["-P", self.profile] if self.profile else []
        if isinstance(self.tls, TlsDisabled):
            out.append("--no-tls")
        elif isinstance(self.tls, TlsAnonymous):
            out.append("--tls")
        elif isinstance(self.tls, TlsVerified):
            if self.tls.source != "files":
                raise ConfigError("inline TLS certificates cannot be passed on a command line")
            out += ["--domain", self.tls.domain, "--ca-cert", str(Path(self.tls.ca_cert).resolve()),
                    "--client-cert", str(Path(self.tls.cert).resolve()),
                    "--client-key", str(Path(self.tls.key).resolve())]
        if self.connect_timeout != CONNECT_TIMEOUT_SECONDS:
            out += ["--connect-timeout", repr(self.connect_timeout)]
        return out


_META_KEY = "fluvial.global_options"


def tls_policy_from_flags(tls: bool | None, domain: str | None, ca_cert: Path | None,
                          client_cert: Path | None, client_key: Path | None) -> TlsPolicy | None:
    """The TLS policy the flags ask for, or None when they ask for nothing (use the profile's).

    * ``--no-tls``: plain TCP.
    * ``--domain``, ``--ca-cert``, ``--client-cert`` and ``--client-key`` together: mutual TLS
      (any of them implies ``--tls``; all four are needed).
    * ``--tls`` alone: TLS, the server checked against the system's trust store, no client
      certificate.

    Raises:
        typer.BadParameter: a partial set of certificate flags, or ``--no-tls`` with them.
    """
    given = {"--domain": domain, "--ca-cert": ca_cert, "--client-cert": client_cert,
             "--client-key": client_key}
    named = [flag for flag, v in given.items() if v is not None]
    if tls is False:
        if named:
            raise typer.BadParameter(f"--no-tls cannot be combined with {', '.join(named)}")
        return TlsDisabled()
    if named:
        missing = [flag for flag, v in given.items() if v is None]
        if missing:
            raise typer.BadParameter(f"mutual TLS needs {', '.join(given)}; missing {', '.join(missing)}")
        return TlsVerified(str(domain), str(client_key), str(client_cert), str(ca_cert))
    if tls:
        return TlsAnonymous()
    return None


TlsFlag = Annotated[Optional[bool], typer.Option(
    "--tls/--no-tls", show_default=False,
    help="Force TLS on (without certificates: check the server against the system trust "
         "store) or off. Default: as the profile says; plain TCP with -c.")]
DomainFlag = Annotated[Optional[str], typer.Option(
    "--domain", help="TLS: the name the SC's certificate must carry (SPUs: <spu name>.<domain>).")]
CaCertFlag = Annotated[Optional[Path], typer.Option(
    "--ca-cert", help="TLS: the CA certificate (PEM) the servers chain to.", dir_okay=False)]
ClientCertFlag = Annotated[Optional[Path], typer.Option(
    "--client-cert", help="TLS: this client's certificate (PEM).", dir_okay=False)]
ClientKeyFlag = Annotated[Optional[Path], typer.Option(
    "--client-key", help="TLS: this client's private key (PEM).", dir_okay=False)]


def set_global_options(ctx: typer.Context, options: GlobalOptions) -> None:
    ctx.meta[_META_KEY] = options


def global_options(ctx: typer.Context) -> GlobalOptions:
    """The global options of this invocation (defaults when the root callback did not run)."""
    return ctx.meta.get(_META_KEY) or GlobalOptions()


# ------------------------------------------------------------------------------ errors, exits


def usage_error(message: str) -> NoReturn:
    """Stop with exit code 2, typer's way (the usage line, then the message)."""
    raise typer.BadParameter(message)


def fail(message: str, hint: str | None = None, code: int = EXIT_ERROR) -> NoReturn:
    """Print ``error: message`` (and the hint) on stderr and exit with ``code``."""
    from fluvial.cli.output import print_error

    print_error(message, hint)
    raise typer.Exit(code)


_UNREACHABLE_HINT = ("is the cluster running (`fluvial cluster status`)? check -c/--cluster or "
                     "the profile (`fluvial profile current`)")


def _leaf(exc: BaseException) -> BaseException:
    """The first interesting exception inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        inner = exc.exceptions
        exc = next((e for e in inner if not isinstance(e, trio.Cancelled)), inner[0])
    return exc


def describe_error(exc: BaseException, *, topic: str | None = None) -> tuple[str, str | None, int]:
    """``(message, hint, exit code)`` for an exception a command let through.

    Args:
        topic: the topic the command was about, to name it in the message.
    """
    text = str(exc)
    code = getattr(exc, "code", None)
    if isinstance(exc, TlsHandshakeError):
        return text, ("check the TLS settings: --tls/--no-tls and the certificate flags, or "
                      "the profile's certificates (`fluvial profile list`)"), EXIT_UNREACHABLE
    if isinstance(exc, (ConnectionLost, LocalTimeout)):
        # refused, reset, or no answer within a timeout the client set itself (a RequestTimedOut
        # the SPU answered with is a plain RequestTimedOutError: the cluster did answer)
        return text, _UNREACHABLE_HINT, EXIT_UNREACHABLE
    if isinstance(exc, ConfigError):
        hint = None if "fluvial " in text else "see `fluvial profile list`"
        return text, hint, EXIT_ERROR
    if code == ErrorCode.TopicNotFound:
        name = topic or _after_colon(text)
        return (f"topic '{name}' not found" if name else text,
                "list the topics with `fluvial topic list`", EXIT_ERROR)
    if code == ErrorCode.TopicAlreadyExists:
        name = topic or _after_colon(text)
        if name:
            return f"topic '{name}' already exists", f"`fluvial topic describe {name}` shows it", EXIT_ERROR
        return text, "list the topics with `fluvial topic list`", EXIT_ERROR
    if code == ErrorCode.TopicInvalidName:
        return (f"invalid topic name '{topic}': {text}" if topic else text,
                "use lowercase letters, digits and '-', at most 63 characters", EXIT_ERROR)
    hints = {
        ErrorCode.SpuNotFound: "list the SPUs with `fluvial spu list`",
        ErrorCode.SpuAlreadyExists: "list the SPUs with `fluvial spu list`",
        ErrorCode.PermissionDenied: "the client certificate's principal is not allowed to do "
                                    "this; see the cluster's policy.toml",
        ErrorCode.OffsetOutOfRange: "see the partitions' offsets with `fluvial partition list`",
        ErrorCode.CompressionError: (f"the topic fixes its compression; see `fluvial topic "
                                     f"describe {topic}`" if topic else "the topic fixes its compression"),
        ErrorCode.MessageTooLarge: "raise --max-request-size, or split the input",
        ErrorCode.OffsetManagementDisabled: "give a consumer id with -c/--consumer",
        ErrorCode.SystemSpecDeletionAttempt: "system topics cannot be deleted this way",
        ErrorCode.TopicInvalidConfiguration: "see `fluvial topic create --help`",
        ErrorCode.InvalidCreateRequest: "see `fluvial topic create --help`",
        ErrorCode.NotLeaderForPartition: "the partition has no leader now; retry, or see "
                                         "`fluvial partition list`",
    }
    if isinstance(exc, FluvialError):
        return text, hints.get(code), EXIT_ERROR
    if isinstance(exc, ContentTypeError):
        return text, "the topic's content type is checked (`fluvial topic create --content-type`); " \
                     "a record's content-type header overrides it", EXIT_ERROR
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}", None, EXIT_ERROR
    return f"{type(exc).__name__}: {exc}", "this is a bug in fluvial; please report it", EXIT_ERROR


def _after_colon(text: str) -> str | None:
    _, sep, tail = text.partition(": ")
    if sep and tail and " " not in tail.strip():
        return tail.strip()
    return None


@contextmanager
def handle_errors(*, topic: str | None = None) -> Iterator[None]:
    """Turn the exceptions of a command into an error line and an exit code (module docstring).

    typer's own exits (``typer.Exit``, usage errors) pass through unchanged. An unexpected
    exception (a bug) is one line too; set ``FLUVIAL_DEBUG=1`` to see its traceback.
    """
    try:
        yield
    except (typer.Exit, typer.Abort, typer.BadParameter):
        raise
    except BaseException as e:  # noqa: BLE001 - this is the CLI's last word on every failure
        leaf = _leaf(e)
        if leaf is not e and isinstance(leaf, (typer.Exit, typer.Abort, typer.BadParameter)):
            raise leaf from None
        if isinstance(leaf, KeyboardInterrupt):
            raise typer.Exit(EXIT_INTERRUPTED) from None
        if isinstance(leaf, (SystemExit, GeneratorExit)):
            raise
        if isinstance(leaf, BrokenPipeError):  # the reader went away (`| head`): done
            _silence_stdout()
            raise typer.Exit(EXIT_OK) from None
        if not isinstance(leaf, Exception):
            raise
        message, hint, code = describe_error(leaf, topic=topic)
        if os.environ.get("FLUVIAL_DEBUG") and not isinstance(leaf, FluvialError):
            traceback.print_exception(leaf)
        fail(message, hint, code)


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so that the interpreter's final flush is quiet."""
    import sys

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


# ------------------------------------------------------------------------------ connecting


@asynccontextmanager
async def open_client(options: GlobalOptions) -> AsyncIterator[Any]:
    """``fluvial.connect`` with the global options, giving up after ``options.connect_timeout``.

    Raises:
        ClusterUnreachable: the SC did not answer in time.
        ConnectError: it refused the connection (``TlsHandshakeError``: TLS failed).
        ConfigError: no usable profile.
    """
    import fluvial

    connect_timeout = options.connect_timeout
    with trio.CancelScope(deadline=trio.current_time() + connect_timeout) as scope:
        async with fluvial.connect(**options.connect_args(), metadata_timeout=connect_timeout,
                                   request_timeout=REQUEST_TIMEOUT_SECONDS) as fl:
            scope.deadline = math.inf
            yield fl
    if scope.cancelled_caught:
        where = options.cluster or (f"profile '{options.profile}'" if options.profile else None)
        raise ClusterUnreachable(detail=f"no answer from the cluster{f' at {where}' if where else ''} "
                                        f"within {connect_timeout:g}s")


async def check_partitions(fl: Any, topic: str, partitions: list[int]) -> int:
    """The topic's partition count; exit 1 naming the valid range if a partition is not in it
    (the client would otherwise wait for a leader that never comes).

    Raises:
        TopicNotFoundError: no such topic.
    """
    info = await fl.admin.describe_topic(topic)
    bad = sorted({p for p in partitions if not 0 <= p < info.partitions})
    if bad:
        valid = "0" if info.partitions == 1 else f"0 to {info.partitions - 1}"
        fail(f"topic '{topic}' has no partition {', '.join(map(str, bad))} (partitions: {valid})",
             f"see them with `fluvial partition list --topic {topic}`")
    return info.partitions


def run_client(ctx: typer.Context, body: Callable[[Any], Awaitable[T]], *,
               topic: str | None = None, stop_on_interrupt: bool = False) -> T:
    """Connect with the global options, run ``await body(fl)`` and map failures to exit codes.

    Args:
        topic: named in error messages.
        stop_on_interrupt: Ctrl-C (SIGINT) cancels ``body`` and the command ends normally (exit
            0), after the client has closed cleanly (consumers store their offsets). Otherwise
            Ctrl-C exits with 130.
    """
    options = global_options(ctx)

    async def main() -> T:
        if not stop_on_interrupt:
            async with open_client(options) as fl:
                return await body(fl)
        result: Any = None
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                # first Ctrl-C: stop the body (the client then closes cleanly); a second one
                # while closing: stop everything
                target = {"scope": nursery.cancel_scope}

                async def watch() -> None:
                    async for _ in signals:
                        target["scope"].cancel()
                        target["scope"] = nursery.cancel_scope

                nursery.start_soon(watch)
                async with open_client(options) as fl:
                    with trio.CancelScope() as body_scope:
                        target["scope"] = body_scope
                        result = await body(fl)
                    target["scope"] = nursery.cancel_scope
                nursery.cancel_scope.cancel()
        return result

    with handle_errors(topic=topic):
        return trio.run(main)


# ------------------------------------------------------------------------- durations and sizes

_DURATION_UNITS = {
    "ns": 1e-9, "nsec": 1e-9, "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
    "M": 2_630_016, "month": 2_630_016, "months": 2_630_016,  # 30.44 days, as humantime
    "y": 31_557_600, "year": 31_557_600, "years": 31_557_600,  # 365.25 days
}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``7d``, ``1h30m``, ``2 days``, ``150ms`` or ``90`` (seconds).

    Units: ns, us, ms, s, m (minutes), h, d, w, M (months of 30.44 days), y, and their long
    forms (``sec``, ``minutes``, ``hours``, ``days``...), as Fluvio's humantime accepts them.

    >>> parse_duration("7d"), parse_duration("1h 30m"), parse_duration("150ms")
    (604800.0, 5400.0, 0.15)

    Raises:
        typer.BadParameter: anything else.
    """
    source = text.strip()
    if not source:
        raise typer.BadParameter("empty duration; try 7d, 12h, 30m, 150ms")
    total = 0.0
    pos = 0
    while pos < len(source):
        m = _DURATION_PART.match(source, pos)
        if m is None or m.end() == pos:
            raise typer.BadParameter(f"cannot read {text!r} as a duration; try 7d, 12h, 30m, 150ms")
        number, unit = m.groups()
        if not unit:
            if m.end() != len(source) or pos:
                raise typer.BadParameter(f"{text!r}: a number needs a unit (s, m, h, d...)")
            return float(number)
        # "M" is months and "m" minutes; every other unit is case-insensitive
        factor = _DURATION_UNITS["M"] if unit == "M" else _DURATION_UNITS.get(unit.lower())
        if factor is None:
            raise typer.BadParameter(f"{text!r}: unknown unit {unit!r}; use ms, s, m, h, d or w")
        total += float(number) * factor
        pos = m.end()
        while pos < len(source) and source[pos] in " ,":
            pos += 1
    return total


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "kib": 1 << 10, "ki": 1 << 10,
    "m": 1000**2, "mb": 1000**2, "mib": 1 << 20, "mi": 1 << 20,
    "g": 1000**3, "gb": 1000**3, "gib": 1 << 30, "gi": 1 << 30,
    "t": 1000**4, "tb": 1000**4, "tib": 1 << 40, "ti": 1 << 40,
}


def parse_size(text: str) -> int:
    """Bytes in a size such as ``1GiB``, ``512MB``, ``1.5 GB``, ``64k`` or ``1000``.

    KB, MB, GB and TB are powers of 1000 and KiB, MiB, GiB and TiB powers of 1024, as in Fluvio
    (the bytesize crate); units are case-insensitive.

    >>> parse_size("1GiB"), parse_size("512MB"), parse_size("16 KiB")
    (1073741824, 512000000, 16384)

    Raises:
        typer.BadParameter: anything else.
    """
    m = _SIZE.match(text)
    if m is None:
        raise typer.BadParameter(f"cannot read {text!r} as a size; try 1GiB, 512MB, 16KiB")
    number, unit = m.groups()
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise typer.BadParameter(f"{text!r}: unknown unit {unit!r}; use B, KB, KiB, MB, MiB, GB, GiB")
    return int(float(number) * factor) if "." in number else int(number) * factor


def format_duration(seconds: float | None) -> str:
    """The shortest exact form: 604800 -> "7d", 5400 -> "1h30m", 0.15 -> "150ms"."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            n, whole = divmod(whole, size)
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"


def format_size(size: int | None) -> str:
    """1073741824 -> "1 GiB", 1536 -> "1.5 KiB", 12 -> "12 B"; "" for None, as is below 0."""
    if size is None:
        return ""
    if size < 0:
        return str(size)
    for unit, base in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= base:
            value = size / base
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} B"
