"""The streams gateway: iii's real-time streams over WebSocket, durable on fluvial's log
(``docs/gateway.md``). ``model``, ``frames``, ``registry`` and ``http`` are pure; ``server`` and
``hooks`` run them on trio."""
