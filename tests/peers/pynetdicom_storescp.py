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

import logging
import sys
from pathlib import Path
from typing import Any

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification
from peer_records import Recorder, set_up_logging, text
from peer_server import (
    c_store_record,
    context_records,
    end_handlers,
    scp_arguments,
    serve_until_stopped,
    stored_file_name,
    write_received,
)

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


def main() -> int:
    parser = scp_arguments(__doc__, "PYNETDICOM")
    parser.add_argument("--output", type=Path, required=True, help="folder for received files")
    parser.add_argument(
        "--accept-ts",
        action="append",
        default=[],
        metavar="UID",
        help="accept only these transfer syntaxes (repeatable, or comma-separated)",
    )
    parser.add_argument("--max-pdu", type=int, default=16382, help="maximum PDU we receive")
    parser.add_argument("--debug", action="store_true", help="pynetdicom debug log on stderr")
    args = parser.parse_args()

    set_up_logging(args.debug)

    syntaxes = [uid for value in args.accept_ts for uid in value.split(",") if uid]
    syntaxes = syntaxes or DEFAULT_TRANSFER_SYNTAXES
    args.output.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(args.record)

    def on_accepted(event: Any) -> None:
        assoc = event.assoc
        recorder.write(
            {
                "event": "accepted",
                "calling_ae": text(assoc.requestor.ae_title, strip=True),
                "called_ae": text(assoc.requestor.primitive.called_ae_title, strip=True),
                "requestor_max_pdu": assoc.requestor.maximum_length,
                **context_records(assoc, strip=True),
            }
        )

    def on_store(event: Any) -> int:
        sop_instance_uid = text(event.request.AffectedSOPInstanceUID, strip=True) or ""
        path = args.output / stored_file_name(sop_instance_uid)
        status = SUCCESS
        size = 0
        try:
            size = write_received(path, event)
        except OSError as error:
            logging.error("cannot store %s: %s", sop_instance_uid, error)
            status = OUT_OF_RESOURCES
        recorder.write({**c_store_record(event, status), "path": str(path), "bytes": size})
        return status

    def on_echo(event: Any) -> int:
        return SUCCESS

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
        *end_handlers(recorder, strip=True),
    ]
    return serve_until_stopped(ae, (args.bind, args.port), handlers, recorder=recorder)


if __name__ == "__main__":
    sys.exit(main())
