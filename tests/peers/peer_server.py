"""What the pynetdicom SCP peers share: serving until SIGTERM/SIGINT, the records of an
association (its presentation contexts, how it ended, a C-STORE) and writing a received
instance under its SOP Instance UID.

Imported by the peer scripts beside it, as peer_records.py is.
"""

from __future__ import annotations

import argparse
import re
import signal
import threading
from pathlib import Path
from typing import Any, Callable

from pynetdicom import AE, evt
from peer_records import Recorder, text


def scp_arguments(doc: str, ae_title: str) -> argparse.ArgumentParser:
    """A parser described by the first line of `doc`, with the options every SCP peer takes:
    --port (required), --bind (127.0.0.1), --ae-title (`ae_title`) and --record."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--ae-title", default=ae_title)
    parser.add_argument("--record", help="append JSON lines describing each event to this file")
    return parser


def announce_ready() -> None:
    """Says on stdout (flushed) that the socket listens: what the tests wait for."""
    print("READY", flush=True)


def serve_until_stopped(
    ae: AE,
    address: tuple[str, int],
    handlers: list[tuple[Any, Callable[..., Any]]],
    announce: Callable[[], None] = announce_ready,
    recorder: Recorder | None = None,
    **server_options: Any,
) -> int:
    """Starts `ae` listening on `address` with `handlers` (and `server_options`, such as
    ssl_context), calls `announce` once the socket listens, serves until SIGTERM or SIGINT, then
    shuts the server down and closes `recorder`. Returns the exit status, 0."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = ae.start_server(address, block=False, evt_handlers=handlers, **server_options)
    announce()
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.shutdown()
        if recorder is not None:
            recorder.close()
    return 0


def end_handlers(recorder: Recorder, strip: bool = False) -> list[tuple[Any, Callable[..., Any]]]:
    """Handlers recording {"event": "released" | "aborted", "calling_ae"} when an association
    ends; `strip` removes the padding of the AE title."""

    def recording(name: str) -> Callable[[Any], None]:
        def record(event: Any) -> None:
            calling_ae = text(event.assoc.requestor.ae_title, strip=strip)
            recorder.write({"event": name, "calling_ae": calling_ae})

        return record

    return [(evt.EVT_RELEASED, recording("released")), (evt.EVT_ABORTED, recording("aborted"))]


def context_records(assoc: Any, strip: bool = False) -> dict[str, list[dict[str, Any]]]:
    """The accepted and rejected presentation contexts of `assoc`, as the "accepted" records
    carry them."""
    return {
        "accepted_contexts": [
            {
                "context_id": cx.context_id,
                "abstract_syntax": text(cx.abstract_syntax, strip=strip),
                "transfer_syntax": text(cx.transfer_syntax[0], strip=strip),
            }
            for cx in assoc.accepted_contexts
        ],
        "rejected_contexts": [
            {
                "context_id": cx.context_id,
                "abstract_syntax": text(cx.abstract_syntax, strip=strip),
                "result": cx.result,
            }
            for cx in assoc.rejected_contexts
        ],
    }


def c_store_record(event: Any, status: int) -> dict[str, Any]:
    """The record of a C-STORE answered with `status`: who sent it, on which context, which
    instance, and the Move Originator of a C-MOVE sub-operation."""
    request = event.request
    originator_id = request.MoveOriginatorMessageID
    return {
        "event": "c-store",
        "calling_ae": text(event.assoc.requestor.ae_title, strip=True),
        "called_ae": text(event.assoc.requestor.primitive.called_ae_title, strip=True),
        "message_id": int(request.MessageID),
        "context_id": event.context.context_id,
        "sop_class_uid": text(request.AffectedSOPClassUID, strip=True),
        "sop_instance_uid": text(request.AffectedSOPInstanceUID, strip=True) or "",
        "transfer_syntax": text(event.context.transfer_syntax, strip=True),
        "move_originator_aet": text(request.MoveOriginatorApplicationEntityTitle, strip=True),
        "move_originator_id": int(originator_id) if originator_id is not None else None,
        "status": status,
    }


def stored_file_name(sop_instance_uid: str) -> str:
    """`<SOP Instance UID>.dcm`, with whatever is not a UID character replaced, so that no UID
    names a path outside the output folder."""
    name = re.sub(r"[^0-9A-Za-z.-]", "_", sop_instance_uid)[:128]
    return (name if name not in ("", ".", "..") else "_") + ".dcm"


def write_received(path: Path, event: Any) -> int:
    """Writes the instance of a C-STORE event as received (File Meta Information + the data
    set bytes in the negotiated transfer syntax) to `path`, through a temporary file so that
    no half-written file is ever seen there; returns how many bytes it wrote."""
    encoded = event.encoded_dataset()
    temporary = path.with_name(path.name + ".part")
    temporary.write_bytes(encoded)
    temporary.replace(path)
    return len(encoded)
