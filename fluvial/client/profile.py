"""Client profiles: which cluster to talk to, and how (TLS), stored in Fluvio's own TOML schema.

Theory of operation
-------------------
The file is Fluvio's profile file (../shared/fluvio-protocol README §6.5.6), so the official fluvio
client reads a fluvial profile when pointed at it with ``FLV_PROFILE_PATH``:

.. code-block:: toml

    version = "2.0"
    current_profile = "local"

    [profile.local]
    cluster = "local"

    [cluster.local]
    endpoint = "127.0.0.1:9003"

    [cluster.local.tls]          # absent: TLS disabled
    tls_policy = "verified"      # "disabled" | "anonymous" | "verified"
    tls_source = "files"         # "files" (paths) | "inline" (PEM text)

    [cluster.local.tls.certs]
    domain = "fluvio.local"
    key = "certs/client.key"
    cert = "certs/client.crt"
    ca_cert = "certs/ca.crt"

Where the file is (first that applies; cf. Fluvio's ``ConfigFile::default_file_path``):

1. an explicit ``path`` argument;
2. ``$FLUVIAL_CONFIG``;
3. ``$FLUVIAL_HOME/config``, with ``FLUVIAL_HOME`` defaulting to ``~/.fluvial``.

Reading accepts Fluvio's aliases (``addr`` for ``endpoint``; ``disable``, ``verify``, ``file``) and
keeps keys it does not know (``extra`` on every model) so that a round trip loses nothing. Writing
uses the canonical names, omits the defaults the README's examples omit (``use_spu_local_address =
false``, a disabled ``tls`` table), and replaces the file atomically (temporary file + rename, mode
0600 since inline TLS keys may be inside). Unlike Fluvio, which silently ignores a malformed file,
fluvial raises ``ConfigError`` saying what is wrong and where.

Each operation exists twice: as a pure method on ``Config`` and as a module function that loads the
file, calls the method and saves the file (``add_profile(name, endpoint, path=...)``).

Relative certificate paths are kept as written; like Fluvio, they are resolved against the working
directory of the process that uses them.
"""

from __future__ import annotations

import copy
import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import tomli_w

from fluvial.errors import ConfigError

__all__ = [
    "CONFIG_VERSION",
    "Cluster",
    "Config",
    "DeletedProfile",
    "Profile",
    "ProfileEntry",
    "ResolvedCluster",
    "TlsAnonymous",
    "TlsDisabled",
    "TlsPolicy",
    "TlsVerified",
    "add_profile",
    "config_path",
    "current_profile",
    "delete_profile",
    "export",
    "fluvial_home",
    "list_profiles",
    "load_config",
    "rename_profile",
    "resolve_endpoint",
    "save_config",
    "split_endpoint",
    "switch_profile",
]

CONFIG_VERSION = "2.0"
ENV_CONFIG = "FLUVIAL_CONFIG"
ENV_HOME = "FLUVIAL_HOME"

_HOW_TO_GET_A_PROFILE = (
    "run `fluvial cluster start` to start a local cluster (it adds a 'local' profile), "
    "or `fluvial profile add NAME HOST:PORT` to point at a running one"
)


# ---------------------------------------------------------------------------------------------
# Locations


def fluvial_home() -> Path:
    """``$FLUVIAL_HOME``, else ``~/.fluvial``."""
    home = os.environ.get(ENV_HOME)
    return Path(home) if home else Path.home() / ".fluvial"


def config_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The profile file: ``path`` if given, else ``$FLUVIAL_CONFIG``, else ``fluvial_home()/config``."""
    if path is not None:
        return Path(path)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    return fluvial_home() / "config"


# ---------------------------------------------------------------------------------------------
# TLS policies


@dataclass(frozen=True)
class TlsDisabled:
    """Plain TCP (Fluvio's ``tls_policy = "disabled"``)."""

    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    kind = "disabled"

    def describe(self) -> str:
        return "disabled"


@dataclass(frozen=True)
class TlsAnonymous:
    """TLS that checks the server chain against the default trust store, but no name, and presents
    no client certificate (``tls_policy = "anonymous"``, README §6.5.1)."""

    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    kind = "anonymous"

    def describe(self) -> str:
        return "anonymous"


@dataclass(frozen=True)
class TlsVerified:
    """Mutual TLS: the server must match ``domain`` (SPUs: ``<spu name>.<domain>``) and chain to
    ``ca_cert``; the client presents ``cert``/``key`` (``tls_policy = "verified"``).

    With ``source="files"`` the three are paths; with ``source="inline"`` they are PEM text.
    """

    domain: str
    key: str
    cert: str
    ca_cert: str
    source: Literal["files", "inline"] = "files"
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    certs_extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    kind = "verified"

    def __post_init__(self) -> None:
        if self.source not in ("files", "inline"):
            raise ConfigError(f"tls_source must be 'files' or 'inline', not {self.source!r}")

    def describe(self) -> str:
        return f"verified ({self.source}, domain {self.domain})"

    def inlined(self) -> TlsVerified:
        """The same policy with the key and certificates as PEM text (reads them if they are files).

        Raises:
            ConfigError: a file cannot be read or is not UTF-8 text.
        """
        if self.source == "inline":
            return self
        texts = {}
        for what in ("key", "cert", "ca_cert"):
            file = getattr(self, what)
            try:
                texts[what] = Path(file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"cannot read TLS {what} file {file!r}: {e}") from e
        return replace(self, source="inline", **texts)


TlsPolicy = TlsDisabled | TlsAnonymous | TlsVerified

_POLICY_NAMES = {"disabled": "disabled", "disable": "disabled", "anonymous": "anonymous",
                 "verified": "verified", "verify": "verified"}
_SOURCE_NAMES = {"files": "files", "file": "files", "inline": "inline"}
_CERT_KEYS = ("domain", "key", "cert", "ca_cert")


def _tls_from_toml(raw: Any, where: str) -> TlsPolicy:
    table = _expect_table(raw, where)
    rest = dict(table)
    policy = rest.pop("tls_policy", None)
    if policy is None:
        raise ConfigError(f"{where}: missing 'tls_policy' (one of: disabled, anonymous, verified)")
    if not isinstance(policy, str) or policy not in _POLICY_NAMES:
        raise ConfigError(f"{where}.tls_policy: expected one of disabled, anonymous, verified; got {policy!r}")
    policy = _POLICY_NAMES[policy]
    if policy == "disabled":
        return TlsDisabled(extra=rest)
    if policy == "anonymous":
        return TlsAnonymous(extra=rest)
    source = rest.pop("tls_source", None)
    if source is None:
        raise ConfigError(f"{where}: tls_policy 'verified' needs tls_source = 'files' or 'inline'")
    if not isinstance(source, str) or source not in _SOURCE_NAMES:
        raise ConfigError(f"{where}.tls_source: expected 'files' or 'inline', got {source!r}")
    if "certs" not in rest:
        missing_keys = [k for k in _CERT_KEYS if k in rest]
        hint = f" (found {', '.join(missing_keys)} directly in the tls table; move them into it)" if missing_keys else ""
        raise ConfigError(f"{where}: tls_policy 'verified' needs a [{where}.certs] table{hint}")
    certs = dict(_expect_table(rest.pop("certs"), f"{where}.certs"))
    values = {}
    for key in _CERT_KEYS:
        if key not in certs:
            raise ConfigError(f"{where}.certs: missing '{key}'")
        values[key] = _expect_str(certs.pop(key), f"{where}.certs.{key}")
    return TlsVerified(source=_SOURCE_NAMES[source], extra=rest, certs_extra=certs, **values)


def _tls_to_toml(tls: TlsPolicy) -> dict[str, Any] | None:
    """The ``tls`` table, or ``None`` when it can be left out (disabled, nothing to preserve)."""
    if isinstance(tls, TlsDisabled):
        return {"tls_policy": "disabled", **_copy(tls.extra)} if tls.extra else None
    if isinstance(tls, TlsAnonymous):
        return {"tls_policy": "anonymous", **_copy(tls.extra)}
    if isinstance(tls, TlsVerified):
        certs = {"domain": tls.domain, "key": tls.key, "cert": tls.cert, "ca_cert": tls.ca_cert}
        return {"tls_policy": "verified", "tls_source": tls.source, **_copy(tls.extra),
                "certs": {**certs, **_copy(tls.certs_extra)}}
    raise ConfigError(f"not a TLS policy: {tls!r}")


# ---------------------------------------------------------------------------------------------
# Profiles, clusters, the whole file


@dataclass
class Profile:
    """``[profile.<name>]``: the cluster it selects (and Fluvio's optional topic/partition)."""

    cluster: str
    topic: str | None = None
    partition: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Cluster:
    """``[cluster.<name>]``: where the SC is and how to secure the connection."""

    endpoint: str
    use_spu_local_address: bool = False
    tls: TlsPolicy = field(default_factory=TlsDisabled)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfileEntry:
    """One row of ``list_profiles``. ``endpoint``/``tls`` are ``None`` if the cluster is missing."""

    name: str
    cluster: str
    endpoint: str | None
    tls: TlsPolicy | None
    current: bool


@dataclass(frozen=True)
class DeletedProfile:
    """What ``delete_profile`` did."""

    name: str
    was_current: bool
    cluster_deleted: str | None


@dataclass(frozen=True)
class ResolvedCluster:
    """Where to connect and how: the result of ``resolve_endpoint``."""

    endpoint: str
    tls: TlsPolicy = field(default_factory=TlsDisabled)
    use_spu_local_address: bool = False
    profile: str | None = None
    more_endpoints: tuple[str, ...] = ()  # further SCs of the same cluster (docs/ha.md)

    @property
    def endpoints(self) -> tuple[str, ...]:
        """Every SC endpoint, the main one first: a client tries the next when one fails."""
        return (self.endpoint, *self.more_endpoints)

    @property
    def host(self) -> str:
        return split_endpoint(self.endpoint)[0]

    @property
    def port(self) -> int:
        return split_endpoint(self.endpoint)[1]


@dataclass
class Config:
    """The profile file in memory.

    Attributes:
        version: Fluvio's schema version string (written as ``"2.0"``).
        current_profile: name of the selected profile, if any.
        profiles: ``[profile.<name>]`` tables.
        clusters: ``[cluster.<name>]`` tables.
        extra: top-level keys fluvial does not use (e.g. Fluvio's ``client_id``), kept on save.
        path: the file it was loaded from, if any (not part of equality).
    """

    version: str = CONFIG_VERSION
    current_profile: str | None = None
    profiles: dict[str, Profile] = field(default_factory=dict)
    clusters: dict[str, Cluster] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False, repr=False)

    # -- (de)serialisation -------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: Path | None = None) -> Config:
        """Build from parsed TOML. Raises ``ConfigError`` naming the offending key."""
        rest = dict(data)
        if "version" not in rest:
            raise ConfigError("missing top-level 'version' (Fluvio ignores a file without it); add version = \"2.0\"")
        version = _expect_str(rest.pop("version"), "version")
        current = rest.pop("current_profile", None)
        if current is not None:
            current = _expect_str(current, "current_profile")
        profiles = {}
        for name, raw in _expect_table(rest.pop("profile", {}), "profile").items():
            profiles[name] = _profile_from_toml(raw, f"profile.{_key(name)}")
        clusters = {}
        for name, raw in _expect_table(rest.pop("cluster", {}), "cluster").items():
            clusters[name] = _cluster_from_toml(raw, f"cluster.{_key(name)}")
        return cls(version=version, current_profile=current, profiles=profiles, clusters=clusters,
                   extra=rest, path=path)

    def to_dict(self) -> dict[str, Any]:
        """The TOML document as a dict, in the order Fluvio's examples use."""
        out: dict[str, Any] = {"version": self.version}
        if self.current_profile is not None:
            out["current_profile"] = self.current_profile
        out.update(_copy(self.extra))
        if self.profiles:
            out["profile"] = {name: _profile_to_toml(p) for name, p in self.profiles.items()}
        if self.clusters:
            out["cluster"] = {name: _cluster_to_toml(c) for name, c in self.clusters.items()}
        return out

    @classmethod
    def from_toml(cls, text: str, path: Path | None = None) -> Config:
        """Parse TOML text. Raises ``ConfigError`` on syntax or schema errors."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path or 'profile file'}: invalid TOML: {e}") from e
        try:
            return cls.from_dict(data, path)
        except ConfigError as e:
            if path is None:
                raise
            raise ConfigError(f"{path}: {e}") from e

    def to_toml(self) -> str:
        # Multi-line strings: inline PEM is written as `"""` blocks, as README §6.5.6 shows.
        return tomli_w.dumps(self.to_dict(), multiline_strings=True)

    # -- queries -----------------------------------------------------------------------------

    def profile(self, name: str) -> Profile:
        """The profile called ``name``. Raises ``ConfigError`` listing the known ones."""
        try:
            return self.profiles[name]
        except KeyError:
            raise ConfigError(self._unknown_profile(name)) from None

    def cluster_of(self, name: str) -> Cluster:
        """The cluster that profile ``name`` selects."""
        profile = self.profile(name)
        try:
            return self.clusters[profile.cluster]
        except KeyError:
            known = ", ".join(sorted(self.clusters)) or "none"
            raise ConfigError(
                f"profile {name!r} uses cluster {profile.cluster!r}, which is not defined"
                f" (clusters: {known})"
            ) from None

    def entries(self) -> list[ProfileEntry]:
        """Every profile, sorted by name, with its cluster's endpoint and TLS policy."""
        rows = []
        for name in sorted(self.profiles):
            profile = self.profiles[name]
            cluster = self.clusters.get(profile.cluster)
            rows.append(ProfileEntry(
                name=name,
                cluster=profile.cluster,
                endpoint=cluster.endpoint if cluster else None,
                tls=cluster.tls if cluster else None,
                current=name == self.current_profile,
            ))
        return rows

    def resolve(self, profile: str | None = None, tls: TlsPolicy | None = None) -> ResolvedCluster:
        """The cluster of ``profile`` (default: the current profile), TLS overridden by ``tls``.

        Raises:
            ConfigError: no profile selected, an unknown profile, a missing cluster, or an
                endpoint that is not ``host:port``.
        """
        name = profile if profile is not None else self.current_profile
        if name is None:
            where = f" in {self.path}" if self.path else ""
            raise ConfigError(f"no profile is selected{where}; {_HOW_TO_GET_A_PROFILE}")
        if profile is None and name not in self.profiles:
            raise ConfigError(f"the current profile {name!r} is not defined; {self._known_profiles()}; "
                              "pick one with `fluvial profile switch NAME`")
        cluster = self.cluster_of(name)
        more = cluster.extra.get(MORE_ENDPOINTS, [])
        try:
            split_endpoint(cluster.endpoint)
            if not isinstance(more, list):
                raise ConfigError(f"{MORE_ENDPOINTS} must be a list of host:port, got {more!r}")
            for e in more:
                split_endpoint(e)
        except ConfigError as e:
            raise ConfigError(f"profile {name!r}: {e}") from None
        return ResolvedCluster(
            endpoint=cluster.endpoint,
            tls=tls if tls is not None else cluster.tls,
            use_spu_local_address=cluster.use_spu_local_address,
            profile=name,
            more_endpoints=tuple(more),
        )

    # -- mutations ---------------------------------------------------------------------------

    def add_profile(
        self,
        name: str,
        endpoint: str,
        tls: TlsPolicy | None = None,
        *,
        set_current: bool = True,
        use_spu_local_address: bool = False,
        more_endpoints: tuple[str, ...] = (),
    ) -> None:
        """Create (or replace) profile ``name`` and a cluster of the same name.

        Like Fluvio's ``add_or_replace_profile``: an existing cluster ``name`` gets the new endpoint
        and TLS (its unknown keys are kept), and the profile is pointed at it.

        Raises:
            ConfigError: an invalid name or an endpoint that is not ``host:port``.
        """
        _check_name(name)
        split_endpoint(endpoint)
        tls = tls if tls is not None else TlsDisabled()
        if not isinstance(tls, TlsDisabled | TlsAnonymous | TlsVerified):
            raise ConfigError(f"not a TLS policy: {tls!r}")
        existing = self.clusters.get(name)
        extra = dict(existing.extra) if existing else {}
        for e in more_endpoints:
            split_endpoint(e)
        extra.pop(MORE_ENDPOINTS, None)
        if more_endpoints:
            extra[MORE_ENDPOINTS] = list(more_endpoints)
        self.clusters[name] = Cluster(endpoint, use_spu_local_address, tls, extra)
        if name in self.profiles:
            self.profiles[name].cluster = name
        else:
            self.profiles[name] = Profile(cluster=name)
        if set_current:
            self.current_profile = name

    def switch_profile(self, name: str) -> None:
        """Make ``name`` the current profile. Raises ``ConfigError`` if there is no such profile."""
        self.profile(name)
        self.current_profile = name

    def rename_profile(self, old: str, new: str) -> None:
        """Rename profile ``old`` to ``new`` (and follow it as the current profile).

        Its cluster is renamed too when it carries the profile's name (as ``add_profile`` makes
        it), no other profile uses it and ``new`` is free as a cluster name.

        Raises:
            ConfigError: ``old`` does not exist, ``new`` is invalid or already a profile.
        """
        profile = self.profile(old)
        _check_name(new)
        if new == old:
            return
        if new in self.profiles:
            raise ConfigError(f"a profile named {new!r} already exists; delete it first or pick another name")
        del self.profiles[old]
        self.profiles[new] = profile
        if (profile.cluster == old and old in self.clusters and new not in self.clusters
                and self._users_of(old) == [new]):
            self.clusters[new] = self.clusters.pop(old)
            profile.cluster = new
        if self.current_profile == old:
            self.current_profile = new

    def delete_profile(self, name: str) -> DeletedProfile:
        """Delete profile ``name``; unselect it if current; drop its cluster if nothing else uses it.

        Raises:
            ConfigError: no such profile.
        """
        profile = self.profile(name)
        del self.profiles[name]
        was_current = self.current_profile == name
        if was_current:
            self.current_profile = None
        cluster_deleted = None
        if profile.cluster in self.clusters and not self._users_of(profile.cluster):
            del self.clusters[profile.cluster]
            cluster_deleted = profile.cluster
        return DeletedProfile(name, was_current, cluster_deleted)

    def export(self, name: str | None = None) -> Config:
        """A standalone config holding profile ``name`` (default: current) and its cluster, selected.

        File-based certificates are read and inlined, so the result can be moved to another
        machine (Fluvio's ``profile export`` refuses file-based TLS instead).

        Raises:
            ConfigError: no profile selected or unknown, a missing cluster, unreadable TLS files.
        """
        if name is None:
            if self.current_profile is None:
                raise ConfigError(f"no profile is selected, so there is nothing to export; {_HOW_TO_GET_A_PROFILE}")
            name = self.current_profile
        profile = self.profile(name)
        cluster = copy.deepcopy(self.cluster_of(name))
        if isinstance(cluster.tls, TlsVerified):
            cluster.tls = cluster.tls.inlined()
        exported = Config(profiles={name: copy.deepcopy(profile)}, clusters={profile.cluster: cluster})
        exported.current_profile = name
        return exported

    # -- helpers -----------------------------------------------------------------------------

    def _users_of(self, cluster: str) -> list[str]:
        return sorted(n for n, p in self.profiles.items() if p.cluster == cluster)

    def _known_profiles(self) -> str:
        return f"known: {', '.join(sorted(self.profiles))}" if self.profiles else "no profiles are defined"

    def _unknown_profile(self, name: str) -> str:
        if self.profiles:
            return f"no profile named {name!r}; {self._known_profiles()}"
        return f"no profile named {name!r}; no profiles are defined ({_HOW_TO_GET_A_PROFILE})"


def _profile_from_toml(raw: Any, where: str) -> Profile:
    rest = dict(_expect_table(raw, where))
    if "cluster" not in rest:
        raise ConfigError(f"{where}: missing 'cluster'")
    cluster = _expect_str(rest.pop("cluster"), f"{where}.cluster")
    topic = rest.pop("topic", None)
    if topic is not None:
        topic = _expect_str(topic, f"{where}.topic")
    partition = rest.pop("partition", None)
    if partition is not None and (not isinstance(partition, int) or isinstance(partition, bool)):
        raise ConfigError(f"{where}.partition: expected an integer, got {partition!r}")
    return Profile(cluster=cluster, topic=topic, partition=partition, extra=rest)


def _profile_to_toml(profile: Profile) -> dict[str, Any]:
    out: dict[str, Any] = {"cluster": profile.cluster}
    if profile.topic is not None:
        out["topic"] = profile.topic
    if profile.partition is not None:
        out["partition"] = profile.partition
    out.update(_copy(profile.extra))
    return out


def _cluster_from_toml(raw: Any, where: str) -> Cluster:
    rest = dict(_expect_table(raw, where))
    if "endpoint" in rest and "addr" in rest:
        raise ConfigError(f"{where}: give 'endpoint' or its alias 'addr', not both")
    key = "endpoint" if "endpoint" in rest else "addr"
    if key not in rest:
        raise ConfigError(f"{where}: missing 'endpoint'")
    endpoint = _expect_str(rest.pop(key), f"{where}.{key}")
    local = rest.pop("use_spu_local_address", False)
    if not isinstance(local, bool):
        raise ConfigError(f"{where}.use_spu_local_address: expected true or false, got {local!r}")
    tls = _tls_from_toml(rest.pop("tls"), f"{where}.tls") if "tls" in rest else TlsDisabled()
    return Cluster(endpoint=endpoint, use_spu_local_address=local, tls=tls, extra=rest)


def _cluster_to_toml(cluster: Cluster) -> dict[str, Any]:
    out: dict[str, Any] = {"endpoint": cluster.endpoint}
    if cluster.use_spu_local_address:
        out["use_spu_local_address"] = True
    out.update(_copy(cluster.extra))
    tls = _tls_to_toml(cluster.tls)
    if tls is not None:
        out["tls"] = tls
    return out


def _expect_table(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a table, got {_type_name(value)}")
    return value


def _expect_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {_type_name(value)} {value!r}")
    return value


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


def _key(name: str) -> str:
    """A TOML key as it would be written (quoted when it is not bare)."""
    bare = name and all(c.isascii() and (c.isalnum() or c in "-_") for c in name)
    return name if bare else '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _copy(value: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(value))


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigError("a profile name must be a non-empty string")
    if name != name.strip() or any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise ConfigError(f"invalid profile name {name!r}: no surrounding spaces or control characters")


# a cluster's further SC endpoints (several SCs, docs/ha.md), kept among the cluster's own keys;
# clients that do not know it use ``endpoint`` alone
MORE_ENDPOINTS = "more_endpoints"


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6 address]:port``) into ``(host, port)``.

    >>> split_endpoint("127.0.0.1:9003")
    ('127.0.0.1', 9003)
    >>> split_endpoint("[::1]:9003")
    ('::1', 9003)

    Raises:
        ConfigError: no port, a port that is not 1..65535, or an empty host.
    """
    if not isinstance(endpoint, str):
        raise ConfigError(f"endpoint must be a string like 127.0.0.1:9003, got {endpoint!r}")
    host, sep, port_text = endpoint.rpartition(":")
    if not sep:
        raise ConfigError(f"endpoint {endpoint!r} has no port; expected HOST:PORT, e.g. 127.0.0.1:9003")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"endpoint {endpoint!r}: write an IPv6 address in brackets, e.g. [::1]:9003")
    if not host or host != host.strip():
        raise ConfigError(f"endpoint {endpoint!r} has no host; expected HOST:PORT, e.g. 127.0.0.1:9003")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"endpoint {endpoint!r}: port must be a number from 1 to 65535")
    return host, int(port_text)


# ---------------------------------------------------------------------------------------------
# The file


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the profile file (see ``config_path``). A missing file is an empty ``Config``.

    Raises:
        ConfigError: the file cannot be read, is not UTF-8 TOML, or does not fit the schema.
    """
    file = config_path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return Config(path=file)
    except OSError as e:
        raise ConfigError(f"cannot read profile file {file}: {e.strerror or e}") from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{file}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    return Config.from_toml(text, file)


def save_config(cfg: Config, path: str | os.PathLike[str] | None = None) -> Path:
    """Write ``cfg`` atomically to ``path``, else where it was loaded from, else ``config_path()``.

    The directory is created if needed; the file is replaced by rename (mode 0600), so a reader
    sees the old file or the new one, never a torn one.

    Returns:
        The path written.

    Raises:
        ConfigError: the file cannot be written.
    """
    file = Path(path) if path is not None else (cfg.path or config_path())
    text = cfg.to_toml()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, file)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
    except OSError as e:
        raise ConfigError(f"cannot write profile file {file}: {e.strerror or e}") from e
    cfg.path = file
    return file


def list_profiles(path: str | os.PathLike[str] | None = None) -> list[ProfileEntry]:
    """Every profile in the file, sorted by name."""
    return load_config(path).entries()


def current_profile(path: str | os.PathLike[str] | None = None) -> str | None:
    """The name of the current profile, or ``None`` if none is selected."""
    return load_config(path).current_profile


def switch_profile(name: str, path: str | os.PathLike[str] | None = None) -> None:
    """Select profile ``name`` and save. Raises ``ConfigError`` if it does not exist."""
    cfg = load_config(path)
    cfg.switch_profile(name)
    save_config(cfg, path)


def add_profile(
    name: str,
    endpoint: str,
    tls: TlsPolicy | None = None,
    *,
    set_current: bool = True,
    use_spu_local_address: bool = False,
    path: str | os.PathLike[str] | None = None,
) -> None:
    """Create or replace profile ``name`` with a cluster of the same name, and save.

    See ``Config.add_profile``.
    """
    cfg = load_config(path)
    cfg.add_profile(name, endpoint, tls, set_current=set_current, use_spu_local_address=use_spu_local_address)
    save_config(cfg, path)


def rename_profile(old: str, new: str, path: str | os.PathLike[str] | None = None) -> None:
    """Rename a profile and save. See ``Config.rename_profile``."""
    cfg = load_config(path)
    cfg.rename_profile(old, new)
    save_config(cfg, path)


def delete_profile(name: str, path: str | os.PathLike[str] | None = None) -> DeletedProfile:
    """Delete a profile (and its cluster when unused) and save. See ``Config.delete_profile``."""
    cfg = load_config(path)
    deleted = cfg.delete_profile(name)
    save_config(cfg, path)
    return deleted


def export(name: str | None = None, path: str | os.PathLike[str] | None = None) -> str:
    """TOML text of a standalone profile file for ``name`` (default: current), certificates inlined.

    The text loads with ``FLV_PROFILE_PATH`` in the official client and with ``load_config``.
    """
    return load_config(path).export(name).to_toml()


def resolve_endpoint(
    profile: str | None = None,
    endpoint: str | None = None,
    tls: TlsPolicy | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
) -> ResolvedCluster:
    """Decide where to connect and how.

    1. An explicit ``endpoint`` wins: it is used with ``tls`` (default: disabled); the profile
       file is not read.
    2. Else the named ``profile``'s cluster.
    3. Else the current profile's cluster.
    4. Else ``ConfigError`` telling the user to run ``fluvial cluster start`` or ``fluvial profile add``.

    An explicit ``tls`` replaces the profile's TLS policy in cases 2 and 3.

    Raises:
        ConfigError: as above, or for an unknown profile, a missing cluster, an endpoint that is
            not ``host:port``, or an unreadable profile file.
    """
    if endpoint is not None:
        first, *more = [e.strip() for e in endpoint.split(",")]
        for e in (first, *more):
            split_endpoint(e)
        return ResolvedCluster(endpoint=first, tls=tls if tls is not None else TlsDisabled(),
                               more_endpoints=tuple(more))
    return load_config(path).resolve(profile, tls)
