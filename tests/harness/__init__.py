"""The test harness: clusters to test against, the faults to deliver to them, and the checks.

Not part of the shipped package. The tests import it as ``harness`` (pyproject's pytest
``pythonpath``); the bench scripts put ``tests/`` on ``sys.path`` first.

* In process (one trio run): ``cluster`` (an SC and SPUs, optionally behind ``proxy`` links a test
  cuts and heals), ``faults`` (seeded faults on byte streams).
* Real processes: ``processes`` (``fluvial cluster ...`` under its own home; kill, pause, power
  cut), ``powerloss`` (a power cut replayed from the storage sync journal), ``disklogs`` (a stopped
  replica's log read back, or cut).
* The workload and its verdict: ``client`` (a small client on the wire protocol alone),
  ``workload`` (retrying writers, ReadCommitted consumers), ``history`` (what they did and saw),
  ``checker`` (the replication promise checked against it), ``scenarios`` (a leader-kill round,
  heal and check), ``stats`` (report statistics).
"""
