"""Several SCs over etcd, in-process (fluvial.sc.ha)."""

from __future__ import annotations

import trio

from fluvial.errors import FluvialError
from harness.client import wait_until
from harness.ha import open_ha_cluster


async def test_topic_created_through_either_sc_is_served_by_both(tmp_path, etcd):
    async with open_ha_cluster(tmp_path, etcd.url, scs=2, spus=1) as cluster:
        ctl = cluster.controller()
        other = 1 - ctl
        await cluster.admin(other).create_topic("via-standby", 1, 1)
        await cluster.admin(ctl).create_topic("via-controller", 1, 1)
        for i in (0, 1):
            for t in ("via-standby", "via-controller"):
                parts = await cluster.admin(i).partitions(t)
                assert parts[0].spec.leader == 5001
