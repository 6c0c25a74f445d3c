"""Fluvio's wire protocol, v0.17.3. Pure: no trio, sockets, ssl or file I/O in this package."""

PLATFORM_VERSION = "0.17.3"
