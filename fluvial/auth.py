"""Authorization: who may do what, as a pure policy loaded from a TOML file.

Theory of operation
-------------------
A *principal* is the common name (CN) of the verified client certificate a connection presented
(``fluvial.access.principal_of``). A connection without one is the principal ``anonymous``
(``None`` means the same), and ``anonymous`` is refused everything unless the policy sets
``allow_anonymous = true``. A name the policy does not know is refused everything.

Every request is one *action*, on an object *kind* and *name*:

=========== ======================================================= ==================================
action      what it covers                                          kind / name passed by the server
=========== ======================================================= ==================================
``admin``   create, delete, update an object                        kind (``topic``, ``spu``...), name
``read``    list and watch metadata                                 kind, name (``None``: a whole list)
``produce`` write records to a topic                                ``topic`` (or None), topic name
``consume`` read records of a topic, and its consumer offsets       ``topic`` (or None), topic name
``member``  the private APIs (SC <-> SPU and SPU <-> SPU links)     nothing
=========== ======================================================= ==================================

Kinds are the object labels lower-cased: ``topic``, ``partition``, ``spu``, ``customspu``,
``smartmodule``, ``tableformat``, ``spugroup``, ``mirror``.

The file::

    allow_anonymous = false   # clients without a certificate are refused (the default)
    default_read = true       # every known principal may list/watch all metadata (the default)

    [members]                 # the identities of the cluster itself: only they get ``member``
    principals = ["sc", "custom-spu-*"]     # (``names`` is accepted as well)

    [roles.admin]
    permissions = [{ action = "admin" }, { action = "produce", topics = "*" },
                   { action = "consume", topics = "*" }]

    [principals.admin]        # a certificate CN
    roles = ["admin"]

    [principals.reader]
    permissions = [{ action = "consume", topics = "orders-*" }]

    [principals.ops]
    permissions = [{ action = "admin", kinds = ["topic", "partition"], names = "team-a-*" }]

A permission is ``action`` plus optional ``kinds`` (a list; default every kind; only ``admin``
and ``read`` take it) and optional ``names`` (a glob pattern or a list of them, ``fnmatch`` rules,
case-sensitive; default ``"*"``). ``topics`` is the same as ``names`` and reads better for
``produce`` and ``consume``. A principal holds the permissions of its roles plus its own.

Rules, in order:

1. ``anonymous`` (or ``None``) is refused unless ``allow_anonymous``; it then has the permissions
   of ``[principals.anonymous]``, if that table exists.
2. ``member`` is allowed exactly to principals matching a ``[members] principals`` pattern; it
   cannot be granted by a permission, and a member needs no ``[principals]`` entry.
3. Any other principal must be a member or have a ``[principals]`` entry, else it is refused.
4. ``read`` is allowed to every known principal when ``default_read`` is true (the default: the
   official client lists topics, partitions and SPUs before it produces or consumes). An
   ``admin`` permission implies ``read`` of the kinds and names it covers.
5. Otherwise a permission must cover the action, the kind and the name. A request that names no
   object (``name=None``, e.g. a whole list) is covered only by a permission for every name
   (``"*"``); ``kind=None`` likewise only by a permission for every kind.

Worked cases with the file above: ``allows("admin", "admin", "topic", "x")`` is True;
``allows("reader", "consume", "topic", "orders-eu")`` True; ``allows("reader", "produce",
"topic", "orders-eu")`` False (read-only); ``allows("reader", "read", "spu")`` True (default
read); ``allows("mallory", "read", "topic")`` False (unknown); ``allows(None, "read", "topic")``
False (anonymous); ``allows("custom-spu-5001", "member")`` True; ``allows("admin", "member")``
False; ``allows("ops", "admin", "topic", "team-a-1")`` True but ``("ops", "admin", "spu",
"team-a-1")`` False.

Pure: ``Policy.from_dict`` and the decisions do no I/O; ``load_policy`` reads the file.
``Policy.allow_all()`` is the policy of a cluster without TLS: everything is allowed.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from fluvial.errors import ConfigError, PermissionDeniedError  # type: ignore[attr-defined]

__all__ = [
    "ACTIONS", "ANONYMOUS", "KINDS", "Permission", "Policy", "PolicyError", "default_policy",
    "load_policy",
]

ANONYMOUS = "anonymous"
ACTIONS = ("admin", "read", "produce", "consume", "member")
KINDS = ("topic", "partition", "spu", "customspu", "smartmodule", "tableformat", "spugroup",
         "mirror", "processor")
_GRANTABLE = ("admin", "read", "produce", "consume")
_TOPIC_ACTIONS = ("produce", "consume")
_TOP_KEYS = {"allow_anonymous", "default_read", "members", "roles", "principals"}
_PERMISSION_KEYS = {"action", "kinds", "kind", "names", "topics"}


class PolicyError(ConfigError):
    """A policy file or document that is not valid (what and where)."""


@dataclass(frozen=True, slots=True)
class Permission:
    """One grant: ``action`` on ``kinds`` (None: every kind) whose names match ``names``."""

    action: str
    kinds: frozenset[str] | None = None
    names: tuple[str, ...] = ("*",)

    def covers(self, action: str, kind: str | None, name: str | None) -> bool:
        """True if this permission allows ``action`` on ``kind``/``name`` (already normalised).

        ``admin`` covers ``read`` as well. ``kind=None`` needs every kind, ``name=None`` needs
        the pattern ``"*"``.
        """
        if not (self.action == action or (self.action == "admin" and action == "read")):
            return False
        if self.kinds is not None and (kind is None or kind not in self.kinds):
            return False
        if name is None:
            return "*" in self.names
        return any(fnmatchcase(name, pattern) for pattern in self.names)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action}
        if self.kinds is not None:
            out["kinds"] = sorted(self.kinds)
        if self.names != ("*",):
            key = "topics" if self.action in _TOPIC_ACTIONS else "names"
            out[key] = self.names[0] if len(self.names) == 1 else list(self.names)
        return out


@dataclass(frozen=True)
class Policy:
    """An authorization policy; see the module docstring for the file and the rules.

    Attributes:
        allow_anonymous: clients without a certificate are the principal ``anonymous``.
        default_read: every known principal may ``read`` every kind.
        members: glob patterns of the member identities (``member`` action).
        principals: each known principal's effective permissions (roles expanded).
        unrestricted: ``allow_all()``: every decision is yes.
    """

    allow_anonymous: bool = False
    default_read: bool = True
    members: tuple[str, ...] = ()
    principals: Mapping[str, tuple[Permission, ...]] = field(default_factory=dict)
    unrestricted: bool = False

    # ------------------------------------------------------------------------------ building

    @classmethod
    def allow_all(cls) -> Policy:
        """The policy of a cluster without TLS: anyone may do anything, ``member`` included."""
        return cls(allow_anonymous=True, unrestricted=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "policy") -> Policy:
        """Build a policy from a parsed TOML document.

        Raises:
            PolicyError: unknown keys, actions or kinds, a wrong type, an undefined role, or
                ``member`` granted by a permission; the message names ``source`` and the key.
        """
        if not isinstance(data, Mapping):
            raise PolicyError(f"{source}: expected a table at the top level")
        _no_unknown_keys(data, _TOP_KEYS, source)
        allow_anonymous = _bool(data, "allow_anonymous", False, source)
        default_read = _bool(data, "default_read", True, source)

        members_table = data.get("members", {})
        if not isinstance(members_table, Mapping):
            raise PolicyError(f"{source}: members: expected a table")
        _no_unknown_keys(members_table, {"principals", "names"}, f"{source}: members")
        if "principals" in members_table and "names" in members_table:
            raise PolicyError(f"{source}: members: give 'principals' or 'names' (the same thing), "
                              f"not both")
        members = _patterns(members_table.get("principals", members_table.get("names", [])),
                            f"{source}: members.principals", allow_empty_list=True)

        roles_table = data.get("roles", {})
        if not isinstance(roles_table, Mapping):
            raise PolicyError(f"{source}: roles: expected a table")
        roles: dict[str, tuple[Permission, ...]] = {}
        for role, body in roles_table.items():
            where = f"{source}: roles.{role}"
            if not isinstance(body, Mapping):
                raise PolicyError(f"{where}: expected a table")
            _no_unknown_keys(body, {"permissions"}, where)
            roles[role] = _permissions(body.get("permissions", []), f"{where}.permissions")

        principals_table = data.get("principals", {})
        if not isinstance(principals_table, Mapping):
            raise PolicyError(f"{source}: principals: expected a table")
        principals: dict[str, tuple[Permission, ...]] = {}
        for principal, body in principals_table.items():
            where = f"{source}: principals.{principal}"
            if not principal:
                raise PolicyError(f"{where}: a principal name cannot be empty")
            if not isinstance(body, Mapping):
                raise PolicyError(f"{where}: expected a table")
            _no_unknown_keys(body, {"roles", "permissions"}, where)
            role_names = body.get("roles", [])
            if not isinstance(role_names, list) or not all(isinstance(r, str) for r in role_names):
                raise PolicyError(f"{where}.roles: expected a list of role names")
            granted: list[Permission] = []
            for role in role_names:
                if role not in roles:
                    known = ", ".join(sorted(roles)) or "none defined"
                    raise PolicyError(f"{where}.roles: unknown role {role!r} (roles: {known})")
                granted += roles[role]
            granted += _permissions(body.get("permissions", []), f"{where}.permissions")
            principals[principal] = tuple(granted)
        return cls(allow_anonymous=allow_anonymous, default_read=default_read,
                   members=members, principals=principals)

    # ------------------------------------------------------------------------------ deciding

    def is_member(self, principal: str | None) -> bool:
        """True if ``principal`` is a cluster member identity (``[members]``)."""
        if self.unrestricted:
            return True
        return principal is not None and any(fnmatchcase(principal, p) for p in self.members)

    def is_known(self, principal: str | None) -> bool:
        """True if ``principal`` is admitted at all (a member, a listed principal, or an allowed
        anonymous client)."""
        if self.unrestricted:
            return True
        if principal is None or principal == ANONYMOUS:
            return self.allow_anonymous
        return principal in self.principals or self.is_member(principal)

    def denial(self, principal: str | None, action: str, kind: str | None = None,
               name: str | None = None) -> str | None:
        """Why ``principal`` may not do ``action`` on ``kind``/``name``, or None if it may.

        Raises:
            ValueError: an unknown action or kind (a bug in the caller, not a denial).
        """
        action, kind = _check_action(action), _normalise_kind(kind)
        if action in _TOPIC_ACTIONS and kind not in (None, "topic"):
            raise ValueError(f"{action} applies to topics, not to {kind!r}")
        if self.unrestricted:
            return None
        who = ANONYMOUS if principal is None else principal
        if who == ANONYMOUS and not self.allow_anonymous:
            return "anonymous clients are not allowed: present a client certificate"
        if action == "member":
            if self.is_member(who):
                return None
            return f"principal {who!r} is not a cluster member; the private API is for members only"
        if not self.is_known(who):
            return f"unknown principal {who!r}: it has no entry in the authorization policy"
        if action == "read" and self.default_read:
            return None
        if action in _TOPIC_ACTIONS:
            kind = "topic"
        for permission in self.principals.get(who, ()):
            if permission.covers(action, kind, name):
                return None
        return f"principal {who!r} may not {action} {_describe(action, kind, name)}"

    def allows(self, principal: str | None, action: str, kind: str | None = None,
               name: str | None = None) -> bool:
        """True if ``principal`` may do ``action`` on ``kind``/``name`` (see the module rules).

        Raises:
            ValueError: an unknown action or kind.
        """
        return self.denial(principal, action, kind, name) is None

    def check(self, principal: str | None, action: str, kind: str | None = None,
              name: str | None = None) -> None:
        """Return if allowed, else raise ``PermissionDeniedError`` saying why.

        Raises:
            fluvial.errors.PermissionDeniedError: the policy denies it (ErrorCode.PermissionDenied).
            ValueError: an unknown action or kind.
        """
        reason = self.denial(principal, action, kind, name)
        if reason is not None:
            raise PermissionDeniedError(None, f"permission denied: {reason}")

    def permissions_of(self, principal: str | None) -> tuple[Permission, ...]:
        """The explicit permissions ``principal`` holds (roles expanded); () if none."""
        who = ANONYMOUS if principal is None else principal
        return tuple(self.principals.get(who, ()))


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy TOML file.

    Raises:
        PolicyError: the file cannot be read, is not TOML, or is not a valid policy.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PolicyError(f"cannot read the policy file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise PolicyError(f"{path}: not UTF-8 text: {e.reason}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"{path}: not valid TOML: {e}") from None
    return Policy.from_dict(data, source=str(path))


def default_policy(admins: Iterable[str] = ("admin",), members: Iterable[str] = ("sc",),
                   clients: Iterable[str] = ()) -> dict[str, Any]:
    """The document ``fluvial cluster certs`` writes: role ``admin`` (every admin action,
    produce and consume on every topic) for ``admins``; ``members`` as the member identities;
    ``clients`` known, with default read only. ``Policy.from_dict`` accepts it as it is."""
    admins = list(dict.fromkeys(admins))
    principals: dict[str, Any] = {a: {"roles": ["admin"]} for a in admins}
    for c in clients:
        principals.setdefault(c, {"permissions": []})
    return {
        "allow_anonymous": False,
        "default_read": True,
        "members": {"principals": list(dict.fromkeys(members))},
        "roles": {"admin": {"permissions": [
            {"action": "admin"},
            {"action": "produce", "topics": "*"},
            {"action": "consume", "topics": "*"},
        ]}},
        "principals": principals,
    }


# ---------------------------------------------------------------------------------- helpers


def _check_action(action: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
    return action


def _normalise_kind(kind: str | None) -> str | None:
    if kind is None:
        return None
    k = kind.lower()
    if k not in KINDS:
        raise ValueError(f"unknown object kind {kind!r} (known: {', '.join(KINDS)})")
    return k


def _describe(action: str, kind: str | None, name: str | None) -> str:
    what = "objects of every kind" if kind is None else f"{kind} objects"
    if name is not None:
        what = f"{kind or 'object'} {name!r}"
    elif kind is not None and action in _TOPIC_ACTIONS:
        what = "every topic"
    if action == "produce":
        return "to " + what
    if action == "consume":
        return "from " + what
    return what


def _no_unknown_keys(table: Mapping[str, Any], known: set[str], where: str) -> None:
    extra = sorted(set(table) - known)
    if extra:
        raise PolicyError(f"{where}: unknown key{'s' if len(extra) > 1 else ''} "
                          f"{', '.join(map(repr, extra))} (known: {', '.join(sorted(known))})")


def _bool(table: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise PolicyError(f"{where}: {key}: expected true or false, got {value!r}")
    return value


def _patterns(value: Any, where: str, *, allow_empty_list: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise PolicyError(f"{where}: expected a glob pattern or a list of non-empty patterns, "
                          f"got {value!r}")
    if not value and not allow_empty_list:
        raise PolicyError(f"{where}: an empty list would match nothing")
    return tuple(value)


def _permissions(value: Any, where: str) -> tuple[Permission, ...]:
    if not isinstance(value, list):
        raise PolicyError(f"{where}: expected a list of permission tables")
    return tuple(_permission(item, f"{where}[{i}]") for i, item in enumerate(value))


def _permission(item: Any, where: str) -> Permission:
    if not isinstance(item, Mapping):
        raise PolicyError(f"{where}: expected a table like {{ action = \"consume\", topics = \"*\" }}")
    _no_unknown_keys(item, _PERMISSION_KEYS, where)
    action = item.get("action")
    if action == "member":
        raise PolicyError(f"{where}: 'member' is granted by [members] principals, not by a permission")
    if action not in _GRANTABLE:
        raise PolicyError(f"{where}: action {action!r} is not one of {', '.join(_GRANTABLE)}")
    if "names" in item and "topics" in item:
        raise PolicyError(f"{where}: give 'names' or 'topics' (the same thing), not both")
    names = _patterns(item.get("names", item.get("topics", "*")), f"{where}.names")
    if "kind" in item and "kinds" in item:
        raise PolicyError(f"{where}: give 'kind' or 'kinds', not both")
    raw_kinds = item.get("kinds", item.get("kind"))
    kinds: frozenset[str] | None = None
    if raw_kinds is not None:
        if action in _TOPIC_ACTIONS:
            raise PolicyError(f"{where}: {action} applies to topics; it takes 'topics', not 'kinds'")
        if isinstance(raw_kinds, str):
            raw_kinds = [raw_kinds]
        if not isinstance(raw_kinds, list) or not raw_kinds:
            raise PolicyError(f"{where}.kinds: expected a non-empty list of kinds")
        normalised = set()
        for k in raw_kinds:
            if k == "*":
                normalised = None
                break
            if not isinstance(k, str) or k.lower() not in KINDS:
                raise PolicyError(f"{where}.kinds: unknown kind {k!r} (known: {', '.join(KINDS)})")
            normalised.add(k.lower())
        kinds = None if normalised is None else frozenset(normalised)
    return Permission(action, kinds, names)
