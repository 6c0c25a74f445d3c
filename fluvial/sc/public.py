"""The SC's public API (../shared/fluvio-protocol/sc.md): ApiVersions, Create, Delete, List,
Watch and Update over the TypeBuffer scheme.

One ``handle_<api>(state, conn, header, request)`` per api key, served by
``fluvial.net.dispatch.serve_api`` (``public_api``): a handler returns its response, except a
watch, which keeps sending on its correlation id until the connection closes. ``authorized`` is
the gate: List and Watch need "read" on the kind, the others "admin" on the object they name.
A Create, Delete or Update whose change the SC cannot save is answered with StorageError
(``_saving``); nothing changed.
"""

from __future__ import annotations

import functools
import logging

import trio

from fluvial.errors import Error, ErrorCode
from fluvial.access import allowed, principal_of
from fluvial.net.dispatch import (
    ApiRegistry, Refusal, RequestLimits, refuse_unsupported, send_reply, serve_api,
)
from fluvial.net.server import Handler
from fluvial.protocol import sc_api as sa
from fluvial.protocol import sc_objects as so
from fluvial.protocol.api import UnsupportedRequest, decode_request, peek_api_key
from fluvial.protocol import producer_api as pa
from fluvial.protocol import topic_settings_api as ts
from fluvial.processor.spec import spec_error
from fluvial.smartmodule.abi import ModuleError, wasm_bytes
from fluvial.sc import controller as ctl
from fluvial.sc.state import MetadataSaveError, ScState

log = logging.getLogger("fluvial.sc")

DEFAULT_CREATE_TIMEOUT_MS = 30_000
# a decodable placeholder for the "never leave a client store empty" rule (README §6.3, option b)
_DUMMY = {
    "Topic": lambda: so.Metadata("none", so.TopicSpec.computed(1, 1)),
    "Partition": lambda: so.Metadata("none-0", so.PartitionSpec(-1, [])),
    "SPU": lambda: so.Metadata("none", so.SpuSpec()),
}


MAX_REQUEST_BYTES = 1 << 20  # every SC request but Create (SmartModule payloads) is small
MAX_CREATE_BYTES = 8 << 20


def public_api(state: ScState, handlers=None) -> Handler:
    """The ``serve_tcp`` handler of the SC's public port; ``handlers``: ``HANDLERS`` or a
    variant (fluvial.sc.ha wraps the writing ones)."""
    return serve_api(REGISTRY, handlers or HANDLERS, LIMITS, state, gate=authorized)


class UnservedObjectType(UnsupportedRequest):
    """A well-framed object request for a type the SC does not handle (``sa.UnknownObjectType``,
    with its header): answered (``refuse``), the connection kept."""


# Fluvio's requests, and fluvial's own producer-id request (not advertised: producer_api.py)
REQUESTS = {**sa.SC_REQUESTS, pa.ALLOCATE_PRODUCER_ID_KEY: pa.AllocateProducerIdRequest,
            ts.TOPIC_SETTINGS_KEY: ts.TopicSettingsRequest}
_FLUVIAL_KEYS = (pa.ALLOCATE_PRODUCER_ID_KEY, ts.TOPIC_SETTINGS_KEY)


def decode(payload: bytes):
    """``sa.decode_sc_request``, an unknown object type raised as an ``UnservedObjectType``."""
    if peek_api_key(payload) in _FLUVIAL_KEYS:
        return decode_request(payload, REQUESTS)
    try:
        return sa.decode_sc_request(payload)
    except sa.UnknownObjectType as e:
        raise UnservedObjectType(e.header, str(e)) from e


def _unknown_type(what: str) -> sa.Status:
    """Fluvio's SC answer to an object type it does not know."""
    return sa.Status(what, Error.other("unknown admin object type"), None)


def refuse(header, e: UnsupportedRequest):
    """The answer to a request the SC does not serve, as Fluvio's SC gives it: an unknown object
    type is an error frame for List and Watch, a Status for the others."""
    if not isinstance(e, UnservedObjectType):
        return refuse_unsupported(header, e)
    if header.api_key in (sa.ScApiKey.List, sa.ScApiKey.Watch):
        return Refusal(Error.other(str(e)))
    return _unknown_type("create error")


def authorized(state: ScState, conn, header, req):
    """The gate: the answer to a request the connection's principal may not make, or None."""
    if header.api_key == pa.ALLOCATE_PRODUCER_ID_KEY:
        return None  # an id grants nothing: the SPU checks produce rights on every topic
    if header.api_key == ts.TOPIC_SETTINGS_KEY:
        return None if allowed(state.policy, conn, "read", "topic") else \
            ts.TopicSettingsResponse(Error(ErrorCode.PermissionDenied))
    kind = req.label.lower()
    if header.api_key in (sa.ScApiKey.List, sa.ScApiKey.Watch):
        if allowed(state.policy, conn, "read", kind):
            return None
        return Refusal(Error(ErrorCode.PermissionDenied))
    name = _object_name(header, req)
    if allowed(state.policy, conn, "admin", kind, name):
        return None
    log.warning("%s: %s denied %s on %s %r", conn.peer, principal_of(conn), type(req).__name__, kind, name)
    return sa.Status(name, Error(ErrorCode.PermissionDenied),
                     f"{principal_of(conn)} may not change {kind} '{name}'")


def _object_name(header, req) -> str:
    """The object a Create, Delete or Update names."""
    inner = req.request
    return inner.common.name if header.api_key == sa.ScApiKey.Create else str(inner.key)


def _saving(handler):
    """A handler that changes the stores: a change the SC cannot save (``MetadataSaveError``) is
    answered with StorageError on the object; nothing was changed."""
    @functools.wraps(handler)
    async def handle(state: ScState, conn, header, req):
        try:
            return await handler(state, conn, header, req)
        except MetadataSaveError as e:
            return sa.Status(_object_name(header, req), Error(ErrorCode.StorageError),
                             f"{e}; nothing was changed")
    return handle


# ----------------------------------------------------------------------------------- create


@_saving
async def handle_create(state: ScState, conn, header, req: sa.ObjectApiCreateRequest):
    common, spec = req.request.common, req.request.spec
    name = common.name
    if req.label == "Topic":
        try:
            ctl.validate_new_topic(state, name, spec)
            if common.dry_run:
                ctl.replica_map_for(state, spec)
                return sa.Status.new_ok(name)
            partitions = state.handle(ctl.TopicCreated(name, spec))
        except ctl.CreateError as e:
            return sa.Status(name, e.error, e.message)
        timeout = (common.timeout or DEFAULT_CREATE_TIMEOUT_MS) / 1000
        online = await wait_partitions_online(state, partitions, timeout)
        await state.wait_watchers_synced(("Topic", "Partition"))
        if online < len(partitions):
            return sa.Status(name, Error(ErrorCode.TopicNotProvisioned),
                             f"only {online} out of {len(partitions)} provisioned")
        return sa.Status.new_ok(name)
    store = state.stores.get(req.label)
    if store is None:
        return _unknown_type("create error")
    if req.label == "SmartModule" and spec.meta is not None:
        name = spec.meta.store_id() if hasattr(spec.meta, "store_id") else name
    if req.label == "SmartModule":  # raw wasm (the official admin) or gzipped (Fluvio's CLI)
        try:
            wasm_bytes(spec.wasm.payload)
        except ModuleError as e:
            return sa.Status(name, Error(ErrorCode.SmartModuleInvalid, (str(e), None)),
                             f"SmartModule '{name}': {e}")
    if req.label == "Processor" and (err := spec_error(spec, name)):
        return sa.Status(name, Error.other(err), err)
    if name in store:
        code = {"SmartModule": ErrorCode.SmartModuleError, "TableFormat": ErrorCode.TableFormatAlreadyExists,
                "CustomSpu": ErrorCode.SpuAlreadyExists}.get(req.label, ErrorCode.Other)
        err = Error(code) if code != ErrorCode.Other else Error.other(f"{req.label} '{name}' already exists")
        return sa.Status(name, err, f"{req.label} '{name}' already exists")
    if req.label == "CustomSpu" and any(o.spec.id == spec.id for o in store.values()):
        return sa.Status(name, Error(ErrorCode.SpuAlreadyExists), f"SPU id {spec.id} already registered")
    if not common.dry_run:
        labels = state.handle(ctl.ObjectCreated(req.label, name, spec))
        await state.wait_watchers_synced(labels)
    return sa.Status.new_ok(name)


async def wait_partitions_online(state: ScState, names: list[str], timeout: float) -> int:
    def online() -> int:
        return sum(1 for n in names if (p := state.partitions.get(n)) is not None
                   and p.status.resolution == so.PartitionResolution.Online)

    with trio.move_on_after(timeout):
        while online() < len(names):
            await state.wait_changed("Partition")
    return online()


# ----------------------------------------------------------------------------------- delete


@_saving
async def handle_delete(state: ScState, conn, header, req: sa.ObjectApiDeleteRequest):
    key, force = req.request.key, req.request.force
    if req.label == "Topic":
        t = state.topics.get(key)
        if t is None:
            return sa.Status(key, Error(ErrorCode.TopicNotFound), "not found")
        if t.spec.system and not force:
            return sa.Status(key, Error(ErrorCode.SystemSpecDeletionAttempt, ("topic", key)), None)
        state.handle(ctl.TopicDeleted(key))
        await state.wait_watchers_synced(("Topic", "Partition"))
        return sa.Status.new_ok(key)
    store = state.stores.get(req.label)
    if store is None:
        return _unknown_type("delete error")
    name = key
    if req.label == "CustomSpu" and isinstance(key, int):
        name = next((o.name for o in store.values() if o.spec.id == key), None)
    if name is None or name not in store:
        code = {"SmartModule": Error(ErrorCode.SmartModuleNotFound, (str(key),)),
                "TableFormat": Error(ErrorCode.TableFormatNotFound),
                "CustomSpu": Error(ErrorCode.SpuNotFound)}.get(req.label, Error.other("not found"))
        return sa.Status(str(key), code, "not found")
    labels = state.handle(ctl.ObjectDeleted(req.label, name))
    await state.wait_watchers_synced(labels)
    return sa.Status.new_ok(str(key))


# ------------------------------------------------------------------------------------- list


def _metadata(obj) -> so.Metadata:
    return so.Metadata(obj.name, obj.spec, obj.status)


def list_objects(state: ScState, label: str, filters: list[str], summary: bool, system: bool):
    if label == "Mirror":
        return []
    objs = state.stores[label].values()
    if label in ("Topic", "Partition"):
        objs = [o for o in objs if bool(o.spec.system) == system]
    if label != "Partition" and filters:
        objs = [o for o in objs if any(f in o.name for f in filters)]
    items = [_metadata(o) for o in sorted(objs, key=lambda o: o.name)]
    return [m.summarized() for m in items] if summary else items


async def handle_list(state: ScState, conn, header, req: sa.ObjectApiListRequest):
    r = req.request
    items = list_objects(state, req.label, r.filter_names(), r.summary, r.system)
    return sa.ObjectApiListResponse(req.label, items)


# ------------------------------------------------------------------------------------ watch


async def handle_watch(state: ScState, conn, header, req: sa.ObjectApiWatchRequest):
    label = req.label
    if label not in state.stores:
        return Refusal(Error.other("Not Valid Watch Request"))
    store = state.stores[label]
    summary = req.request.summary
    wid, sent = state.add_watcher(label)
    try:
        first = True
        while True:
            ch = store.changes_since(sent[0])
            metas = [_metadata(o) for o in ch.updates]
            if summary:
                metas = [m.summarized() for m in metas]
            if ch.full:
                update = sa.MetadataUpdate(ch.epoch, [], metas)
                if not metas and label in _DUMMY:
                    update.changes = [sa.Message(sa.MsgType.DELETE, _DUMMY[label]())]
            else:
                changes = [sa.Message(sa.MsgType.UPDATE, m) for m in metas]
                changes += [sa.Message(sa.MsgType.DELETE, _metadata(o)) for o in ch.deletes]
                update = sa.MetadataUpdate(ch.epoch, changes, [])
            if first or update.changes or update.all:
                await send_reply(conn, header, sa.ObjectApiWatchResponse(label, update))
            first = False
            sent[0] = ch.epoch
            state.watch_progress()
            if store.epoch == sent[0]:
                await state.wait_changed(label)
    finally:
        state.remove_watcher(wid)


# ----------------------------------------------------------------------------------- update


@_saving
async def handle_update(state: ScState, conn, header, req: sa.ObjectApiUpdateRequest):
    key, action = req.request.key, req.request.action
    if req.label == "Processor":
        if key not in state.stores["Processor"]:
            return sa.Status(key, Error.other(f"processor {key!r} not found"), "not found")
        state.handle(ctl.ProcessorStatusSet(key, action.status))
        return sa.Status.new_ok(key)
    if req.label != "Topic" or not isinstance(action, (so.AddPartition, so.SetReplicationConfig,
                                                       so.SetCleanupConfig, so.SetContentType)):
        return sa.Status(str(key), Error.other("update not supported for this object"), None)
    t = state.topics.get(key)
    if t is None:
        return sa.Status(key, Error(ErrorCode.TopicNotFound), "not found")
    if isinstance(action, (so.SetReplicationConfig, so.SetCleanupConfig, so.SetContentType)):
        event = (ctl.CleanupConfigured(key, action) if isinstance(action, so.SetCleanupConfig) else
                 ctl.ContentTypeConfigured(key, action.content_type)
                 if isinstance(action, so.SetContentType) else
                 ctl.ReplicationConfigured(key, action.min_isr, action.unclean_leader_election))
        try:
            state.handle(event)
        except ctl.CreateError as e:
            return sa.Status(key, e.error, e.message)
        return sa.Status.new_ok(key)
    try:
        names = state.handle(ctl.PartitionsAdded(key, action.count))
    except ctl.CreateError as e:
        return sa.Status(key, e.error, e.message)
    await wait_partitions_online(state, names, DEFAULT_CREATE_TIMEOUT_MS / 1000)
    await state.wait_watchers_synced(("Topic", "Partition"))
    return sa.Status.new_ok(key)


async def handle_allocate_producer_id(state: ScState, conn, header,
                                      req: pa.AllocateProducerIdRequest):
    """A fresh idempotent-producer id at epoch 0 (``fluvial.sc.producer_ids``)."""
    ids = getattr(state, "producer_ids", None)
    if ids is None:
        return pa.AllocateProducerIdResponse(Error.other("this SC hands out no producer ids"))
    try:
        return pa.AllocateProducerIdResponse(Error(), ids.allocate(), 0)
    except OSError as e:
        log.error("cannot record a block of producer ids: %s", e)
        return pa.AllocateProducerIdResponse(Error(ErrorCode.StorageError))


async def handle_topic_settings(state: ScState, conn, header, req: ts.TopicSettingsRequest):
    """A topic's fluvial-only settings a client needs (its content type)."""
    t = state.topics.get(req.topic)
    if t is None:
        return ts.TopicSettingsResponse(Error(ErrorCode.TopicNotFound))
    return ts.TopicSettingsResponse(Error(), t.meta.content_type)


HANDLERS = {
    pa.ALLOCATE_PRODUCER_ID_KEY: handle_allocate_producer_id,
    ts.TOPIC_SETTINGS_KEY: handle_topic_settings,
    sa.ScApiKey.Create: handle_create,
    sa.ScApiKey.Delete: handle_delete,
    sa.ScApiKey.List: handle_list,
    sa.ScApiKey.Watch: handle_watch,
    sa.ScApiKey.Update: handle_update,
}
REGISTRY = ApiRegistry(REQUESTS, sa.SC_API_VERSIONS, decode=decode, refuse=refuse)
LIMITS = RequestLimits(MAX_REQUEST_BYTES, {sa.ScApiKey.Create: MAX_CREATE_BYTES})
