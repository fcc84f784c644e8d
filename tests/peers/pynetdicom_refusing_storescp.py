#!/usr/bin/env python3
"""A pynetdicom 3.0 Storage SCP that refuses chosen instances: a C-MOVE destination for dimsum's
sub-operation failure tests (PS3.4 C.4.2.3.1: a refused C-STORE sub-operation is counted as
failed and named in the Failed SOP Instance UID List).

Every storage SOP class is accepted in Explicit and Implicit VR Little Endian. A C-STORE whose
Affected SOP Instance UID was given with --refuse (repeatable) is answered with --status
(default 0xA700, Out of Resources) and not stored; any other is written as received (File Meta
Information + the data set) to --output/<SOP Instance UID>.dcm and answered 0x0000. One JSON
object per line goes to --record:

  {"event": "c-store", "calling_ae", "called_ae", "message_id", "context_id",
   "sop_class_uid", "sop_instance_uid", "transfer_syntax", "move_originator_aet",
   "move_originator_id", "status"}

It prints "READY" on stdout (flushed) once the socket listens and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification
from peer_records import Recorder, text
from peer_server import (
    c_store_record,
    scp_arguments,
    serve_until_stopped,
    stored_file_name,
    write_received,
)

SUCCESS = 0x0000
TRANSFER_SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]


def main() -> int:
    parser = scp_arguments(__doc__, "REFUSER")
    parser.add_argument("--output", type=Path, required=True, help="folder for stored files")
    parser.add_argument("--refuse", action="append", default=[], metavar="UID",
                        help="refuse the C-STORE of this SOP Instance UID (repeatable)")
    parser.add_argument("--status", type=lambda value: int(value, 0), default=0xA700,
                        help="the status of a refused C-STORE (default 0xA700)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname).1s: %(message)s")

    refused = set(args.refuse)
    args.output.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(args.record)

    def on_store(event: Any) -> int:
        uid = text(event.request.AffectedSOPInstanceUID, strip=True) or ""
        status = args.status if uid in refused else SUCCESS
        if status == SUCCESS:
            write_received(args.output / stored_file_name(uid), event)
        recorder.write(c_store_record(event, status))
        return status

    ae = AE(ae_title=args.ae_title)
    ae.maximum_associations = 16
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)

    handlers = [(evt.EVT_C_STORE, on_store), (evt.EVT_C_ECHO, lambda event: SUCCESS)]
    return serve_until_stopped(ae, (args.bind, args.port), handlers, recorder=recorder)


if __name__ == "__main__":
    sys.exit(main())
