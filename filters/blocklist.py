"""Documents flagged by training (`factory trace --blocklist`, after review): their ids, dropped at ingest."""

from __future__ import annotations

from pathlib import Path

from datafactory.filters.url import read_list

FLAGGED_BY_TRAINING = "flagged_by_training"


class DocumentBlocklist:
    """The doc_ids of every list file (one per line, `#` comments); relative paths resolve against base_dir."""

    def __init__(self, paths: list[str], base_dir: str | Path = ".") -> None:
        self.ids = frozenset(entry for path in paths for entry in read_list(Path(base_dir) / path))

    def blocks(self, doc_id: str) -> bool:
        return doc_id in self.ids
