"""``fluvial cluster``: a local cluster of background processes under $FLUVIAL_HOME.

Layout: ``cluster.json`` (members: kind, id, pid, ports, data dir, log), ``data/sc``,
``data/spu-<id>``, ``logs/<member>.log``. Every member is started as ``fluvial run ...`` (the
same code path as a multi-host deployment) and reports its bound ports through a ready file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from fluvial.cli import certs as _certs
from fluvial.client import profile as prof
from fluvial.access import spu_member_name
from fluvial.pids import pid_alive as _alive

app = typer.Typer(no_args_is_help=True, help="Start and manage a local cluster.")
_certs.register(app)  # fluvial cluster certs
START_TIMEOUT_SECONDS = 60.0


def _home() -> Path:
    return prof.fluvial_home()


def _state_path() -> Path:
    return _home() / "cluster.json"


def _load() -> dict | None:
    try:
        return json.loads(_state_path().read_text())
    except FileNotFoundError:
        return None


def _save(state: dict) -> None:
    path = _state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def _member_name(m: dict) -> str:
    if m["kind"] == "sc":
        return "sc" if not m["id"] else f"sc-{m['id']}"
    if m["kind"] in ("gateway", "processors"):
        return m["kind"]
    return f"{m['kind']}-{m['id']}"


def _scs(state: dict) -> list[dict]:
    return [m for m in state["members"] if m["kind"] == "sc"]


def _spawn_etcd(m: dict) -> None:
    """(Re)start one member of the local etcd (``--sc N --etcd``); it joins the others."""
    log = _home() / "logs" / f"{_member_name(m)}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(m["argv"], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    m["pid"], m["log"] = proc.pid, str(log)


def _spawn(m: dict, state: dict) -> None:
    """Start one member and wait for its ready file. Its PID is recorded before the wait, so a
    member that never comes up can still be stopped; on failure it is stopped here."""
    if m["kind"] == "etcd":
        _spawn_etcd(m)
        return
    home = _home()
    name = _member_name(m)
    ready = home / "run" / f"{name}.ready"
    ready.parent.mkdir(parents=True, exist_ok=True)
    ready.unlink(missing_ok=True)
    log = home / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "fluvial.cli.main", "run", m["kind"], "--data-dir", m["data_dir"],
           "--public-port", str(m["public_port"]), "--private-port", str(m["private_port"]),
           "--ready-file", str(ready)]
    if m["kind"] == "gateway":  # the streams gateway, a client of the `local` profile
        cmd = [sys.executable, "-m", "fluvial.cli.main", "-P", "local", "gateway",
               "--port", str(m["public_port"]), "--ready-file", str(ready)]
    if m["kind"] == "processors":  # the processors' supervisor, a client of the `local` profile
        cmd = [sys.executable, "-m", "fluvial.cli.main", "-P", "local", "run", "processors",
               "--ready-file", str(ready)]
    if m["kind"] == "spu":
        cmd += ["--id", str(m["id"]), "--sc", ",".join(f"127.0.0.1:{s['private_port']}" for s in _scs(state))]
    cmd += [str(a) for a in m.get("args", [])]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    m["pid"] = proc.pid
    m["log"] = str(log)
    _save(state)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not ready.exists():
        if proc.poll() is not None:
            raise typer.Exit(_fail(f"{name} exited with code {proc.returncode}; see {log}"))
        if time.monotonic() > deadline:
            _stop_pids([proc.pid], 10.0)
            proc.wait()
            raise typer.Exit(_fail(f"{name} did not come up within {START_TIMEOUT_SECONDS:.0f}s; see {log}"))
        time.sleep(0.05)
    info = json.loads(ready.read_text())
    m["public_port"], m["private_port"] = info["public_port"], info["private_port"]


def _fail(msg: str) -> int:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    return 1


def _ensure_certs(spus: int, domain: str) -> Path:
    """Certificates and a default policy under $FLUVIAL_HOME/certs, minted once."""
    from fluvial.tls_certs import mint_cluster_certs

    certs = (_home() / "certs").resolve()
    names = [spu_member_name(5001 + i) for i in range(spus)]
    if not (certs / "ca.crt").exists() or not all((certs / f"{n}.crt").exists() for n in names):
        mint_cluster_certs(certs, domain, spu_names=names, client_cns=("admin",))
    policy = certs / "policy.toml"
    if not policy.exists():
        _certs.write_default_policy(policy, admins=("admin",), members=("sc", "custom-spu-*"))
    return certs




def _write_profile(state: dict) -> str:
    scs = [f"127.0.0.1:{m['public_port']}" for m in _scs(state)]
    endpoint = scs[0]
    cfg = prof.load_config()
    tls_state = state.get("tls")
    tls = None
    if tls_state:
        d = Path(tls_state["dir"])
        tls = prof.TlsVerified(tls_state["domain"], str(d / "client-admin.key"),
                               str(d / "client-admin.crt"), str(d / "ca.crt"))
    cfg.add_profile("local", endpoint, tls, set_current=True, more_endpoints=tuple(scs[1:]))
    prof.save_config(cfg)
    return endpoint


@app.command()
def start(
    spus: Annotated[int, typer.Option("--spus", min=1, help="How many SPUs to run.")] = 1,
    sc_port: Annotated[int, typer.Option(help="SC public port; 0 picks a free one.")] = 9003,
    sc_private_port: Annotated[int, typer.Option(help="SC private port; 0 picks one.")] = 0,
    spu_port: Annotated[int, typer.Option(help="First SPU public port (each SPU takes the next "
                                                   "two); 0 picks free ones.")] = 0,
    data_dir: Annotated[Optional[Path], typer.Option(help="Data directory (default $FLUVIAL_HOME/data).")] = None,
    heartbeat_timeout: Annotated[float, typer.Option(help="Seconds of SPU silence before the SC fails it.")] = 10.0,
    replica_lag_time_max: Annotated[float, typer.Option(help="Seconds a follower may lag before it leaves the ISR.")] = 10.0,
    tls: Annotated[bool, typer.Option("--tls/--no-tls", help="TLS on every port with certificates "
                                      "under $FLUVIAL_HOME/certs (minted when missing).")] = True,
    domain: Annotated[str, typer.Option(help="The TLS name of the servers.")] = "fluvial.local",
    sc: Annotated[int, typer.Option("--sc", min=1, help="How many SCs (more than one needs --etcd).")] = 1,
    etcd: Annotated[bool, typer.Option("--etcd/--no-etcd", help="Keep the SC metadata in a local "
                                       "three-member etcd (Debian package etcd-server; docs/ha.md).")] = False,
    controller_lease: Annotated[float, typer.Option(help="With --etcd: seconds of the controller's lease.")] = 3.0,
    gateway: Annotated[bool, typer.Option("--gateway", help="Also start a streams gateway "
                                          "(`fluvial gateway`; WebSocket, HTTP, /ui).")] = False,
    gateway_port: Annotated[int, typer.Option(min=0, max=65535,
                                              help="The gateway's port; 0 picks a free one.")] = 31112,
    processors: Annotated[bool, typer.Option("--processors", help="Also supervise the cluster's "
                                             "processors (`fluvial run processors`; docs/processors.md).")] = False,
) -> None:
    """Start an SC and N SPUs in the background and select the `local` profile.

    Example: fluvial cluster start --spus 3
    Highly available: fluvial cluster start --spus 3 --sc 3 --etcd
    """
    old = _load()
    if old and any(_alive(m.get("pid")) for m in old["members"]):
        raise typer.Exit(_fail("a cluster is already running here; `fluvial cluster shutdown` first"))
    if sc > 1 and not etcd:
        raise typer.Exit(_fail("several SCs share their metadata through etcd: add --etcd"))
    data = (data_dir or _home() / "data").resolve()
    etcd_members: list[dict] = []
    sc_args: list = []
    if etcd:
        from fluvial.sc.etcd_local import EtcdMissing, LocalEtcd

        try:
            local = LocalEtcd(data / "etcd")
        except EtcdMissing as e:
            raise typer.Exit(_fail(str(e))) from None
        etcd_members = [{"kind": "etcd", "id": i, "public_port": local.client_ports[i],
                         "private_port": local.peer_ports[i], "data_dir": str(data / "etcd" / f"m{i}"),
                         "argv": local.argv(i, "existing")} for i in range(local.members)]  # for resume
        sc_args = ["--metadata", local.url, "--etcd-prefix", "/fluvial", "--controller-lease", controller_lease]
    tls_args: list = []
    if tls:
        certs = _ensure_certs(spus, domain)
        tls_args = ["--tls-dir", str(certs), "--domain", domain]
    members = [*etcd_members]
    for i in range(sc):
        pub = sc_port + 2 * i if sc_port and i else sc_port
        members.append({"kind": "sc", "id": i, "public_port": pub,
                        "private_port": sc_private_port + i if sc_private_port else 0,
                        "data_dir": str(data / ("sc" if not i else f"sc-{i}")),
                        "args": ["--heartbeat-timeout", heartbeat_timeout, *tls_args, *sc_args]})
    for i in range(spus):
        pub = spu_port + 2 * i if spu_port else 0
        members.append({"kind": "spu", "id": 5001 + i, "public_port": pub,
                        "private_port": pub + 1 if pub else 0, "data_dir": str(data / f"spu-{5001 + i}"),
                        "args": ["--replica-lag-time-max", replica_lag_time_max, *tls_args]})
    state = {"members": members, "tls": {"dir": tls_args[1], "domain": domain} if tls else None}
    try:
        if etcd_members:
            _start_local_etcd(local, etcd_members, state)
        for m in members[len(etcd_members):]:
            _spawn(m, state)
            _save(state)
    except typer.Exit:
        # do not leave half a cluster running
        _stop_pids([m["pid"] for m in reversed(members) if _alive(m.get("pid"))], 15.0)
        raise
    endpoint = _write_profile(state)
    more = f" (and {sc - 1} more SCs, metadata in etcd)" if sc > 1 else (" (metadata in etcd)" if etcd else "")
    if gateway:
        gw = {"kind": "gateway", "id": 0, "public_port": gateway_port, "private_port": 0,
              "data_dir": str(data / "gateway"), "args": tls_args[:2]}
        members.append(gw)
        try:
            _spawn(gw, state)
        except typer.Exit:
            _stop_pids([m["pid"] for m in reversed(members) if _alive(m.get("pid"))], 15.0)
            raise
        _save(state)
        typer.echo(f"streams gateway at {'wss' if tls else 'ws'}://127.0.0.1:{gw['public_port']}/")
    if processors:
        sup = {"kind": "processors", "id": 0, "public_port": 0, "private_port": 0,
               "data_dir": str(data / "processors")}
        members.append(sup)
        try:
            _spawn(sup, state)
        except typer.Exit:
            _stop_pids([m["pid"] for m in reversed(members) if _alive(m.get("pid"))], 15.0)
            raise
        _save(state)
        typer.echo("processors supervised (`fluvial processor list`)")
    typer.echo(f"cluster started: SC at {endpoint}{more}, {spus} SPU(s); profile 'local' selected")


def _start_local_etcd(local, etcd_members: list[dict], state: dict) -> None:
    for i, m in enumerate(etcd_members):
        local.spawn(i)
        m["pid"], m["log"] = local.procs[i].pid, str(local.base / f"m{i}.log")
    _save(state)
    try:
        local.wait_ready()
    except RuntimeError as e:
        raise typer.Exit(_fail(str(e))) from None


def _status_rows(state: dict) -> list[dict]:
    rows = []
    for m in state["members"]:
        rows.append({"name": _member_name(m), "kind": m["kind"], "id": m["id"], "pid": m.get("pid"),
                     "public_port": m["public_port"], "private_port": m["private_port"],
                     "up": _alive(m.get("pid")), "log": m.get("log")})
    return rows


@app.command()
def status(output: Annotated[str, typer.Option("-O", "--output", help="table or json.")] = "table") -> None:
    """Show every member of the local cluster.

    Example: fluvial cluster status -O json
    """
    state = _load()
    if state is None:
        raise typer.Exit(_fail("no local cluster here; run `fluvial cluster start`"))
    rows = _status_rows(state)
    if output == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    from fluvial.cli.output import print_table

    print_table(["name", "kind", "id", "pid", "public_port", "private_port", "up"], rows)


@app.command()
def shutdown(timeout: Annotated[float, typer.Option(help="Seconds to wait before SIGKILL.")] = 15.0) -> None:
    """Stop every member gracefully (SIGTERM, then SIGKILL after the timeout).

    Example: fluvial cluster shutdown
    """
    state = _load()
    if state is None:
        raise typer.Exit(_fail("no local cluster here"))
    _stop_pids([m.get("pid") for m in reversed(state["members"])], timeout)  # SPUs first
    typer.echo("cluster stopped")


def _stop_pids(pids: list, timeout: float) -> None:
    """SIGTERM each live PID (in order), then SIGKILL what is left after ``timeout``."""
    live = [p for p in pids if _alive(p)]
    for pid in live:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for pid in live:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@app.command()
def resume() -> None:
    """Restart the members that are not running, with their data and ports.

    Example: fluvial cluster resume
    """
    state = _load()
    if state is None:
        raise typer.Exit(_fail("no local cluster here; run `fluvial cluster start`"))
    started = 0
    for m in state["members"]:
        if not _alive(m.get("pid")):
            _spawn(m, state)
            _save(state)
            started += 1
    endpoint = _write_profile(state)
    typer.echo(f"cluster resumed ({started} member(s) started): SC at {endpoint}")


@app.command()
def delete(force: Annotated[bool, typer.Option("--force", help="Do not ask.")] = False) -> None:
    """Stop the cluster and remove its data.

    Example: fluvial cluster delete --force
    """
    state = _load()
    if state is None:
        raise typer.Exit(_fail("no local cluster here"))
    if not force and not typer.confirm("Delete the local cluster and all its data?"):
        raise typer.Exit(1)
    if any(_alive(m.get("pid")) for m in state["members"]):
        shutdown(timeout=15.0)
    for m in state["members"]:
        shutil.rmtree(m["data_dir"], ignore_errors=True)
    shutil.rmtree(_home() / "run", ignore_errors=True)
    _state_path().unlink(missing_ok=True)
    typer.echo("cluster deleted")
