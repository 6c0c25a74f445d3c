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
             "        if not f.holds():\n            fetcher.forget(f)\n            continue\n",
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
    # --- issue 21: consumer groups ---------------------------------------------------------
    Mutation("group-zombie-commit", "fluvial/metadata/group.py",
             "        self._member(member_id)\n        if generation > self.generation:",
             "        return\n        if generation > self.generation:",
             ("tests/metadata/test_group.py::test_commit_fence",
              "tests/client/test_groups.py::test_zombie_commit_is_refused"),
             "the generation fence is skipped: a zombie's commit moves the group's offsets"),
    Mutation("group-two-owners", "fluvial/metadata/group.py",
             "            if p not in self.owners:\n                self.owners[p] = member_id",
             "            if True:\n                self.owners[p] = member_id",
             ("tests/metadata/test_group.py::test_exactly_one_owner_and_convergence",
              "tests/metadata/test_group.py::test_no_grant_while_the_old_owner_has_not_acted_on_its_revocation"),
             "a partition is granted before its old owner let go: two owners in one generation"),
    Mutation("group-release-unrevoked", "fluvial/metadata/group.py",
             "if o == member_id and p not in reads and p not in m.target:",
             "if o == member_id and p not in m.target:",
             ("tests/metadata/test_group.py::test_exactly_one_owner_and_convergence",
              "tests/metadata/test_group.py::test_no_grant_while_the_old_owner_has_not_acted_on_its_revocation"),
             "a revoked partition is freed while its member still reads it (no cooperative step)"),
    Mutation("group-commit-not-persisted", "fluvial/spu/group_coordinator.py",
             "        await c.persist(records)\n",
             "",
             ("tests/client/test_groups.py::test_coordinator_failover_keeps_offsets_and_members",),
             "a commit is answered but not stored: a new coordinator has lost it"),
    Mutation("group-no-expiry", "fluvial/metadata/group.py",
             "gone = [m for m, v in self.members.items() if v.deadline < now]",
             "gone = []",
             ("tests/metadata/test_group.py::test_exactly_one_owner_and_convergence",
              "tests/client/test_group_processes.py::test_members_in_processes_survive_kill_stop_and_join"),
             "a member that died keeps its partitions forever: nobody reads them again"),
    Mutation("group-not-sticky", "fluvial/metadata/group.py",
             "keep = [p for p in held[m] if p not in taken][:quota[m]]",
             "keep = []",
             ("tests/metadata/test_group.py::test_join_moves_only_what_it_must_and_kept_partitions_never_pause",
              "tests/client/test_groups.py::test_join_moves_only_some_partitions_and_kept_ones_keep_flowing"),
             "every rebalance reshuffles: members lose (and pause) partitions they could have kept"),
    Mutation("group-stale-tenure-commit", "fluvial/client/group.py",
             "r is not None and self._readers.get(r.partition) is r:",
             "r is not None and r.partition in self._readers:",
             ("tests/client/test_groups.py::test_records_of_an_earlier_tenure_are_never_marked_consumed",),
             "records read before a revocation move the commit of a later tenure backwards"),
    # --- ha-1 (issue 14) ---
    Mutation("ha-act-without-lease", "fluvial/sc/election.py",
             "        return now < self.acting_until",
             "        return True",
             ("tests/ha/test_ha_cluster.py::test_sc_cut_off_from_etcd_stops_acting_before_another_starts",),
             "an SC cut off from etcd keeps acting as controller after its lease clock ran out"),
    Mutation("ha-write-without-revision-guard", "fluvial/sc/etcd.py",
             "                    compare.append(mod_is(key, rev if old is not None else 0))\n",
             "",
             ("tests/ha/test_ha_cluster.py::test_two_writers_of_one_new_key_exactly_one_wins",
              "tests/ha/test_ha_cluster.py::test_two_scs_racing_on_one_topic_create_exactly_one_wins"),
             "an etcd write is not guarded by the revision the SC last saw: two SCs overwrite each other"),
    Mutation("ha-epoch-not-in-etcd", "fluvial/sc/etcd.py",
             "        return FileBackend.encode([replace(obj, epoch=0)])",
             "        return FileBackend.encode([replace(obj, epoch=0, meta=None)])",
             ("tests/ha/test_ha_cluster.py::test_epochs_continue_across_a_controller_failover",),
             "partition leader epochs are not saved in etcd: a new controller starts them again"),
    Mutation("ha-producer-ids-local", "fluvial/sc/ha.py",
             "    state.producer_ids = SharedProducerIds(backend.reserve_producer_ids)\n", "",
             ("tests/ha/test_ha_cluster.py::test_producers_through_two_scs_get_distinct_ids",),
             "each SC hands out producer ids from its own file: two producers share an id"),
    Mutation("ha-write-without-leader-guard", "fluvial/sc/etcd.py",
             "        compare, ops, writes = list(self.guard), [], {}",
             "        compare, ops, writes = [], [], {}",
             ("tests/ha/test_ha_cluster.py::test_a_deposed_controller_cannot_write",),
             "a controller's writes are not guarded by its election key: a deposed one still writes"),
    # --- issue 16: idempotent producer, headers, bounded streams -------------------------------
    Mutation("idempotence-duplicate-check-skipped", "fluvial/spu/producer_state.py",
             "            if at is not None:\n                return Duplicate(at, at + count - 1)\n",
             "            pass\n",
             ("tests/client/test_idempotence.py::test_lost_answers_never_store_a_record_twice",
              "tests/spu/test_producer_state.py::test_the_worked_example_of_the_module_docstring"),
             "the leader appends a retried batch again instead of answering it as a duplicate"),
    Mutation("idempotence-state-not-rebuilt", "fluvial/spu/partition.py",
             "ProducerStateTable.rebuild(self.storage.batch_headers(start), start,",
             "ProducerStateTable.rebuild((), start,",
             ("tests/client/test_idempotence.py::test_a_retry_after_a_leader_failover_is_recognised_by_the_new_leader",),
             "a new leader does not rebuild the producers' sequences from its log"),
    Mutation("stream-eos-before-acked", "fluvial/client/stream.py",
             "            await self._producer.flush()\n            self._stop_keepalive()\n",
             "            self._stop_keepalive()\n",
             ("tests/client/test_streams.py::test_a_stream_ends_exactly_at_its_eos",),
             "a sink writes EOS before every record of the stream is acknowledged"),
    Mutation("stream-session-never-expires", "fluvial/spu/stream_sessions.py",
             "                if v.deadline <= now]",
             "                if False]",
             ("tests/client/test_streams.py::test_a_silent_sink_is_aborted_by_the_leader_after_its_session_timeout",),
             "a stream whose sink vanished is never declared aborted"),
    Mutation("stream-markers-as-data", "fluvial/protocol/record_fast.py",
             "                or (h[5] & ATTR_CONTROL and not control)):",
             "                ):",
             ("tests/client/test_streams.py::test_a_stream_ends_exactly_at_its_eos",),
             "plain consumers get stream markers as data records"),
    Mutation("headers-not-stripped", "fluvial/spu/public.py",
             "    if conn.state.get(\"record_headers\"):",
             "    if True:",
             ("tests/client/test_headers.py::test_a_client_that_did_not_enable_headers_gets_them_stripped",
              "tests/compat/test_headers_compat.py::test_the_official_client_reads_records_sent_with_headers"),
             "records with headers reach a client that did not enable them (the official client "
             "misparses them)"),
    Mutation("headers-batch-unchecked", "fluvial/spu/public.py",
             "            check_header_batches(records)\n",
             "            pass\n",
             ("tests/client/test_headers.py::test_a_malformed_headers_batch_is_refused_and_the_topic_stays_readable",),
             "a malformed headers batch is stored (no client that needs it stripped can read on)"),
    # --- issue 18: compacted topics (compact-1) ------------------------------------------------
    Mutation("keep-oldest-not-latest", "fluvial/storage/compaction.py",
             "                latest[r[KEY]] = r[OFFSET]\n",
             "                latest.setdefault(r[KEY], r[OFFSET])\n",
             ("tests/storage/test_compaction.py",),
             "compaction keeps each key's oldest record instead of its latest"),
    Mutation("drop-tombstone-immediately", "fluvial/storage/compaction.py",
             "if not value and timestamp > 0 and timestamp <= horizon_ms and key not in pinned:",
             "if not value and key not in pinned:",
             ("tests/storage/test_compaction.py::test_worked_example",
              "tests/spu/test_compaction_cluster.py"),
             "a tombstone is dropped at the first pass, before its retention"),
    Mutation("tombstone-resurrects", "fluvial/storage/compaction.py",
             "        return {k for off, k in self.last_keys.items() if k is not None and self.latest.get(k, off) != off}",
             "        return set()",
             ("tests/storage/test_compaction.py",),
             "a tombstone goes while a superseded value of its key is kept: the old value comes back"),
    Mutation("swap-without-fsync", "fluvial/storage/cleaner.py",
             "            write_synced(_cleaned(directory, s.base_offset, LOG_SUFFIX), b\"\".join(cleaned.batches))",
             "            open(_cleaned(directory, s.base_offset, LOG_SUFFIX), \"wb\").write(b\"\".join(cleaned.batches))",
             ("tests/storage/test_cleaner.py::test_cleaned_copies_are_fsynced_before_they_are_renamed_in",),
             "cleaned segments are renamed in without being fsynced first"),
    Mutation("swap-not-finished-at-open", "fluvial/storage/cleaner.py",
             "        _rename_listed(directory, bases)\n        fsync_dir(directory)\n        os.unlink(marker)",
             "        os.unlink(marker)",
             ("tests/storage/test_cleaner.py",),
             "a swap interrupted after its marker is not completed at open: old and new segments mix"),
    Mutation("compact-above-hw", "fluvial/storage/replica.py",
             "            if seg.next_offset > self._hw or seg.corrupt or seg.newest_timestamp() > lag_ms:",
             "            if seg.corrupt or seg.newest_timestamp() > lag_ms:",
             ("tests/storage/test_cleaner.py::test_nothing_above_the_hw_nor_the_active_segment_and_retention_deletes_nothing",),
             "compaction cleans records that are not committed yet"),
    Mutation("retention-deletes-compacted", "fluvial/storage/replica.py",
             "        if cfg.cleanup_policy == \"compact\":\n            return []",
             "        if False:\n            return []",
             ("tests/storage/test_cleaner.py::test_nothing_above_the_hw_nor_the_active_segment_and_retention_deletes_nothing",),
             "retention deletes the segments of a compacted topic (its state)"),
    Mutation("gap-without-flag", "fluvial/protocol/batch.py",
             "(h.base_offset > expected and bool(h.attributes & ATTR_COMPACTED))",
             "(h.base_offset > expected)",
             ("tests/storage/test_recovery.py", "tests/storage/test_corruption.py", "tests/storage/test_powerloss.py"),
             "any batch may start after an offset gap, not only one the cleaner wrote"),
    Mutation("follower-refuses-gaps", "fluvial/storage/replica.py",
             "            if not follows(h, expected):\n                raise InvalidBatch(",
             "            if h.base_offset != expected:\n                raise InvalidBatch(",
             ("tests/spu/test_compaction_cluster.py::test_a_follower_that_was_away_catches_up_across_the_leaders_gaps",),
             "a follower cannot copy a compacted leader's batches that follow a gap"),
    # --- compaction meets headers and stream markers ---
    Mutation("compaction-drops-headers", "fluvial/storage/compaction.py",
             "    if h.attributes & ATTR_HEADERS:\n        section, count = encode_header_records(",
             "    if False:\n        section, count = encode_header_records(",
             ("tests/storage/test_compaction.py::test_headers_survive_a_rewrite_and_markers_are_kept_whole",),
             "the cleaner rewrites a headers batch without its headers"),
    Mutation("compaction-drops-markers", "fluvial/storage/compaction.py",
             "if h.attributes & (ATTR_SCHEMA_ID | ATTR_CONTROL):", "if h.attributes & ATTR_SCHEMA_ID:",
             ("tests/storage/test_compaction.py::test_headers_survive_a_rewrite_and_markers_are_kept_whole",),
             "a stream's EOS marker is compacted away like a superseded record"),
    Mutation("idempotence-compacted-unknown-refused", "fluvial/spu/producer_state.py",
             "if first_sequence == 0 or self.log_start_offset > 0 or self.compacted:",
             "if first_sequence == 0 or self.log_start_offset > 0:",
             ("tests/spu/test_producer_state.py::test_an_unknown_producer_may_resume_mid_sequence_on_a_compacted_log",),
             "a producer whose batches the cleaner rewrote is refused by a new leader"),
    # --- issue 18: streams gateway (live-1) --------------------------------------------------
    Mutation("gw-ack-before-durable", "fluvial/client/streams.py",
             "        return (await future).offset\n",
             "        return 0\n",
             ("tests/gateway/test_processes.py::test_kill_gateway_and_spu_leader_loses_nothing_acknowledged",),
             "a stream write is acknowledged before the log has it durably"),
    Mutation("gw-timestamps-not-increasing", "fluvial/gateway/model.py",
             "        self.clock = record_ts if record_ts > self.clock else self.clock + 1\n",
             "        self.clock = max(record_ts, self.clock)\n",
             ("tests/gateway/test_model.py::test_timestamps_strictly_increase_even_when_records_do_not",
              "tests/gateway/test_fanout.py::test_gateways_on_one_cluster_deliver_identical_sequences"),
             "two changes get the same timestamp: clients drop the second"),
    Mutation("gw-slow-queue-unbounded", "fluvial/gateway/server.py",
             "        if sock.pending + frames > self.config.queue_size:",
             "        if False:",
             ("tests/gateway/test_fanout.py::test_slow_subscriber_is_disconnected_and_the_others_get_everything",),
             "a slow subscriber's queue grows without bound instead of cutting it off"),
    Mutation("gw-auth-refusal-ignored", "fluvial/gateway/server.py",
             "        if not accepted:\n            await _reply_and_close(stream, ws.send(RejectConnection(status_code=401)))",
             "        if False:\n            await _reply_and_close(stream, ws.send(RejectConnection(status_code=401)))",
             ("tests/gateway/test_auth_hooks.py::test_auth_function_accepts_or_refuses_the_socket",),
             "a socket the auth function refused is accepted"),
    Mutation("gw-join-refusal-ignored", "fluvial/gateway/server.py",
             "            if not join_allowed(outcome):",
             "            if False:",
             ("tests/gateway/test_auth_hooks.py::test_join_and_leave_hooks",),
             "a subscription the join hook refused is served"),
    Mutation("gw-resume-skips-records", "fluvial/gateway/model.py",
             "            self.evicted_ts = self.history.popleft().timestamp\n",
             "            self.history.popleft()\n",
             ("tests/gateway/test_model.py::test_history_resume_and_its_limit",
              "tests/gateway/test_protocol.py::test_resume_past_the_history_gets_a_snapshot"),
             "a resume from before the history silently skips the evicted changes"),
    Mutation("gw-direct-write-overtakes-queue", "fluvial/gateway/server.py",
             "        if sock.direct is not None and sock.pending == 0:",
             "        if sock.direct is not None:",
             ("tests/gateway/test_fanout.py::test_a_lagging_subscriber_gets_every_frame_once_in_order",),
             "a frame written straight to the socket overtakes frames still queued (out of order)"),
    Mutation("gw-stream-topic-not-compacted", "fluvial/client/streams.py",
             '**{"cleanup_policy": "compact", **(topic_options or {})}', '**(topic_options or {})',
             ("tests/gateway/test_compacted_state.py",),
             "a stream's topic keeps every version of every item (state replays unbounded history)"),
    # --- issue 13: SmartModules ---------------------------------------------------------------
    Mutation("sm-no-fuel", "fluvial/smartmodule/engine.py",
             "        self.store.set_fuel(self.engine.limits.fuel)\n",
             "        self.store.set_fuel(2**63 - 1)\n",
             ("tests/smartmodule/test_spu_smartmodules.py::test_bad_modules_fail_their_stream_and_the_spu_serves_on[infinite-loop]",),
             "SmartModule calls get unlimited fuel: an infinite loop never fails its stream"),
    Mutation("sm-no-memory-cap", "fluvial/smartmodule/engine.py",
             "        self.store.set_limits(memory_size=limits.memory_bytes)\n",
             "",
             ("tests/smartmodule/test_engine.py::test_memory_hog_hits_the_memory_limit",),
             "a SmartModule's memory is not capped"),
    Mutation("sm-error-code-dropped", "fluvial/spu/public.py",
             "len(records), error=result.error or OK, high_watermark=replica.hw,",
             "len(records), error=OK, high_watermark=replica.hw,",
             ("tests/smartmodule/test_spu_smartmodules.py::test_bad_modules_fail_their_stream_and_the_spu_serves_on[trap]",),
             "a SmartModule failure is sent as success: the consumer never learns of it"),
    Mutation("sm-next-filter-offset-dropped", "fluvial/spu/public.py",
             "next_filter_offset=result.next_offset, log_start_offset=replica.log_start_offset)",
             "next_filter_offset=0, log_start_offset=replica.log_start_offset)",
             ("tests/smartmodule/test_spu_smartmodules.py::test_legacy_stream_fetch_fields",),
             "a SmartModule response does not say how far the input was read (next_filter_offset)"),
    Mutation("sm-on-event-loop", "fluvial/spu/smartmodules.py",
             "    return await trio.to_thread.run_sync(chain.process, data, start, span_from, abandon_on_cancel=True)",
             "    return chain.process(data, start, span_from)",
             ("tests/smartmodule/test_spu_smartmodules.py::test_a_long_running_module_stalls_no_other_stream",),
             "SmartModules run on the SPU's event loop: a slow module stalls every stream"),
    Mutation("sm-no-tail-span", "fluvial/smartmodule/chain.py",
             "        tail = [abi.span_batch(self.covered, self.next_offset)] if self.covered < self.next_offset else []",
             "        tail = []",
             ("tests/compat/test_smartmodules.py::test_non_continuous_stream_ends_when_a_filter_drops_the_last_records",
              "tests/smartmodule/test_abi.py::test_chain_offsets_spans_and_a_start_inside_a_batch"),
             "SmartModule output does not span the dropped input at its end: the official client's "
             "non-continuous stream never ends"),
    Mutation("sm-headers-reach-module", "fluvial/spu/public.py",
             "result = await run_chain(chain, strip_record_set(data), start, span_from)",
             "result = await run_chain(chain, data, start, span_from)",
             ("tests/smartmodule/test_spu_smartmodules.py::test_records_with_headers_reach_a_module_in_fluvio_s_encoding",),
             "records with fluvial's headers reach a SmartModule, which misparses them"),
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
    # --- issue 20: latency ---
    Mutation("one-partition-produce-unawaited", "fluvial/spu/public.py",
             "        await _await_ack(resp, replica, leo, leadership, topic, committed, req.timeout_ms)\n    elif waits:",
             "        pass\n    elif waits:",
             ("tests/spu/test_spu_server.py::test_a_one_partition_produce_is_answered_only_after_its_fsync",),
             "a produce of one partition (no nursery) is answered before its fsync"),
    # --- proc-1 (issue 17): content types and processors ---
    Mutation("content-type-unchecked", "fluvial/client/producer.py",
             "        if self.content_type or hs:\n            check_value(self.content_type, value, hs)\n",
             "",
             ("tests/client/test_content_type.py::test_json_topic_refuses_invalid_json_and_writes_nothing",),
             "the producer writes a value that does not fit the topic's content type"),
    Mutation("processor-commit-before-outputs", "fluvial/processor/runtime.py",
             "        await self.write_outputs(batches)\n        # after every output is acknowledged; written with the next run's plan\n"
             "        await self.save(state, later=True)",
             "        await self.save(state)\n        await self.write_outputs(batches)",
             ("tests/processor/test_runtime.py::test_a_crash_while_writing_outputs_replays_the_window_exactly_once",
              "tests/processor/test_kill.py::test_kill_9_twenty_times_loses_and_doubles_nothing"),
             "a processor commits its input before its outputs are acknowledged: a kill loses outputs"),
    Mutation("processor-unstamped-outputs", "fluvial/processor/runtime.py",
             "                batch = stamp_producer(batch, state.producer_id, 0, (seq + i) % (1 << 31))\n",
             "",
             ("tests/processor/test_runtime.py::test_a_crash_while_writing_outputs_replays_the_window_exactly_once",
              "tests/processor/test_kill.py::test_kill_9_twenty_times_loses_and_doubles_nothing"),
             "a processor's outputs carry no producer id and window-derived sequences: a replay doubles them"),
    Mutation("processor-fresh-producer-id", "fluvial/processor/runtime.py",
             "        if pid < 0:\n",
             "        if True:\n",
             ("tests/processor/test_runtime.py::test_a_crash_while_writing_outputs_replays_the_window_exactly_once",
              "tests/processor/test_kill.py::test_kill_9_twenty_times_loses_and_doubles_nothing"),
             "a processor takes a new producer id on every start: the leader cannot dedup a replayed window"),
    # --- issue 19 (scale-1b): shared HW checkpoint, batched take-over epochs ---
    Mutation("shared-hw-not-durable", "fluvial/spu/checkpoints.py",
             "        write_atomic(self.path, encode_shared_hws(entries))\n",
             "        with open(self.path, \"wb\") as f:\n            f.write(encode_shared_hws(entries))\n",
             ("tests/spu/test_checkpoints.py::test_the_shared_file_is_fsynced_before_its_rename_and_the_directory_after",),
             "the shared HW checkpoint is rewritten in place, not fsynced before a rename"),
    Mutation("shared-hw-beyond-leo", "fluvial/spu/checkpoints.py",
             "        storage.set_hw(entry[1])\n",
             "        storage._hw = entry[1]\n",
             ("tests/spu/test_checkpoints.py::test_hw_comes_from_the_shared_file_clamped_to_the_leo_else_from_replication_chk",),
             "a HW restored from the shared file may exceed the recovered (durable) LEO"),
    Mutation("shared-hw-crc-ignored", "fluvial/storage/checkpoint.py",
             "    if crc32c(body) != crc:\n",
             "    if False:\n",
             ("tests/spu/test_checkpoints.py::test_shared_file_round_trips_and_rejects_every_torn_or_corrupt_form",),
             "a torn or corrupt shared HW checkpoint is trusted"),
    Mutation("hw-checkpoint-unchanged", "fluvial/spu/context.py",
             "if not self.hw_file.dirty and all(r.storage.hw == r.checkpointed_hw for r in replicas):",
             "if not self.hw_file.dirty and False:",
             ("tests/spu/test_checkpoints.py::test_the_spu_writes_one_shared_file_only_when_a_hw_changed_and_restores_it",),
             "the shared HW checkpoint is rewritten every interval, changed or not"),
    Mutation("lead-before-epoch-durable", "fluvial/spu/partition.py",
             "            self.epoch_writer(self)\n            return\n",
             "            self.epoch_writer(self)\n            self._lead()\n            return\n",
             ("tests/spu/test_checkpoints.py::test_a_take_over_waits_until_its_epoch_is_durable",),
             "a replica leads at a new epoch before its epoch file holding it is durable"),
    Mutation("take-over-per-replica", "fluvial/spu/context.py",
             "            self._take_overs = {}\n            work = ",
             "            self._take_overs = dict(list(self._take_overs.items())[1:])\n            batch = batch[:1]\n            work = ",
             ("tests/spu/test_checkpoints.py::test_the_spu_takes_over_many_partitions_in_one_thread_hop",),
             "take-overs' epoch files are written one thread hop per replica"),
    # --- consumers end their streams on the SPU ---
    Mutation("consumer-stream-left-open", "fluvial/client/consumer.py",
             "                await _close_on_spu(conn, stream_id, self._c._fl.request_timeout)\n",
             "                pass\n",
             ("tests/client/test_produce_consume.py::test_many_consumers_one_after_another_on_one_connection",),
             "a closed consumer's stream stays parked on the SPU: a long-lived connection runs out of request slots"),
    # --- proc-runtime (issue 17): one runtime per processor ---
    Mutation("processor-epoch-not-bumped", "fluvial/processor/runtime.py",
             "        epoch = self.log.epoch + 1\n",
             "        epoch = max(self.log.epoch, 1)\n",
             ("tests/processor/test_fencing.py::test_a_second_runtime_fences_the_first_and_the_output_stays_exactly_once",),
             "a starting processor runtime does not bump the epoch: the running one is not fenced"),
    Mutation("supervisor-drops-tls-flags", "fluvial/cli/run.py",
             '    prefix = [sys.executable, "-m", "fluvial.cli.main", *options.argv()]',
             '    prefix = [sys.executable, "-m", "fluvial.cli.main", *options.argv()[:2]]',
             ("tests/processor/test_supervisor.py::test_the_supervisor_runs_a_tls_clusters_processors",),
             "the processors' supervisor starts its runtimes without its TLS flags: they cannot connect"),
    # --- issue 20: RF=3 latency (perf-repl) ---
    Mutation("hw-only-answered-at-once", "fluvial/replication/fetch.py",
             "    if has_news(fetch_offset, known_hw, log_end, hw):\n        return linger_ms\n",
             "    if has_news(fetch_offset, known_hw, log_end, hw):\n        return 0\n",
             ("tests/spu/test_replication.py::test_a_poll_with_only_a_hw_to_give_waits_a_little_for_records_to_carry_it",),
             "a poll whose only news is a HW is answered at once: two follower round trips per record"),
    Mutation("hw-only-held-to-max-wait", "fluvial/spu/replication.py",
             "                        poll.deadline = min(poll.deadline, trio.current_time() + wait / 1000)\n",
             "                        pass\n",
             ("tests/spu/test_replication.py::test_a_poll_with_only_a_hw_to_give_waits_a_little_for_records_to_carry_it",),
             "a HW the follower lacks waits for records (or max_wait_ms) however long they take"),
    Mutation("superseded-answer-unfollows-successor", "fluvial/spu/replication.py",
             "        if self.following.get(key) is f:\n            self.remove(key)\n",
             "        self.remove(key)\n",
             ("tests/spu/test_replication.py::test_a_fetch_answered_as_the_replica_set_grows_keeps_the_partition_followed",),
             "an answer for an older epoch unfollows the partition the fetcher follows at the new epoch"),
    # --- proc-riff (issue 17): riff's gRPC invoker ---
    Mutation("riff-arg-index-ignored", "fluvial/processor/riff.py",
             "                                     arg_index=i))",
             "                                     arg_index=0))",
             ("tests/processor/test_riff.py::test_arg_index_and_result_index_map_inputs_and_outputs",
              "tests/processor/test_riff.py::test_a_window_becomes_a_start_frame_and_input_frames_by_arg_index"),
             "every input record is sent as the riff function's first argument"),
    Mutation("riff-result-index-ignored", "fluvial/processor/riff.py",
             "        topic = outputs[f.result_index]\n",
             "        topic = outputs[0]\n",
             ("tests/processor/test_riff.py::test_arg_index_and_result_index_map_inputs_and_outputs",),
             "every output frame goes to the first output topic, whatever its resultIndex"),
    Mutation("riff-no-half-close", "fluvial/processor/riff.py",
             "            yield from signals\n",
             "            yield from signals\n            __import__(\"threading\").Event().wait(60)\n",
             ("tests/processor/test_riff.py::test_time_averager_behind_a_riff_invoker",),
             "a window's call is not half-closed at the window's end: the function never sees its EOS"),
    Mutation("riff-record-content-type-ignored", "fluvial/processor/riff.py",
             "header_content_type(r.headers) or topic_type",
             "topic_type",
             ("tests/processor/test_riff.py::test_record_headers_and_content_types_cross_the_invoker",),
             "an input frame's contentType ignores the record's own content-type header"),
    # --- proc-call (issue 17): fl.call(NAME) ---
    Mutation("call-reply-unstamped", "fluvial/processor/call_state.py",
             "        out.append(stamp_producer(batch, producer_id, 0, seq))\n",
             "        out.append(batch)\n",
             ("tests/processor/test_call.py::test_a_crash_while_writing_a_reply_replays_it_exactly_once",
              "tests/processor/test_call_state.py::test_reply_batches_carry_the_producer_id_and_sequences_following_on"),
             "a call's reply batches carry no producer id and derived sequences: a replay after a crash doubles them"),
    Mutation("call-progress-before-reply", "fluvial/processor/calls.py",
             "        for record_set in record_sets(batches, DEFAULT_MAX_REQUEST_SIZE):\n            await send_batch(self.fl, self.replies, p, record_set, max_delay=1.0)\n"
             "        async with self._lock:  # every snapshot holds every partition's latest progress\n"
             "            await self.save(self.state.answered(p, call.eos, assembler.restart_offset(call.eos + 1),\n"
             "                                                records))\n",
             "        async with self._lock:\n"
             "            await self.save(self.state.answered(p, call.eos, assembler.restart_offset(call.eos + 1),\n"
             "                                                records))\n"
             "        for record_set in record_sets(batches, DEFAULT_MAX_REQUEST_SIZE):\n            await send_batch(self.fl, self.replies, p, record_set, max_delay=1.0)\n",
             ("tests/processor/test_call.py::test_a_crash_while_writing_a_reply_replays_it_exactly_once",),
             "a call is recorded as answered before its reply is acknowledged: a crash loses the reply"),
    Mutation("call-answered-replayed", "fluvial/processor/call_state.py",
             "            if call is None or m.kind is MarkerKind.ABORT or record.offset <= self.answered:\n",
             "            if call is None or m.kind is MarkerKind.ABORT:\n",
             ("tests/processor/test_call.py::test_a_call_answered_while_an_older_one_is_open_is_not_answered_again",),
             "after a restart, a call answered while an older one was open is answered again (a second reply)"),
    Mutation("call-records-mixed", "fluvial/processor/call_state.py",
             "        call = None if sid is None else self.open.get(sid.decode(errors=\"replace\"))\n",
             "        call = next(iter(self.open.values()), None)\n",
             ("tests/processor/test_call.py::test_concurrent_calls_get_their_own_outputs",),
             "concurrent calls' records are mixed: a call's function sees another call's input"),
    Mutation("call-sequence-not-advanced", "fluvial/processor/call_state.py",
             "        parts[partition] = PartitionProgress(next_offset, eos_offset, next_sequence(p.seq, records))\n",
             "        parts[partition] = PartitionProgress(next_offset, eos_offset, p.seq)\n",
             ("tests/processor/test_call_state.py::test_progress_round_trips_and_moves_the_sequence_past_the_reply",
              "tests/processor/test_call.py::test_a_call_answered_while_an_older_one_is_open_is_not_answered_again"),
             "the next call's reply reuses the sequences of the previous one: the leader drops it as a duplicate"),
    # --- issue 20 (perf-tls): TlsStream ---
    Mutation("tls-eof-is-truncation", "fluvial/net/tls.py",
             "        except ssl.SSLZeroReturnError:\n",
             "        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):\n",
             ("tests/net/test_tls_stream.py::test_eof_without_close_notify_breaks_the_stream",),
             "a transport EOF without close_notify reads as a clean end (a truncation goes unseen)"),
    Mutation("tls-bad-record-ignored", "fluvial/net/tls.py",
             "            self._broken(exc)\n            if not got:\n",
             "            self._broken(exc)\n            if False:\n",
             ("tests/net/test_tls_stream.py::test_a_record_that_does_not_verify_breaks_the_stream",),
             "a record that does not verify reads as the end of the stream, not as an error"),
    Mutation("tls-read-unbounded", "fluvial/net/tls.py",
             "size = min(max_bytes, incoming.pending + ssl_object.pending()) or 1",
             "size = (incoming.pending + ssl_object.pending()) or 1",
             ("tests/net/test_tls_stream.py::test_bounded_reads_leave_the_rest_for_later",),
             "receive_some returns more than max_bytes"),
    Mutation("tls-parts-reordered", "fluvial/net/tls.py",
             "        for part in parts:\n            if part:  # SSLObject.write",
             "        for part in reversed(parts):\n            if part:  # SSLObject.write",
             ("tests/net/test_tls_stream.py::test_parts_leave_in_order_in_one_transport_write",
              "tests/net/test_tls_stream.py::test_a_large_frame_through_serve_tcp_and_open_connection"),
             "the parts of a frame leave a TLS stream out of order"),
    # --- perf-client (issue 20) ---
    Mutation("direct-write-while-queued", "fluvial/net/multiplexer.py",
             "        if self._queued or self._direct_fd < 0:\n            return False\n",
             "        if self._direct_fd < 0:\n            return False\n",
             ("tests/net/test_multiplexer_direct_writes.py::test_concurrent_cancelled_callers_never_cut_or_mix_frames",),
             "a caller writes its frame directly while the writer is writing (frames interleave)"),
    Mutation("direct-write-drops-rest", "fluvial/net/multiplexer.py",
             "        if sent < len(frame):  # the rest goes first, before any later frame\n",
             "        if False:\n",
             ("tests/net/test_multiplexer_direct_writes.py::test_concurrent_cancelled_callers_never_cut_or_mix_frames",),
             "the part of a directly written frame the kernel did not take is dropped (a cut frame)"),
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
