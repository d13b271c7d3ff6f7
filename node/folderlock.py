"""One process per data folder: an exclusive `flock` on a `lock` file inside it, held until
released (or the process ends, when the kernel drops it). Two nodes on one data folder
would append to the same pack files from two views of it; two edges on one cache folder
would write over each other's segments."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from node.errors import InvalidArgument


def lock_folder(folder: Path, whose: str) -> int:
    """Create `folder` if need be and lock it; the descriptor to pass to `release`.
    InvalidArgument, naming `whose` (a node, an edge), when another process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InvalidArgument(f"{folder} is in use by another {whose}") from None
    return fd


def release(fd: int) -> None:
    os.close(fd)  # the flock goes with the last descriptor of its open file
