"""Mint development certificates for a TLS-enabled fluvial cluster.

    python certs/mint.py OUTDIR [--domain fluvial.local] [--spu NAME ...] [--client CN ...] [--host H ...]

Writes a CA, the server certificate for the SC and SPU public ports, member certificates for
SC <-> SPU traffic and client certificates into OUTDIR, by calling
``fluvial.tls_certs.mint_cluster_certs``. certs/README.md describes every file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from fluvial.tls_certs import DEFAULT_DOMAIN, DEFAULT_SPU_NAMES, DEFAULT_VALID_DAYS, mint_cluster_certs
except ImportError:  # run from a source checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fluvial.tls_certs import DEFAULT_DOMAIN, DEFAULT_SPU_NAMES, DEFAULT_VALID_DAYS, mint_cluster_certs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path, help="directory to write the certificates into (created if missing)")
    parser.add_argument("--domain", default=DEFAULT_DOMAIN,
                        help=f"the TLS domain clients configure (default: {DEFAULT_DOMAIN})")
    parser.add_argument("--spu", action="append", dest="spus", metavar="NAME",
                        help=f"an SPU name to mint a member certificate for; repeatable "
                             f"(default: {', '.join(DEFAULT_SPU_NAMES)})")
    parser.add_argument("--client", action="append", dest="clients", metavar="CN",
                        help="a client principal to mint a certificate for; repeatable (default: admin)")
    parser.add_argument("--host", action="append", dest="hosts", default=[], metavar="HOST",
                        help="an extra DNS name or IP address for the server certificate; repeatable")
    parser.add_argument("--days", type=int, default=DEFAULT_VALID_DAYS,
                        help=f"validity in days (default: {DEFAULT_VALID_DAYS})")
    args = parser.parse_args(argv)
    try:
        paths = mint_cluster_certs(
            args.outdir,
            domain=args.domain,
            spu_names=tuple(args.spus or DEFAULT_SPU_NAMES),
            client_cns=tuple(args.clients or ("admin",)),
            extra_hosts=tuple(args.hosts),
            valid_days=args.days,
        )
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for key, path in paths.items():
        print(f"{key:<28} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
