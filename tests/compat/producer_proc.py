"""Produce records with the official ``fluvio`` client from a separate process.

The consuming test process cannot produce from one of its own threads: a blocked consumer ``next()`` holds the
GIL. This script is that other process. It prints, as the last line of stdout, a JSON list with one
``{"partition": p, "offset": o}`` per record, in send order, and exits 0; any client error exits non-zero with
the message on stderr.

Usage::

    python producer_proc.py --endpoint HOST:PORT --topic T --count N [--prefix P] [--key K] [--flush-every M]

Record ``i`` has value ``f"{prefix}-{i}"``; with ``--key`` it is sent with ``send(key, value)``, otherwise with
``send_string``. ``--flush-every M`` flushes after every M records (0 = only at the end), so a consumer sees
several separate pushes.
"""

from __future__ import annotations

import argparse
import os
import json
import sys

import fluvio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", help="SC host:port; the FLV_PROFILE_PATH profile when omitted")
    parser.add_argument("--certs", help="a `fluvial cluster certs` directory: verified mutual TLS")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--prefix", default="rec")
    parser.add_argument("--key")
    parser.add_argument("--flush-every", type=int, default=0)
    args = parser.parse_args(argv)

    if args.endpoint:
        config = fluvio.FluvioConfig.new(args.endpoint)
        if args.certs and os.path.exists(os.path.join(args.certs, "ca.crt")):
            config.set_tls_file_paths("fluvial.local", os.path.join(args.certs, "client-admin.key"),
                                      os.path.join(args.certs, "client-admin.crt"),
                                      os.path.join(args.certs, "ca.crt"))
        client = fluvio.Fluvio.connect_with_config(config)
    else:
        client = fluvio.Fluvio.connect()
    producer = client.topic_producer(args.topic)
    outputs = []
    for i in range(args.count):
        value = f"{args.prefix}-{i}".encode()
        if args.key is None:
            outputs.append(producer.send([], value))
        else:
            outputs.append(producer.send(args.key.encode(), value))
        if args.flush_every and (i + 1) % args.flush_every == 0:
            producer.flush()
    producer.flush()
    report = []
    for output in outputs:
        meta = output.wait()
        report.append({"partition": meta.partition_id(), "offset": meta.offset()})
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
