"""The authorization policy (fluvial.auth): loading, validation and worked decisions."""

from __future__ import annotations

import pytest

from fluvial.auth import (
    ANONYMOUS, Permission, Policy, PolicyError, default_policy, load_policy,
)
from fluvial.errors import ConfigError, ErrorCode, FluvialError, PermissionDeniedError

POLICY_TOML = """
allow_anonymous = false

[members]
principals = ["sc", "custom-spu-*"]

[roles.admin]
permissions = [{ action = "admin" }, { action = "produce", topics = "*" }, { action = "consume", topics = "*" }]

[principals.admin]
roles = ["admin"]

[principals.reader]
permissions = [{ action = "consume", topics = "orders-*" }]

[principals.writer]
permissions = [{ action = "produce", topics = ["orders-*", "audit"] }]

[principals.ops]
permissions = [{ action = "admin", kinds = ["topic", "Partition"], names = "team-a-*" }]

[principals.nobody]
"""


@pytest.fixture
def policy(tmp_path) -> Policy:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_TOML)
    return load_policy(path)


# ---------------------------------------------------------------------------------------------
# Worked cases from the module docstring


@pytest.mark.parametrize("principal, action, kind, name, allowed", [
    # the admin role: everything but member
    ("admin", "admin", "topic", "x", True),
    ("admin", "admin", "spu", None, True),
    ("admin", "admin", None, None, True),
    ("admin", "produce", "topic", "anything", True),
    ("admin", "consume", None, "anything", True),
    ("admin", "member", None, None, False),
    # a read-only principal: consume its topics, read metadata, nothing else
    ("reader", "consume", "topic", "orders-eu", True),
    ("reader", "consume", "topic", "orders-", True),
    ("reader", "consume", "topic", "billing", False),
    ("reader", "consume", "topic", None, False),        # every topic: only "*" covers that
    ("reader", "produce", "topic", "orders-eu", False),
    ("reader", "admin", "topic", "orders-eu", False),
    ("reader", "read", "spu", None, True),               # default read
    ("reader", "read", "topic", "orders-eu", True),
    # a list of patterns
    ("writer", "produce", "topic", "audit", True),
    ("writer", "produce", "topic", "orders-1", True),
    ("writer", "produce", "topic", "audit-1", False),
    ("writer", "consume", "topic", "audit", False),
    # admin restricted by kind and name; admin implies read of what it covers
    ("ops", "admin", "topic", "team-a-1", True),
    ("ops", "admin", "partition", "team-a-1-0", True),
    ("ops", "admin", "topic", "team-b-1", False),
    ("ops", "admin", "spu", "team-a-1", False),
    ("ops", "admin", "topic", None, False),
    ("ops", "admin", None, "team-a-1", False),
    # a principal listed without permissions: known, so default read only
    ("nobody", "read", "topic", None, True),
    ("nobody", "consume", "topic", "orders-1", False),
    # unknown principals are refused everything, read included
    ("mallory", "read", "topic", None, False),
    ("mallory", "consume", "topic", "orders-1", False),
    ("", "read", "topic", None, False),
    # anonymous is refused unless allowed
    (None, "read", "topic", None, False),
    (ANONYMOUS, "read", "topic", None, False),
    # members: the private API, and only members
    ("custom-spu-5001", "member", None, None, True),
    ("sc", "member", None, None, True),
    ("custom-spu-5001", "read", "partition", None, True),
    ("custom-spu-5001", "produce", "topic", "orders-1", False),
    ("reader", "member", None, None, False),
    ("custom-spu", "member", None, None, False),
    (None, "member", None, None, False),
])
def test_worked_decisions(policy, principal, action, kind, name, allowed):
    assert policy.allows(principal, action, kind=kind, name=name) is allowed
    if allowed:
        policy.check(principal, action, kind, name)
    else:
        with pytest.raises(PermissionDeniedError):
            policy.check(principal, action, kind, name)


def test_check_raises_the_permission_denied_error_class_with_a_clear_message(policy):
    with pytest.raises(PermissionDeniedError) as info:
        policy.check("reader", "produce", "topic", "orders-eu")
    err = info.value
    assert isinstance(err, FluvialError)
    assert err.code == ErrorCode.PermissionDenied
    assert err.error.code == ErrorCode.PermissionDenied
    assert str(err) == "permission denied: principal 'reader' may not produce to topic 'orders-eu'"


@pytest.mark.parametrize("principal, action, kind, name, words", [
    ("mallory", "read", "topic", None, ["unknown principal", "mallory"]),
    (None, "read", "topic", None, ["anonymous", "client certificate"]),
    ("reader", "member", None, None, ["not a cluster member"]),
    ("reader", "consume", "topic", "billing", ["may not consume from topic 'billing'"]),
    ("ops", "admin", "spu", "x", ["may not admin spu 'x'"]),
    ("ops", "admin", "topic", None, ["may not admin topic objects"]),
])
def test_denial_says_why(policy, principal, action, kind, name, words):
    reason = policy.denial(principal, action, kind, name)
    assert reason is not None
    for w in words:
        assert w in reason


def test_anonymous_allowed_gets_its_own_entry_and_default_read():
    policy = Policy.from_dict({
        "allow_anonymous": True,
        "principals": {"anonymous": {"permissions": [{"action": "consume", "topics": "public-*"}]}},
    })
    for who in (None, ANONYMOUS):
        assert policy.is_known(who)
        assert policy.allows(who, "read", "topic")
        assert policy.allows(who, "consume", "topic", "public-news")
        assert not policy.allows(who, "consume", "topic", "private")
        assert not policy.allows(who, "produce", "topic", "public-news")
        assert not policy.allows(who, "member")


def test_anonymous_allowed_without_an_entry_may_only_read():
    policy = Policy.from_dict({"allow_anonymous": True})
    assert policy.allows(None, "read", "spu")
    assert not policy.allows(None, "consume", "topic", "x")
    assert not policy.allows(None, "admin", "topic", "x")


def test_default_read_off_requires_read_permissions():
    policy = Policy.from_dict({
        "default_read": False,
        "principals": {
            "viewer": {"permissions": [{"action": "read", "kinds": ["topic", "partition"]}]},
            "ops": {"permissions": [{"action": "admin", "kinds": "spu"}]},
            "plain": {},
        },
    })
    assert policy.allows("viewer", "read", "topic")
    assert policy.allows("viewer", "read", "Partition", "t-0")
    assert not policy.allows("viewer", "read", "spu")
    assert policy.allows("ops", "read", "spu")          # admin implies read
    assert not policy.allows("ops", "read", "topic")
    assert not policy.allows("plain", "read", "topic")


def test_members_need_no_principal_entry_but_may_have_one():
    policy = Policy.from_dict({
        "members": {"principals": "spu-*"},
        "principals": {"spu-9": {"permissions": [{"action": "produce", "topics": "x"}]}},
    })
    assert policy.is_member("spu-1") and policy.is_known("spu-1")
    assert policy.allows("spu-1", "member") and policy.allows("spu-1", "read", "topic")
    assert not policy.allows("spu-1", "produce", "topic", "x")
    assert policy.allows("spu-9", "produce", "topic", "x") and policy.allows("spu-9", "member")


def test_members_names_is_an_alias_of_principals():
    policy = Policy.from_dict({"members": {"names": ["sc", "custom-spu-*"]}})
    assert policy.allows("sc", "member") and policy.allows("custom-spu-7", "member")
    assert not policy.allows("admin", "member")


def test_patterns_are_case_sensitive_globs():
    policy = Policy.from_dict({"principals": {"p": {"permissions": [
        {"action": "consume", "topics": "log-[0-9]"}, {"action": "produce", "topics": "a?c"}]}}})
    assert policy.allows("p", "consume", "topic", "log-7")
    assert not policy.allows("p", "consume", "topic", "log-77")
    assert policy.allows("p", "produce", "topic", "abc")
    assert not policy.allows("p", "produce", "topic", "ABC")


def test_roles_and_own_permissions_add_up():
    policy = Policy.from_dict({
        "roles": {"r": {"permissions": [{"action": "consume", "topics": "a"}]}},
        "principals": {"p": {"roles": ["r"], "permissions": [{"action": "consume", "topics": "b"}]}},
    })
    assert policy.allows("p", "consume", "topic", "a")
    assert policy.allows("p", "consume", "topic", "b")
    assert not policy.allows("p", "consume", "topic", "c")
    assert policy.permissions_of("p") == (Permission("consume", None, ("a",)),
                                          Permission("consume", None, ("b",)))
    assert policy.permissions_of("unknown") == ()


def test_allow_all_allows_everything():
    policy = Policy.allow_all()
    for who in (None, ANONYMOUS, "anyone", ""):
        for action in ("admin", "read", "produce", "consume", "member"):
            assert policy.allows(who, action)
        policy.check(who, "admin", "spu", "x")
    assert policy.is_member(None)


@pytest.mark.parametrize("call", [
    lambda p: p.allows("admin", "write"),
    lambda p: p.allows("admin", "admin", "table"),
    lambda p: p.allows("admin", "produce", "spu", "x"),
])
def test_unknown_actions_and_kinds_are_caller_bugs(policy, call):
    with pytest.raises(ValueError):
        call(policy)


def test_kinds_accept_wire_labels_case_insensitively(policy):
    assert policy.allows("ops", "admin", "Topic", "team-a-1")
    assert policy.allows("admin", "admin", "CustomSpu", "custom-spu-5009")
    assert policy.allows("admin", "admin", "SPU", "5001")


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("doc, message", [
    ({"allow_anonymus": True}, "unknown key 'allow_anonymus'"),
    ({"allow_anonymous": "yes"}, "expected true or false"),
    ({"members": ["sc"]}, "members: expected a table"),
    ({"members": {"pattern": ["sc"]}}, "unknown key 'pattern'"),
    ({"members": {"names": ["sc"], "principals": ["sc"]}}, "not both"),
    ({"members": {"principals": [1]}}, "glob pattern"),
    ({"roles": {"r": {"permissions": [{"action": "write"}]}}}, "roles.r.permissions[0]: action 'write'"),
    ({"roles": {"r": {"permissions": {"action": "admin"}}}}, "expected a list of permission tables"),
    ({"principals": {"p": {"roles": ["ghost"]}}}, "principals.p.roles: unknown role 'ghost'"),
    ({"principals": {"p": {"roles": "admin"}}}, "expected a list of role names"),
    ({"principals": {"p": {"permissions": [{"action": "member"}]}}}, "granted by [members]"),
    ({"principals": {"p": {"permissions": [{"action": "admin", "kinds": ["tables"]}]}}},
     "unknown kind 'tables'"),
    ({"principals": {"p": {"permissions": [{"action": "admin", "kinds": []}]}}}, "non-empty list"),
    ({"principals": {"p": {"permissions": [{"action": "produce", "kinds": ["topic"]}]}}},
     "takes 'topics', not 'kinds'"),
    ({"principals": {"p": {"permissions": [{"action": "consume", "topics": "a", "names": "b"}]}}},
     "not both"),
    ({"principals": {"p": {"permissions": [{"action": "consume", "topics": []}]}}}, "match nothing"),
    ({"principals": {"p": {"permissions": [{"action": "consume", "topic": "a"}]}}}, "unknown key 'topic'"),
    ({"principals": {"p": {"permissions": ["consume"]}}}, "expected a table like"),
    ({"principals": {"p": {"grants": []}}}, "unknown key 'grants'"),
    ({"principals": {"": {}}}, "cannot be empty"),
    ({"principals": {"p": 3}}, "principals.p: expected a table"),
])
def test_invalid_documents_are_refused_with_where_and_what(doc, message):
    with pytest.raises(PolicyError) as info:
        Policy.from_dict(doc, source="test.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("test.toml")
    assert isinstance(info.value, ConfigError)


def test_kinds_star_means_every_kind():
    policy = Policy.from_dict({"principals": {"p": {"permissions": [
        {"action": "admin", "kinds": ["*"]}]}}})
    assert policy.allows("p", "admin", None, None)
    assert policy.allows("p", "admin", "tableformat", "t")


def test_load_policy_reports_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("allow_anonymous = \n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(bad)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(binary)


def test_empty_file_is_a_policy_that_refuses_everyone(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("")
    policy = load_policy(path)
    assert not policy.allows("admin", "read", "topic")
    assert not policy.allows(None, "read", "topic")
    assert not policy.allows("sc", "member")


def test_default_policy_document_round_trips_through_from_dict():
    doc = default_policy(admins=["admin"], members=["sc", "custom-spu-5001"], clients=["admin", "bob"])
    policy = Policy.from_dict(doc)
    assert policy.allows("admin", "admin", "topic", "t")
    assert policy.allows("admin", "produce", "topic", "t")
    assert policy.allows("admin", "consume", "topic", "t")
    assert not policy.allows("admin", "member")
    assert policy.allows("bob", "read", "topic")
    assert not policy.allows("bob", "produce", "topic", "t")
    assert policy.allows("custom-spu-5001", "member") and policy.allows("sc", "member")
    assert not policy.allows("custom-spu-5002", "member")
    assert not policy.allows(None, "read", "topic")


def test_permission_to_dict_round_trips():
    for p in (Permission("admin"), Permission("admin", frozenset({"topic", "spu"}), ("a-*",)),
              Permission("consume", None, ("x", "y"))):
        policy = Policy.from_dict({"principals": {"p": {"permissions": [p.to_dict()]}}})
        assert policy.permissions_of("p") == (p,)
