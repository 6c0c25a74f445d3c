"""Who is subscribed to what (pure): the gateway's subscription index.

A socket joins targets ``(stream, group, id)`` (``id`` None: the whole group). A change to item
``id`` of a group goes to every socket that joined the item or the group, once per socket: iii
clients route one frame to both their item and their group subscriptions. A group-wide custom
event (``id`` None) goes to the sockets that joined the group.
"""

from __future__ import annotations

from collections.abc import Hashable

from fluvial.gateway.frames import Subscription

Target = tuple[str, str, "str | None"]


class TooManySubscriptions(Exception):
    pass


class Registry:
    def __init__(self, max_subscriptions_per_socket: int = 1000):
        self.max_per_socket = max_subscriptions_per_socket
        self._by_socket: dict[Hashable, dict[str, Subscription]] = {}
        self._by_target: dict[Target, dict[Hashable, int]] = {}

    def add(self, socket: Hashable, sub: Subscription) -> Subscription | None:
        """Register ``sub``; returns the subscription it replaced (same subscriptionId), if any.

        Raises:
            TooManySubscriptions: the socket already holds the most it may.
        """
        subs = self._by_socket.setdefault(socket, {})
        old = subs.get(sub.subscription_id)
        if old is None and len(subs) >= self.max_per_socket:
            raise TooManySubscriptions(f"at most {self.max_per_socket} subscriptions per socket")
        if old is not None:
            self._unindex(socket, old)
        subs[sub.subscription_id] = sub
        counts = self._by_target.setdefault(sub.target, {})
        counts[socket] = counts.get(socket, 0) + 1
        return old

    def remove(self, socket: Hashable, subscription_id: str) -> Subscription | None:
        sub = self._by_socket.get(socket, {}).pop(subscription_id, None)
        if sub is not None:
            self._unindex(socket, sub)
        return sub

    def drop_socket(self, socket: Hashable) -> list[Subscription]:
        """Forget a closed socket; its subscriptions (for the leave hooks)."""
        subs = list(self._by_socket.pop(socket, {}).values())
        for sub in subs:
            self._unindex(socket, sub)
        return subs

    def _unindex(self, socket: Hashable, sub: Subscription) -> None:
        counts = self._by_target.get(sub.target)
        if counts is None:
            return
        n = counts.get(socket, 0) - 1
        if n > 0:
            counts[socket] = n
        else:
            counts.pop(socket, None)
            if not counts:
                del self._by_target[sub.target]

    def targets(self, stream: str, group: str, item_id: str | None) -> list[Hashable]:
        """The sockets a change to ``(stream, group, item_id)`` goes to, each once."""
        group_subs = self._by_target.get((stream, group, None), {})
        if item_id is None:
            return list(group_subs)
        item_subs = self._by_target.get((stream, group, item_id), {})
        if not item_subs:
            return list(group_subs)
        return list(dict.fromkeys([*item_subs, *group_subs]))

    def subscriptions(self, socket: Hashable) -> list[Subscription]:
        return list(self._by_socket.get(socket, {}).values())

    def streams(self) -> set[str]:
        return {t[0] for t in self._by_target}
