"""Consumer-group members as separate processes while a producer runs: kill -9 one, SIGSTOP
another past its session, add one more; every record is consumed at least once, no partition
ever has two owners, committed offsets never move backwards (zombie commits are fenced)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import trio

import fluvial
from fluvial.client.group import describe_groups
from harness.cluster import open_test_cluster

from .conftest import topic_name

MEMBER = Path(__file__).with_name("group_member_proc.py")
SESSION = 2.0
PARTITIONS = 6


class Member:
    def __init__(self, proc: trio.Process):
        self.proc = proc
        self.member_id: str | None = None
        self.records: list[tuple[int, int, str]] = []
        self.refused: list[str] = []

    async def read(self) -> None:
        buf = b""
        async for chunk in self.proc.stdout:
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                msg = json.loads(line)
                if "member" in msg:
                    self.member_id = msg["member"]
                elif "refused" in msg:
                    self.refused.append(msg["refused"])
                else:
                    self.records.append((msg["p"], msg["o"], msg["v"]))


async def poll_until(predicate, timeout: float, what: str):
    with trio.move_on_after(timeout):
        while True:
            value = await predicate()
            if value:
                return value
            await trio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_members_in_processes_survive_kill_stop_and_join(tmp_path):
    with trio.fail_after(120):
        async with open_test_cluster(tmp_path / "c", spus=1) as cluster, \
                fluvial.connect(endpoint=cluster.endpoint, request_timeout=10) as fl, \
                trio.open_nursery() as nursery:
            topic = topic_name("gp")
            group = "procs"
            await fl.admin.create_topic(topic, PARTITIONS, 1)
            produced: list[str] = []
            stop_producing = trio.Event()
            violations: list[str] = []

            async def produce():
                async with fl.producer(topic) as p:
                    i = 0
                    while not stop_producing.is_set():
                        v = f"v{i}"
                        await p.send(v.encode(), key=v.encode())
                        produced.append(v)
                        i += 1
                        if i % 20 == 0:
                            await p.flush()
                            await trio.sleep(0.02)

            async def watch():
                """Never two owners of a partition; committed offsets never go backwards."""
                high: dict[int, int] = {}
                while True:
                    try:
                        [info] = await describe_groups(fl, group)
                    except fluvial.FluvialError:
                        await trio.sleep(0.05)
                        continue
                    owned = [p for m in info.members for p in m.assigned]
                    if len(owned) != len(set(owned)):
                        violations.append(f"two owners: {info.members}")
                    for o in info.offsets:
                        if o.offset < high.get(o.partition, -1):
                            violations.append(f"partition {o.partition} went back {high[o.partition]} -> {o.offset}")
                        high[o.partition] = max(o.offset, high.get(o.partition, -1))
                    await trio.sleep(0.05)

            async def spawn() -> Member:
                proc = await trio.lowlevel.open_process(
                    [sys.executable, str(MEMBER), cluster.endpoint, topic, group, str(SESSION)],
                    stdout=-1, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
                m = Member(proc)
                nursery.start_soon(m.read)
                return m

            async def converged(count: int):
                try:
                    [info] = await describe_groups(fl, group)
                except fluvial.FluvialError:
                    return None
                owned = sorted(p for m in info.members for p in m.assigned)
                if len(info.members) == count and owned == list(range(PARTITIONS)) and \
                        max(len(m.assigned) for m in info.members) - min(len(m.assigned) for m in info.members) <= 1:
                    return info
                return None

            members = [await spawn() for _ in range(3)]
            try:
                nursery.start_soon(produce)
                nursery.start_soon(watch)
                await poll_until(lambda: converged(3), 30, "three members sharing six partitions")

                # kill -9 one member: its partitions move to the others within about a session
                members[0].proc.kill()
                started = trio.current_time()
                await poll_until(lambda: converged(2), SESSION * 3 + 5, "the killed member's partitions to move")
                moved_after = trio.current_time() - started
                print(f"kill -9: partitions moved after {moved_after:.2f}s (session {SESSION}s)")
                assert moved_after < SESSION * 3

                # SIGSTOP another until its session expires; resumed, it is a zombie: fenced
                members[1].proc.send_signal(signal.SIGSTOP)
                await poll_until(lambda: converged(1), SESSION * 3 + 5, "the paused member to be dropped")
                members[1].proc.send_signal(signal.SIGCONT)
                await poll_until(lambda: converged(2), 20, "the resumed member to rejoin")

                # a new member: the group converges again
                members.append(await spawn())
                await poll_until(lambda: converged(3), 20, "the fourth process to join")

                stop_producing.set()
                wanted = set(produced)
                await poll_until(lambda: _seen_all(members, wanted), 30, "every record consumed")
                seen = [v for m in members for _, _, v in m.records]
                print(f"{len(wanted)} records produced, {len(seen)} consumed "
                      f"({len(seen) - len(set(seen))} duplicates), "
                      f"{sum(len(m.refused) for m in members)} zombie commits refused")
                assert not violations, violations[:5]
            finally:
                for m in members:
                    if m.proc.returncode is None:
                        m.proc.send_signal(signal.SIGCONT)
                        m.proc.kill()
                for m in members:
                    await m.proc.wait()
                nursery.cancel_scope.cancel()


async def _seen_all(members, wanted):
    seen = {v for m in members for _, _, v in m.records}
    return wanted <= seen
