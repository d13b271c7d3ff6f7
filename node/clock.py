"""The clock garbage collection reads: milliseconds, injectable so tests can move time
instead of sleeping through a grace period."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

Clock = Callable[[], int]

# How a moment is stored in the index: big-endian milliseconds.
STAMP = struct.Struct(">Q")


def wall_ms() -> int:
    return int(time.time() * 1000)
