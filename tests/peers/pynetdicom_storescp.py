#!/usr/bin/env python3
"""A pynetdicom 3.0 Storage SCP (and Verification SCP) used as a real peer by dimsum's tests.

It accepts every storage SOP class pynetdicom knows, in the transfer syntaxes given with
--accept-ts (repeatable; default: explicit VR LE, implicit VR LE, explicit VR BE, deflated
explicit VR LE and the common encapsulated ones), writes each received instance exactly as
received (File Meta Information + the data set bytes in the negotiated transfer syntax) to
--output/<SOP Instance UID>.dcm, and records one JSON object per line in --record:

  {"event": "accepted", "calling_ae", "called_ae",
   "accepted_contexts": [{"context_id", "abstract_syntax", "transfer_syntax"}], ...}
  {"event": "c-store", "calling_ae", "called_ae", "message_id", "context_id",
   "sop_class_uid", "sop_instance_uid", "transfer_syntax", "move_originator_aet",
   "move_originator_id", "path", "bytes", "status"}
  {"event": "released" | "aborted", "calling_ae"}

It prints "READY" on stdout (flushed) once the socket listens and stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from pynetdicom import AE, AllStoragePresentationContexts, debug_logger, evt
from pynetdicom.sop_class import Verification
from peer_records import Recorder, text


def stripped(value):
    return text(value, strip=True)

DEFAULT_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
]
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700




def file_name(sop_instance_uid: str) -> str:
    name = re.sub(r"[^0-9A-Za-z.-]", "_", sop_instance_uid)[:128]
    return name if name not in ("", ".", "..") else "_"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--ae-title", default="PYNETDICOM")
    parser.add_argument("--output", type=Path, required=True, help="folder for received files")
    parser.add_argument(
        "--accept-ts",
        action="append",
        default=[],
        metavar="UID",
        help="accept only these transfer syntaxes (repeatable, or comma-separated)",
    )
    parser.add_argument("--max-pdu", type=int, default=16382, help="maximum PDU we receive")
    parser.add_argument("--record", help="append JSON lines describing each event to this file")
    parser.add_argument("--debug", action="store_true", help="pynetdicom debug log on stderr")
    args = parser.parse_args()

    if args.debug:
        debug_logger()
    else:
        logging.basicConfig(level=logging.WARNING, format="%(levelname).1s: %(message)s")

    syntaxes = [uid for value in args.accept_ts for uid in value.split(",") if uid]
    syntaxes = syntaxes or DEFAULT_TRANSFER_SYNTAXES
    args.output.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(args.record)

    def on_accepted(event: Any) -> None:
        assoc = event.assoc
        recorder.write(
            {
                "event": "accepted",
                "calling_ae": stripped(assoc.requestor.ae_title),
                "called_ae": stripped(assoc.requestor.primitive.called_ae_title),
                "requestor_max_pdu": assoc.requestor.maximum_length,
                "accepted_contexts": [
                    {
                        "context_id": cx.context_id,
                        "abstract_syntax": stripped(cx.abstract_syntax),
                        "transfer_syntax": stripped(cx.transfer_syntax[0]),
                    }
                    for cx in assoc.accepted_contexts
                ],
                "rejected_contexts": [
                    {
                        "context_id": cx.context_id,
                        "abstract_syntax": stripped(cx.abstract_syntax),
                        "result": cx.result,
                    }
                    for cx in assoc.rejected_contexts
                ],
            }
        )

    def on_store(event: Any) -> int:
        request = event.request
        sop_instance_uid = stripped(request.AffectedSOPInstanceUID) or ""
        path = args.output / file_name(sop_instance_uid)
        path = path.with_name(path.name + ".dcm")
        status = SUCCESS
        size = 0
        try:
            # the File Meta Information plus the data set bytes exactly as received
            encoded = event.encoded_dataset()
            temporary = path.with_name(path.name + ".part")
            temporary.write_bytes(encoded)
            temporary.replace(path)
            size = len(encoded)
        except OSError as error:
            logging.error("cannot store %s: %s", sop_instance_uid, error)
            status = OUT_OF_RESOURCES
        originator_id = request.MoveOriginatorMessageID
        recorder.write(
            {
                "event": "c-store",
                "calling_ae": stripped(event.assoc.requestor.ae_title),
                "called_ae": stripped(event.assoc.requestor.primitive.called_ae_title),
                "message_id": int(request.MessageID),
                "context_id": event.context.context_id,
                "sop_class_uid": stripped(request.AffectedSOPClassUID),
                "sop_instance_uid": sop_instance_uid,
                "transfer_syntax": stripped(event.context.transfer_syntax),
                "move_originator_aet": stripped(request.MoveOriginatorApplicationEntityTitle),
                "move_originator_id": int(originator_id) if originator_id is not None else None,
                "path": str(path),
                "bytes": size,
                "status": status,
            }
        )
        return status

    def on_echo(event: Any) -> int:
        return SUCCESS

    def on_released(event: Any) -> None:
        recorder.write({"event": "released", "calling_ae": stripped(event.assoc.requestor.ae_title)})

    def on_aborted(event: Any) -> None:
        recorder.write({"event": "aborted", "calling_ae": stripped(event.assoc.requestor.ae_title)})

    ae = AE(ae_title=args.ae_title)
    ae.maximum_pdu_size = args.max_pdu
    ae.maximum_associations = 16
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, syntaxes)

    handlers = [
        (evt.EVT_ACCEPTED, on_accepted),
        (evt.EVT_C_STORE, on_store),
        (evt.EVT_C_ECHO, on_echo),
        (evt.EVT_RELEASED, on_released),
        (evt.EVT_ABORTED, on_aborted),
    ]

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    server = ae.start_server((args.bind, args.port), block=False, evt_handlers=handlers)
    print("READY", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.shutdown()
        recorder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
