"""Worker <-> broker framing (zguide's Paranoid Pirate, Majordomo-style routing): the one definition.

Every message between a worker's DEALER and the broker's backend ROUTER is ``[WORKER_PROTO,
command, ...]`` (the broker's ROUTER puts the worker's identity in front)::

    READY       worker -> broker   [capabilities JSON]                         once per connection
    REQUEST     broker -> worker   [client envelope, client identity, request frames...]
    REPLY       worker -> broker   [client envelope, reply frames...]
    HEARTBEAT   both ways          []
    DISCONNECT  both ways          []                                          a clean stop

The client identity is what the broker knows of the sender (its CURVE key name, or its address),
so a worker can keep per-client budgets and log who asked.
"""

from __future__ import annotations

WORKER_PROTO = b"CPW2"  # 2: REQUEST carries the client's identity
READY, REQUEST, REPLY, HEARTBEAT, DISCONNECT = b"\x01", b"\x02", b"\x03", b"\x04", b"\x05"

BROKER_ENVELOPE = b"broker"  # the envelope of the requests the broker makes itself (a job's restart)
RETRY_PREFIX = "broker-retry-"  # request id prefix of those requests
