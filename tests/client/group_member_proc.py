"""One consumer-group member as its own process, for the failure tests (kill -9, SIGSTOP).

    python group_member_proc.py ENDPOINT TOPIC GROUP SESSION_SECONDS

Prints JSON lines on stdout, flushed: ``{"member": id}`` once joined, ``{"p": partition,
"o": offset, "v": value}`` per record (the processing), then commits (manual mode, after
processing: at-least-once); ``{"refused": message}`` when a commit is refused (fenced).
"""

from __future__ import annotations

import json
import sys

import trio

import fluvial
from fluvial.client.group import CommitRefusedError


def emit(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(endpoint: str, topic: str, group: str, session: float) -> None:
    async with fluvial.connect(endpoint=endpoint, request_timeout=5) as fl:
        consumer = fl.consumer(topic, group=group, commit="manual", session_timeout=session,
                               heartbeat_interval=session / 5, start="beginning")
        async with consumer:
            emit({"member": consumer.member_id})
            while True:
                records = []
                with trio.move_on_after(0.05):
                    records = await consumer.receive_many()
                for r in records:
                    emit({"p": r.partition, "o": r.offset, "v": r.value.decode()})
                try:
                    await consumer.commit()
                except CommitRefusedError as e:
                    emit({"refused": str(e)})


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]))
