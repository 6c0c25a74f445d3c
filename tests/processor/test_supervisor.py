"""The supervisor's decisions (pure) and the supervisor restarting a killed runtime."""

from __future__ import annotations

import signal
import subprocess
import sys

import trio

from fluvial.processor.supervisor import FIRST_BACKOFF, Child, decide, exited, supervise


class _Proc:
    def __init__(self):
        self.returncode = None


def test_start_missing_stop_deleted_and_back_off_crashes():
    assert decide(["a", "b"], {}, 0).start == ["a", "b"]
    running = Child(_Proc())
    assert decide(["a"], {"a": running, "gone": Child(_Proc())}, 0).stop == ["gone"]
    c = Child(_Proc(), started=0.0)
    exited(c, -9, now=1.0)
    assert decide(["a"], {"a": c}, 1.0).start == [] and decide(["a"], {"a": c}, 1.0 + FIRST_BACKOFF).start == ["a"]
    exited(c, -9, now=2.0)
    assert c.backoff == 4 * FIRST_BACKOFF
    exited(c, -9, now=100.0)  # after a long run the backoff starts over
    assert c.not_before == 100.0 + FIRST_BACKOFF


def test_a_failed_runtime_stays_down():
    c = Child(_Proc())
    exited(c, 1, now=5.0)
    assert c.failed and decide(["a"], {"a": c}, 1e9).start == []


async def test_supervise_restarts_a_killed_runtime_and_stops_a_deleted_one():
    names = ["p"]
    procs = []

    def spawn(name):
        procs.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        return procs[-1]

    async def listed():
        return list(names)

    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as n:
                n.start_soon(lambda: supervise(listed, spawn, poll=0.05))
                while not procs:
                    await trio.sleep(0.02)
                procs[0].send_signal(signal.SIGKILL)
                while len(procs) < 2:
                    await trio.sleep(0.02)
                names.clear()
                while procs[1].poll() is None:
                    await trio.sleep(0.02)
                n.cancel_scope.cancel()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert procs[0].returncode == -signal.SIGKILL and procs[1].returncode is not None and len(procs) == 2


def test_the_global_options_go_to_the_runtimes_as_flags(tmp_path):
    from fluvial.cli.common import GlobalOptions, tls_policy_from_flags
    from fluvial.client.profile import TlsAnonymous, TlsDisabled, TlsVerified

    files = {n: tmp_path / f"{n}.pem" for n in ("key", "cert", "ca")}
    verified = TlsVerified("d.local", str(files["key"]), str(files["cert"]), str(files["ca"]))
    argv = GlobalOptions(cluster="127.0.0.1:9", tls=verified, connect_timeout=2.5).argv()
    assert argv[:2] == ["-c", "127.0.0.1:9"] and argv[-2:] == ["--connect-timeout", "2.5"]
    flags = dict(zip(argv[2:-2:2], argv[3:-2:2]))
    assert tls_policy_from_flags(None, flags["--domain"], flags["--ca-cert"], flags["--client-cert"],
                                 flags["--client-key"]) == verified
    assert GlobalOptions(profile="p", tls=TlsDisabled()).argv() == ["-P", "p", "--no-tls"]
    assert GlobalOptions(tls=TlsAnonymous()).argv() == ["--tls"] and GlobalOptions().argv() == []


async def test_the_supervisor_runs_a_tls_clusters_processors(tmp_path, nursery):
    import fluvial
    from client.test_tls import DOMAIN, start_tls_cluster
    from fluvial import Offset
    from fluvial.client.profile import TlsVerified
    from fluvial.processor.spec import processor_spec
    from harness.processes import fluvial_command

    with trio.fail_after(60):
        endpoint, paths = await start_tls_cluster(nursery, tmp_path)
        key, cert, ca = (str(paths[k]) for k in ("client_alice_key", "client_alice_cert", "ca_cert"))
        (tmp_path / "fns").mkdir()
        (tmp_path / "fns" / "tlsfn.py").write_text("def up(value):\n    return value.upper()\n")
        async with fluvial.connect(endpoint=endpoint, tls=TlsVerified(DOMAIN, key, cert, ca)) as fl:
            await fl.admin.create_topic("tin")
            await fl.admin.create_topic("tout")
            await fl.admin.create_processor("up", processor_spec("tlsfn:up", ["tin"], ["tout"], window_count=1,
                                                                 path=str(tmp_path / "fns")))
            argv = [*fluvial_command(), "-c", endpoint, "--domain", DOMAIN, "--ca-cert", ca,
                    "--client-cert", cert, "--client-key", key, "run", "processors", "--log-level", "warning"]
            sup = await trio.lowlevel.open_process(argv)
            try:
                async with fl.producer("tin", linger=0) as p:
                    await p.send(b"secret")
                async with fl.consumer("tout", partition=0, offset=Offset.beginning()) as c:
                    async for rec in c:
                        break
                assert rec.value == b"SECRET"
            finally:
                sup.send_signal(signal.SIGINT)
                with trio.move_on_after(15):
                    await sup.wait()
                if sup.returncode is None:
                    sup.kill()
                    await sup.wait()
        nursery.cancel_scope.cancel()
