#!/usr/bin/env python3
"""A pynetdicom 3.0 Storage Commitment Push Model SCU used as a real peer by dimsum's tests.

It asks HOST:PORT to commit the instances given with --ref CLASS:INSTANCE (an N-ACTION-RQ with
a fresh Transaction UID), then waits up to --timeout seconds for the SCP's N-EVENT-REPORT-RQ,
answering it with 0x0000: on the same association, and, with --listen-port, on a new
association to that port too (accepting the SCP role the reporting SCP proposes). With
--release-after-action it releases as soon as the N-ACTION-RSP is in, so that the report must
come on a new association. It prints ONE JSON object on stdout:

  {"action_status": int | null, "transaction_uid",
   "report": {"event_type", "transaction_uid", "committed": [[class, instance]],
              "failed": [[class, instance, reason]], "on_new_association", "calling_ae"} | null,
   "error": str | null}

Exit status: 0 a report arrived for the transaction; 1 otherwise.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from commitment_peer import (
    REQUEST_STORAGE_COMMITMENT,
    STORAGE_COMMITMENT_PUSH_MODEL,
    STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
    report_record,
)
from peer_records import scu_arguments, set_up_logging, text


def main() -> int:
    parser = scu_arguments(__doc__, "PYCOMMITSCU")
    parser.add_argument(
        "--ref", action="append", required=True, metavar="CLASS:INSTANCE",
        help="an instance to commit (repeatable)",
    )
    parser.add_argument("--listen-port", type=int, help="accept a report on a new association here")
    parser.add_argument("--release-after-action", action="store_true")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--debug", action="store_true", help="pynetdicom debug log on stderr")
    args = parser.parse_args()
    set_up_logging(args.debug)

    transaction_uid = generate_uid()
    outcome: dict[str, Any] = {
        "action_status": None,
        "transaction_uid": transaction_uid,
        "report": None,
        "error": None,
    }
    reported = threading.Event()

    def on_report(event: Any, on_new_association: bool) -> tuple[int, None]:
        record = report_record(event.event_type, event.event_information)
        if record["transaction_uid"] != transaction_uid:
            return 0x0115, None  # invalid argument value: not a transaction of ours
        record["on_new_association"] = on_new_association
        record["calling_ae"] = text(event.assoc.requestor.ae_title, strip=True)
        outcome["report"] = record
        reported.set()
        return 0x0000, None

    ae = AE(ae_title=args.calling)
    ae.acse_timeout = args.timeout
    ae.dimse_timeout = args.timeout
    ae.add_requested_context(STORAGE_COMMITMENT_PUSH_MODEL)
    server = None
    if args.listen_port is not None:
        ae.add_supported_context(STORAGE_COMMITMENT_PUSH_MODEL, scu_role=False, scp_role=True)
        server = ae.start_server(
            ("127.0.0.1", args.listen_port),
            block=False,
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, lambda event: on_report(event, True))],
        )

    action = Dataset()
    action.TransactionUID = transaction_uid
    action.ReferencedSOPSequence = []
    for reference in args.ref:
        sop_class, _, sop_instance = reference.partition(":")
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        action.ReferencedSOPSequence.append(item)

    try:
        assoc = ae.associate(
            args.host,
            args.port,
            ae_title=args.called,
            evt_handlers=[(evt.EVT_N_EVENT_REPORT, lambda event: on_report(event, False))],
        )
        if not assoc.is_established:
            outcome["error"] = "association not established"
        else:
            status, _ = assoc.send_n_action(
                action,
                REQUEST_STORAGE_COMMITMENT,
                STORAGE_COMMITMENT_PUSH_MODEL,
                STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
            )
            outcome["action_status"] = int(status.Status) if "Status" in status else None
            if args.release_after_action:
                assoc.release()
            if outcome["action_status"] == 0x0000:
                reported.wait(args.timeout)
            if assoc.is_established:
                assoc.release()
    finally:
        if server is not None:
            server.shutdown()
    if outcome["report"] is None and outcome["error"] is None:
        outcome["error"] = "no report for the transaction"
    print(json.dumps(outcome, sort_keys=True), flush=True)
    return 0 if outcome["report"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
