"""What a push or pull shows: a bar per blob (bytes, speed, time left), blobs skipped
because they were already there, and a summary of what moved and what dedup saved."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from shoal.sizes import format_size


@dataclass
class Tally:
    """What a transfer did, for the summary and `--json`."""

    reference: str
    digest: str = ""
    blobs_sent: int = 0
    bytes_sent: int = 0
    blobs_present: int = 0        # dedup hits: already there (HEAD or local file)
    blobs_mounted: int = 0        # dedup hits by cross-repository mount
    bytes_saved: int = 0
    manifests: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)


class Board:
    """Progress bars on stderr (only on a terminal), the summary on stdout."""

    def __init__(self, verb: str, quiet: bool = False) -> None:
        self.verb = verb
        self.err = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
            TransferSpeedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[note]}"),
            console=self.err, disable=quiet, transient=False)
        # Shown from the first blob on: a transfer that fails before any leaves no blank.
        self._shown = False

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._shown:
            self.progress.stop()

    def _show(self) -> None:
        if not self._shown:
            self._shown = True
            self.progress.start()

    def start(self, digest: str, total: int) -> TaskID:
        self._show()
        return self.progress.add_task(digest[7:19], total=total, note="")

    def advance(self, task: TaskID, amount: int) -> None:
        self.progress.advance(task, amount)

    def done(self, task: TaskID, note: str) -> None:
        total = self.progress.tasks[task].total or 0
        self.progress.update(task, completed=total, note=note)

    def skipped(self, digest: str, total: int, note: str) -> None:
        self._show()
        self.progress.add_task(digest[7:19], total=total, completed=total,
                               note=f"[green]{note}[/green]")

    def summary(self, tally: Tally, as_json: bool) -> None:
        if as_json:
            print(json.dumps(asdict(tally), indent=2))
            return
        out = Console(highlight=False, soft_wrap=True)
        hits = tally.blobs_present + tally.blobs_mounted
        out.print(f"{self.verb} {tally.reference} ({tally.digest}) in {tally.seconds:.1f} s")
        out.print(f"  blobs transferred: {tally.blobs_sent} ({format_size(tally.bytes_sent)})")
        mounted = f", {tally.blobs_mounted} mounted" if tally.blobs_mounted else ""
        out.print(f"  already present: {hits} blobs{mounted} "
                  f"({format_size(tally.bytes_saved)} not transferred)")
        out.print(f"  manifests: {tally.manifests}")
