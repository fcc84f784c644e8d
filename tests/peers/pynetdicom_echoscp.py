#!/usr/bin/env python3
"""A pynetdicom 3.0 Verification SCP used as a real peer by dimsum's interop tests.

It records one JSON object per line in --record for every event the tests assert on:

  {"event": "accepted", "calling_ae": ..., "called_ae": ..., "requestor_max_pdu": ...,
   "requestor_implementation_class_uid": ..., "requestor_implementation_version_name": ...,
   "requestor_address": ..., "requestor_port": ..., "user_identity": {...} | null,
   "accepted_contexts": [{"context_id", "abstract_syntax", "transfer_syntax"}],
   "rejected_contexts": [{"context_id", "abstract_syntax", "result"}]}
  {"event": "rejected", "calling_ae": ..., "called_ae": ..., "result": ..., "source": ..., "reason": ...}
  {"event": "c-echo", "message_id": ..., "calling_ae": ..., "context_id": ...}
  {"event": "released", "calling_ae": ...}
  {"event": "aborted", "calling_ae": ...}

It prints "READY" on stdout (flushed) once the socket listens and stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import sys
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification
from peer_records import Recorder, set_up_logging, text
from peer_server import context_records, end_handlers, scp_arguments, serve_until_stopped

ALL_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still proposed by some)
]




def _user_identity(assoc: Any) -> dict[str, Any] | None:
    item = assoc.requestor.user_identity
    if item is None:
        return None
    return {
        "type": item.user_identity_type,
        "primary_field": text(item.primary_field),
        "secondary_field": text(item.secondary_field),
        "positive_response_requested": bool(item.positive_response_requested),
    }


def main() -> int:
    parser = scp_arguments(__doc__, "PYNETDICOM")
    parser.add_argument(
        "--require-called-aet",
        action="store_true",
        help="reject associations whose called AE title is not --ae-title",
    )
    parser.add_argument(
        "--max-pdu", type=int, default=16382, help="maximum PDU we receive (0 = unlimited)"
    )
    parser.add_argument("--debug", action="store_true", help="pynetdicom debug log on stderr")
    args = parser.parse_args()

    set_up_logging(args.debug)

    recorder = Recorder(args.record)

    def on_accepted(event: Any) -> None:
        assoc = event.assoc
        requestor = assoc.requestor
        recorder.write(
            {
                "event": "accepted",
                "calling_ae": text(requestor.ae_title),
                "called_ae": text(requestor.primitive.called_ae_title),
                "requestor_address": requestor.address,
                "requestor_port": requestor.port,
                "requestor_max_pdu": requestor.maximum_length,
                "requestor_implementation_class_uid": text(requestor.implementation_class_uid),
                "requestor_implementation_version_name": text(
                    requestor.implementation_version_name
                ),
                "user_identity": _user_identity(assoc),
                **context_records(assoc),
            }
        )

    def on_rejected(event: Any) -> None:
        assoc = event.assoc
        rq = assoc.requestor.primitive
        rj = assoc.acceptor.primitive
        recorder.write(
            {
                "event": "rejected",
                "calling_ae": text(rq.calling_ae_title) if rq is not None else None,
                "called_ae": text(rq.called_ae_title) if rq is not None else None,
                "result": rj.result if rj is not None else None,
                "source": rj.result_source if rj is not None else None,
                "reason": rj.diagnostic if rj is not None else None,
            }
        )

    def on_echo(event: Any) -> int:
        recorder.write(
            {
                "event": "c-echo",
                "message_id": int(event.request.MessageID),
                "calling_ae": text(event.assoc.requestor.ae_title),
                "context_id": event.context.context_id,
            }
        )
        return 0x0000

    ae = AE(ae_title=args.ae_title)
    ae.maximum_pdu_size = args.max_pdu
    ae.require_called_aet = args.require_called_aet
    ae.maximum_associations = 64
    ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)

    handlers = [
        (evt.EVT_ACCEPTED, on_accepted),
        (evt.EVT_REJECTED, on_rejected),
        (evt.EVT_C_ECHO, on_echo),
        *end_handlers(recorder),
    ]
    return serve_until_stopped(ae, (args.bind, args.port), handlers, recorder=recorder)


if __name__ == "__main__":
    sys.exit(main())
