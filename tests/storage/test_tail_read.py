"""Reads at the tail (``Segment.tail``: where a live consumer or a follower asks next) return
exactly what a read through the index returns, also after a truncation, a failed append and a
reopen: the hint is a shortcut, never a second source of truth."""

from fluvial.storage.replica import Replica

from .conftest import make_batch, values


def tail_read(r: Replica, offset: int) -> list[tuple[int, bytes]]:
    return values(r.read(offset, 1 << 20).read_bytes())


def test_reads_at_the_last_batch_return_it_and_what_follows(open_replica):
    r = open_replica(index_max_interval_bytes=4096)
    for i in range(60):  # many batches between two index entries
        r.append(make_batch(1 + i % 3, b"v%d" % i), leader_epoch=0)
    last_base = r.leo - (1 + 59 % 3)
    assert tail_read(r, last_base) == [(o, b"v59") for o in range(last_base, r.leo)]
    assert tail_read(r, last_base + 1) == [(o, b"v59") for o in range(last_base, r.leo)]  # whole batch
    r.append(make_batch(2, b"next"), leader_epoch=0)
    assert tail_read(r, last_base)[-2:] == [(r.leo - 2, b"next"), (r.leo - 1, b"next")]


def test_after_truncation_the_refilled_tail_is_read_not_the_old_one(open_replica):
    r = open_replica()
    for i in range(20):
        r.append(make_batch(1, b"old-%02d" % i), leader_epoch=0)
    r.truncate_to(10)
    assert r.leo == 10
    r.append(make_batch(3, b"a-longer-new-value"), leader_epoch=0)  # other sizes, other positions
    assert tail_read(r, 10) == [(o, b"a-longer-new-value") for o in range(10, 13)]
    r.append(make_batch(1, b"n"), leader_epoch=0)
    assert tail_read(r, 13) == [(13, b"n")]
    assert tail_read(r, 9) == [(9, b"old-09")] + [(o, b"a-longer-new-value") for o in range(10, 13)] + [(13, b"n")]


def test_a_reopened_log_reads_its_tail_through_the_index(tmp_path, open_replica):
    r = open_replica()
    for i in range(30):
        r.append(make_batch(1, b"x%d" % i), leader_epoch=0)
    r.flush()
    r.close()
    again = open_replica()
    assert tail_read(again, 29) == [(29, b"x29")]
    again.append(make_batch(1, b"y"), leader_epoch=0)
    assert tail_read(again, 30) == [(30, b"y")]
