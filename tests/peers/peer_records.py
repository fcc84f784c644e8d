"""What the Python peers share: JSON-lines records of what happened, and AE title / UID text.

Imported by the pynetdicom peer scripts beside it (Python puts a script's own folder first on
its import path).
"""

from __future__ import annotations

import json
import threading
from typing import Any


class Recorder:
    """Writes one JSON object per line, safely from any thread: appended to `path` when given,
    and printed on stdout too when `echo` is set."""

    def __init__(self, path: str | None, echo: bool = False) -> None:
        self._lock = threading.Lock()
        self._echo = echo
        self._file = open(path, "a", encoding="utf-8") if path else None

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True)
        with self._lock:
            if self._echo:
                print(line, flush=True)
            if self._file is not None:
                self._file.write(line + "\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def text(value: Any, strip: bool = False) -> str | None:
    """A pynetdicom value (bytes or str) as text; `strip` removes DICOM padding."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    value = str(value)
    return value.strip(" \x00") if strip else value
