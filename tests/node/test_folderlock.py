"""One process per data folder: a second node (in-process or a real `shoal node` or
`shoal serve`) on a folder in use is refused at once, and the folder is free again once
the first has closed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from nodetest import NodeProcess

from node.errors import InvalidArgument
from node.local import LocalNode


async def test_a_data_folder_opens_in_one_node_at_a_time(scratch: Path) -> None:
    first = await LocalNode.open(scratch / "data")
    try:
        with pytest.raises(InvalidArgument, match="in use by another node"):
            await LocalNode.open(scratch / "data")
    finally:
        await first.close()
    again = await LocalNode.open(scratch / "data")
    await again.close()


@pytest.mark.parametrize("command", [["node", "--listen", "127.0.0.1:0"],
                                     ["serve", "--listen", "127.0.0.1:0"]])
def test_a_second_process_on_a_data_folder_in_use_stops_with_one_line(
        proc: NodeProcess, command: list[str]) -> None:
    proc.start()
    second = subprocess.run(
        [sys.executable, "-m", "shoal", command[0], "--data", str(proc.data), *command[1:]],
        capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "in use by another node" in second.stderr
    assert "Traceback" not in second.stderr
    assert proc.proc is not None and proc.proc.poll() is None  # the first goes on
