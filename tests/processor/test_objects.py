"""Processor objects on the SC: created, listed, described, status reported, deleted; a bad
spec is refused by the SC (not only by the CLI)."""

from __future__ import annotations

import pytest
import trio

from fluvial.errors import FluvialError
from fluvial.processor.spec import processor_spec
from fluvial.protocol.processor_objects import FAILED, ProcessorSpec, ProcessorStatus

TIMEOUT = 30


async def test_processor_lifecycle(fl):
    with trio.fail_after(TIMEOUT):
        spec = processor_spec("avg:average", ["nums"], ["avgs"], window=2.5)
        await fl.admin.create_processor("avg", spec)
        with pytest.raises(FluvialError, match="already exists"):
            await fl.admin.create_processor("avg", spec)
        got = await fl.admin.describe_processor("avg")
        assert got.spec == spec and got.spec.window_ms == 2500 and got.status.state == "Stopped"
        await fl.admin.set_processor_status("avg", ProcessorStatus(FAILED, 3, "boom", 0, "", {"nums/0": 4}))
        got = await fl.admin.describe_processor("avg")
        assert (got.status.state, got.status.windows_done, got.status.lag) == (FAILED, 3, {"nums/0": 4})
        assert [m.name for m in await fl.admin.list_processors()] == ["avg"]
        await fl.admin.delete_processor("avg")
        assert await fl.admin.list_processors() == []
        with pytest.raises(FluvialError, match="not found"):
            await fl.admin.describe_processor("avg")
        with pytest.raises(FluvialError, match="not found"):
            await fl.admin.set_processor_status("avg", ProcessorStatus())


async def test_the_sc_refuses_a_bad_spec(fl):
    with trio.fail_after(TIMEOUT):
        bad = ProcessorSpec("no-colon", ["a"], ["b"], 1000, 0)
        with pytest.raises(FluvialError, match="MODULE:NAME"):
            await fl.admin.create_processor("bad", bad)
        with pytest.raises(FluvialError, match="exactly one"):
            await fl.admin.create_processor("bad", ProcessorSpec("m:f", ["a"], ["b"], 1000, 5))
        assert await fl.admin.list_processors() == []


@pytest.mark.parametrize("kw, match", [
    ({"inputs": []}, "input"), ({"outputs": ["a"]}, "both"), ({"window": 1, "window_count": 2}, "not both"),
])
def test_processor_spec_checks(kw, match):
    args = {"function": "m:f", "inputs": ["a"], "outputs": ["b"], **kw}
    with pytest.raises(ValueError, match=match):
        processor_spec(**args)
