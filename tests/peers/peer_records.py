"""What the Python peers share: JSON-lines records of what happened, and AE title / UID text.

Imported by the pynetdicom peer scripts beside it (Python puts a script's own folder first on
its import path).
"""

from __future__ import annotations

import argparse
import json
import logging
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


def scu_arguments(doc: str, calling: str) -> argparse.ArgumentParser:
    """A parser described by the first line of `doc`, with what every SCU peer takes: the
    peer's host and port, --calling (our AE title, `calling`) and --called (ANY-SCP)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--calling", default=calling, help="our (calling) AE title")
    parser.add_argument("--called", default="ANY-SCP", help="the peer's (called) AE title")
    return parser


def set_up_logging(debug: bool) -> None:
    """pynetdicom's debug log on stderr with `debug`, else its warnings and errors, one letter
    for the level."""
    if debug:
        from pynetdicom import debug_logger

        debug_logger()
    else:
        logging.basicConfig(level=logging.WARNING, format="%(levelname).1s: %(message)s")
