"""How jobs are encoded on the Redis queue."""

from __future__ import annotations

from functools import partial

import msgpack

# msgpack, never pickle: anyone able to write to Redis could otherwise run code in the worker.
serialize_job = msgpack.packb
deserialize_job = partial(msgpack.unpackb, raw=False)
