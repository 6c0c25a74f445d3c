"""Mutation check: break each safety rule on purpose and name the test that must go red.

Every entry below removes one safeguard (an fsync, an epoch check, the durable LEO in the HW, ...)
from a copy of the tree and runs the tests that claim to guard it. The copy is thrown away; the
work tree is never touched. A mutation that no named test catches is a hole in the suite: the
script then exits 1.

    .venv/bin/python tests/mutations.py             # every mutation
    .venv/bin/python tests/mutations.py --list      # the table (and stale snippets), nothing run
    .venv/bin/python tests/mutations.py fsync-flush epoch-reelect   # some, by name

Each mutation names its code by an exact snippet that must occur once in its file, so when the
code changes the entry fails loudly ("snippet not found") instead of silently testing nothing.
Server processes the tests start run the mutated copy too: the copy is first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # file, relative to the repository root
    old: str  # exact snippet, must occur exactly once
    new: str
    tests: tuple[str, ...]  # pytest node ids; at least one must fail
    what: str


MUTATIONS: list[Mutation] = [
    # --- storage: fsyncs and recovery ------------------------------------------------------
    Mutation("fsync-flush", "fluvial/storage/replica.py",
             "synced = [sync_segment(fd, path, size, journal=False) for fd, path, size in snapshot]",
             "synced = []",
             ("tests/storage/test_powerloss.py::test_a_plain_cut_loses_everything_since_the_last_flush",),
             "Replica.flush claims durability without fdatasync"),
    Mutation("fsync-flush-cluster", "fluvial/storage/replica.py",
             "synced = [sync_segment(fd, path, size, journal=False) for fd, path, size in snapshot]",
             "synced = []",
             ("tests/chaos/test_safety.py::test_whole_cluster_power_cuts_lose_no_acknowledged_record",),
             "the same, seen by the chaos suite: a real cluster loses acknowledged records"),
    Mutation("fsync-seal", "fluvial/storage/replica.py",
             "                    sync_segment(prev.fd, prev.log_path, prev_end, metadata=True)\n",
             "",
             ("tests/storage/test_durability_order.py",),
             "a sealed segment is not fsynced before the next one exists"),
    Mutation("journal-before-fsync", "fluvial/storage/journal.py",
             "    if metadata:\n        os.fsync(fd)\n    else:\n        getattr(os, \"fdatasync\", os.fsync)(fd)\n    if journal:\n        record_durable(path, size)\n",
             "    if journal:\n        record_durable(path, size)\n    if metadata:\n        os.fsync(fd)\n    else:\n        getattr(os, \"fdatasync\", os.fsync)(fd)\n",
             ("tests/storage/test_powerloss.py::test_a_failed_fsync_at_seal_journals_nothing",),
             "the power-loss journal claims a size before its fsync succeeded"),
    Mutation("recovery-keeps-after-bad", "fluvial/storage/segment.py",
             "                if h is None:\n                    break\n",
             "                if h is None:\n                    try:\n                        h = read_header(self.pread(HEADER_BYTES, pos))\n"
             "                    except BatchError:\n                        break\n",
             ("tests/storage/test_recovery.py::test_a_bad_batch_in_the_middle_of_the_active_segment_cuts_the_segment_there",),
             "recovery keeps (and counts durable) batches after an invalid one in the active segment"),
    # --- the leader: HW, acks, leadership ---------------------------------------------------
    Mutation("hw-unsynced-leo", "fluvial/spu/partition.py",
             "        st.on_append(result.leo)\n",
             "        st.on_append(result.leo)\n        st.update_leader_leo(result.leo, trio.current_time())\n",
             ("tests/spu/test_spu_server.py::test_the_isr_bookkeeping_counts_only_the_leaders_durable_records",),
             "the ISR bookkeeping (the HW) is fed the leader's unsynced LEO"),
    Mutation("maximal-isr", "fluvial/replication/isr.py",
             "members = self._isr if self._recorded is None else self._isr | self._recorded",
             "members = self._isr",
             ("tests/replication/test_isr.py",),
             "the HW ignores followers the SC still records in the ISR (KIP-497)"),
    Mutation("min-isr-after-append", "fluvial/spu/public.py",
             "    if committed and replica.under_min_isr():",
             "    if False:",
             ("tests/spu/test_spu_server.py::test_committed_produce_below_min_isr_is_refused_before_appending",),
             "a ReadCommitted produce below min ISR is appended before it waits"),
    Mutation("ack-without-leadership", "fluvial/spu/partition.py",
             "return leadership is not None and self.leader_state is leadership and self.lease_valid()",
             "return self.lease_valid()",
             ("tests/spu/test_spu_server.py::test_an_uncommitted_ack_after_demotion_and_truncation_is_refused",),
             "an ack after demotion and truncation answers OK with someone else's offset"),
    Mutation("lease-ignored", "fluvial/spu/partition.py",
             "return self.lease is None or self.lease.valid(trio.current_time())",
             "return True",
             ("tests/spu/test_spu_server.py::test_a_lease_that_runs_out_before_the_ack_refuses_it",
              "tests/chaos/test_partition.py"),
             "a leader cut off from the SC acknowledges for ever"),
    Mutation("lease-not-renewed", "fluvial/spu/sc_link.py",
             "                    ctx.lease.renew(sent_at)",
             "                    pass",
             ("tests/spu/test_spu_process.py",),
             "the SPU never renews its lease from the SC's answers"),
    Mutation("spu-reuses-epoch", "fluvial/spu/partition.py",
             "latest = self.storage.latest_epoch",
             "latest = -1",
             ("tests/spu/test_spu_server.py::test_leadership_at_an_epoch_already_in_the_log_is_refused",),
             "an SPU leads at an epoch its log already holds"),
    Mutation("client-writes-system-topic", "fluvial/spu/public.py",
             "    if topic == CONSUMER_OFFSET_TOPIC or (replica is not None and replica.assignment.settings.system):",
             "    if False:",
             ("tests/spu/test_spu_server.py::test_no_client_may_produce_to_the_consumer_offset_topic",),
             "any principal granted produce on * writes the consumer-offset topic"),
    # --- the follower -------------------------------------------------------------------------
    Mutation("follower-no-recheck", "fluvial/spu/replication.py",
             "        if not f.holds():\n            fetcher.remove(key)\n            continue\n",
             "",
             ("tests/spu/test_replication.py::test_a_fetch_answered_after_the_spu_became_leader_touches_nothing",),
             "the follower touches its log after the SPU became leader"),
    Mutation("follower-ignores-epoch", "fluvial/replication/fetch.py",
             "    if answer.leader_epoch != epoch:\n",
             "    if False:\n",
             ("tests/spu/test_replication.py::test_a_fetch_answer_of_another_epoch_is_not_appended",),
             "a fetch answer of another epoch is appended"),
    Mutation("follower-evicted-forever", "fluvial/replication/fetch.py",
             "        if fetch_offset >= answer.log_start_offset:\n",
             "        if True:\n",
             ("tests/spu/test_replication.py::test_a_follower_behind_the_leaders_log_start_restarts_there",),
             "a follower behind the leader's log start retries for ever"),
    Mutation("follower-keeps-corruption", "fluvial/spu/replication.py",
             "    if bad is not None and bad < r.storage.leo:",
             "    if False:",
             ("tests/spu/test_replication.py::test_a_follower_with_a_corrupt_batch_truncates_there_and_refetches",),
             "a follower keeps a corrupt batch instead of refetching it"),
    Mutation("replica-fetch-uncapped", "fluvial/spu/replication.py",
             "max_bytes = min(max(req.max_bytes, 1), ctx.max_fetch_bytes)",
             "max_bytes = max(req.max_bytes, 1)",
             ("tests/spu/test_replication.py::test_a_replica_fetch_is_capped_at_the_spus_max_fetch_bytes",),
             "a replica fetch reads whatever it asks for"),
    # --- the SPU process ----------------------------------------------------------------------
    Mutation("no-incarnation-check", "fluvial/spu/context.py",
             "    if recorded is None:\n        return holds_files\n    return recorded != assigned",
             "    return False",
             ("tests/spu/test_spu_cluster.py",),
             "a leftover directory of a deleted topic is reused by its re-creation"),
    Mutation("no-orphan-removal", "fluvial/spu/sc_link.py",
             "                        ctx.remove_orphans(push)\n",
             "",
             ("tests/spu/test_spu_process.py::test_orphan_replica_directories_go_after_the_first_push",),
             "replica directories the SC no longer assigns stay on disk"),
    Mutation("follower-id-trusted", "fluvial/spu/private.py",
             "    if ctx.config.tls is not None and not speaks_for_spu(conn, sender_of(req)):",
             "    if False:",
             ("tests/spu/test_spu_private.py",),
             "a member certificate speaks for another SPU on the private port"),
    Mutation("sealed-never-verified", "fluvial/spu/context.py",
             "            self.verify_sealed_segments()\n",
             "",
             ("tests/spu/test_spu_process.py::test_a_corrupt_batch_in_a_sealed_segment_is_found_and_reported",),
             "corruption in a sealed segment is never found"),
    # --- the SC -------------------------------------------------------------------------------
    Mutation("epoch-kept-on-reregister", "fluvial/sc/controller.py",
             "            draft.partitions.update(p.name, meta=p.meta.next_epoch())\n",
             "            pass\n",
             ("tests/sc/test_controller.py::test_a_leader_registering_again_before_its_timeout_gets_a_new_saved_epoch",
              "tests/chaos/test_safety.py::test_leader_back_from_a_power_cut_does_not_reuse_its_epoch"),
             "a leader that registers again keeps its epoch (power cut, then epoch reuse)"),
    Mutation("epoch-kept-on-reelect", "fluvial/sc/controller.py",
             "    meta = p.meta.next_epoch().with_isr(",
             "    meta = p.meta.with_isr(",
             ("tests/sc/test_controller.py::test_elect_bumps_the_epoch_when_it_re_chooses_a_leader_that_was_offline",),
             "an election keeps the epoch"),
    Mutation("stale-isr-report", "fluvial/metadata/replication.py",
             "        return isr_version == self.isr_version",
             "        return True",
             ("tests/sc/test_controller.py::test_a_stale_isr_report_never_re_adds_a_removed_spu",),
             "a stale ISR report puts a failed SPU back into the ISR"),
    Mutation("sc-private-exposed", "fluvial/sc/server.py",
             "private_bind_host(config.host, config.private_host, config.tls is not None),",
             "config.host,",
             ("tests/sc/test_sc_private.py::test_a_plaintext_private_port_binds_loopback_unless_told_otherwise",),
             "the SC's plaintext private port listens wherever the public one does"),
    # --- issue 19 (scale-1): batched replica fetch, deltas, the SC's journal -----------------
    Mutation("batched-fetch-ignores-epoch", "fluvial/replication/fetch.py",
             "    if requested_epoch != leader_epoch:\n        return ErrorCode.NotLeaderForPartition\n",
             "",
             ("tests/spu/test_replication.py::test_a_batched_fetch_answers_each_partition_on_its_own_epoch",),
             "the leader serves a partition of a batched fetch asked at another epoch"),
    Mutation("fetch-per-partition", "fluvial/replication/fetch.py",
             "    order = [followed[(start + i) % n] for i in range(n)] if n else []",
             "    order = [followed[start % n]] if n else []",
             ("tests/spu/test_scale.py",),
             "followers fetch one partition per request again"),
    Mutation("metadata-journal-not-fsynced", "fluvial/sc/backend.py",
             "                os.fdatasync(fd)\n                record_durable(str(path), size)\n",
             "",
             ("tests/sc/test_backend.py::test_every_saved_change_survives_a_power_cut",),
             "the SC acknowledges a metadata change before its journal entry is fsynced"),
    Mutation("delta-report-drops-change", "fluvial/spu/reports.py",
             "            if acked is not r and acked != r:",
             "            if acked is None:",
             ("tests/spu/test_reports.py::test_every_changed_field_puts_a_replica_in_the_delta",),
             "a delta report leaves out a replica whose state changed"),
    Mutation("status-pushed-to-spus", "fluvial/sc/pushes.py",
             "    return before.spec != after.spec or before.meta != after.meta\n",
             "    return True\n",
             ("tests/sc/test_scale_decisions.py::test_only_assignment_changes_are_pushed",),
             "every status report pushes every assignment to every SPU"),
]


def apply(tree: Path, m: Mutation) -> None:
    path = tree / m.path
    text = path.read_text()
    count = text.count(m.old)
    if count != 1:
        raise SystemExit(f"{m.name}: snippet found {count} times in {m.path} (expected once); "
                         "update the mutation to the current code")
    path.write_text(text.replace(m.old, m.new))


def run(m: Mutation, timeout: float) -> tuple[bool, float, str]:
    """Returns (caught, seconds, last lines of pytest's output)."""
    with tempfile.TemporaryDirectory(prefix=f"fluvial-mutant-{m.name}-") as tmp:
        tree = Path(tmp)
        for part in ("fluvial", "tests", "pyproject.toml"):
            src = ROOT / part
            (shutil.copytree if src.is_dir() else shutil.copy)(src, tree / part)
        apply(tree, m)
        env = dict(os.environ, PYTHONPATH=str(tree))
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *m.tests],
                cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
            out, code = proc.stdout + proc.stderr, proc.returncode
        except subprocess.TimeoutExpired as e:
            out, code = f"timed out after {timeout:.0f} s: {e}", -1
        seconds = time.monotonic() - started
        # 1: tests ran and some failed. Anything else (0 passed, 2 collection error, 4 usage,
        # 5 nothing collected, a timeout) proves nothing about the mutation.
        caught = code == 1
        failed = [line for line in out.splitlines() if line.startswith(("FAILED", "ERROR"))]
        return caught, seconds, "\n".join(failed[:2] or out.strip().splitlines()[-3:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="print the table and run nothing")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per mutation")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    if args.list:
        stale = 0
        for m in chosen:
            found = (ROOT / m.path).read_text().count(m.old)
            mark = "" if found == 1 else f"  STALE: snippet found {found} times"
            stale += found != 1
            print(f"{m.name:28} {m.path:36} {m.what}{mark}\n{'':28} caught by: {', '.join(m.tests)}")
        return 1 if stale else 0
    missed = []
    for m in chosen:
        caught, seconds, tail = run(m, args.timeout)
        print(f"{'CAUGHT' if caught else 'MISSED':7} {m.name:28} {seconds:6.1f} s  {m.what}", flush=True)
        print("        " + tail.replace("\n", "\n        "), flush=True)
        if not caught:
            missed.append(m.name)
    print(f"{len(chosen) - len(missed)} of {len(chosen)} mutations caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
