"""Progress bars for passes that may last: tqdm, shown only after ``PROGRESS_DELAY`` seconds."""
from __future__ import annotations

from typing import Iterable

from tqdm.auto import tqdm

#: Seconds before a progress bar appears (short passes stay silent).
PROGRESS_DELAY = 1.0  # seconds before a bar appears: short passes stay silent


def progress_bar(items: Iterable, progress: bool, desc: str, total: int | None = None) -> Iterable:
    """``items`` wrapped in a tqdm bar when ``progress`` (shown only if the loop lasts over PROGRESS_DELAY s)."""
    if not progress:
        return items
    return tqdm(items, desc=desc, total=total, delay=PROGRESS_DELAY, leave=False)
