#!/usr/bin/env python3
"""A pynetdicom 3.0 Storage SCP and Storage Commitment Push Model SCP used as a real peer by
dimsum's tests.

It stores (in memory) every instance sent to it, and answers a Storage Commitment request
(N-ACTION-RQ) with 0x0000, then reports (N-EVENT-REPORT-RQ) every instance it holds under the
SOP class asked for as committed, one held under another class as failed with 0x0119 and any
other (and those given with --forget) as failed with 0x0112. The report goes on the request's
association (--report same, the default) or on a new association to the requestor's AE title
at the address given with --peer AE=HOST:PORT, proposing the SCP role (--report new). It
records one JSON object per line in --record:

  {"event": "c-store", ...}  (as peer_server.c_store_record)
  {"event": "n-action", "calling_ae", "transaction_uid", "references": [[class, instance]]}
  {"event": "n-event-report", "mode": "same" | "new", "status": int | null,
   "event_type", "transaction_uid", "committed", "failed"}
  {"event": "released" | "aborted", "calling_ae"}

It prints "READY" on stdout (flushed) once the socket listens and stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from pynetdicom import AE, AllStoragePresentationContexts, build_role, evt
from commitment_peer import (
    STORAGE_COMMITMENT_PUSH_MODEL,
    STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
    references,
    report_dataset,
    report_record,
)
from peer_records import Recorder, set_up_logging, text
from peer_server import c_store_record, end_handlers, scp_arguments, serve_until_stopped

TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
]
NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119


def main() -> int:
    parser = scp_arguments(__doc__, "PYCOMMITSCP")
    parser.add_argument("--report", choices=["same", "new"], default="same")
    parser.add_argument(
        "--peer", action="append", default=[], metavar="AE=HOST:PORT",
        help="where a requestor's reports go with --report new (repeatable)",
    )
    parser.add_argument(
        "--forget", action="append", default=[], metavar="UID",
        help="an instance to report as not held even once stored (repeatable)",
    )
    parser.add_argument("--debug", action="store_true", help="pynetdicom debug log on stderr")
    args = parser.parse_args()
    set_up_logging(args.debug)

    peers = {}
    for peer in args.peer:
        ae_title, _, address = peer.partition("=")
        host, _, port = address.rpartition(":")
        peers[ae_title] = (host, int(port))
    recorder = Recorder(args.record)
    stored: dict[str, str] = {}
    lock = threading.Lock()
    pending: dict[int, tuple[str, Any]] = {}

    def on_store(event: Any) -> int:
        request = event.request
        with lock:
            stored[str(request.AffectedSOPInstanceUID)] = str(request.AffectedSOPClassUID)
        recorder.write(c_store_record(event, 0x0000))
        return 0x0000

    def outcome(sop_class: str, sop_instance: str) -> int | None:
        with lock:
            held = stored.get(sop_instance)
        if held is None or sop_instance in args.forget:
            return NO_SUCH_OBJECT_INSTANCE
        return None if held == sop_class else CLASS_INSTANCE_CONFLICT

    def on_action(event: Any) -> tuple[int, None]:
        information = event.action_information
        transaction_uid = str(information.TransactionUID)
        asked = references(information)
        calling_ae = text(event.assoc.requestor.ae_title, strip=True)
        recorder.write(
            {
                "event": "n-action",
                "calling_ae": calling_ae,
                "transaction_uid": transaction_uid,
                "references": asked,
            }
        )
        committed = [pair for pair in asked if outcome(*pair) is None]
        failed = [(c, i, outcome(c, i)) for c, i in asked if outcome(c, i) is not None]
        report = report_dataset(transaction_uid, committed, failed)
        with lock:
            pending[id(event.assoc)] = (calling_ae, report)
        return 0x0000, None

    def send(assoc: Any, report: Any, mode: str) -> None:
        event_type = 2 if "FailedSOPSequence" in report else 1
        status, _ = assoc.send_n_event_report(
            report,
            event_type,
            STORAGE_COMMITMENT_PUSH_MODEL,
            STORAGE_COMMITMENT_PUSH_MODEL_INSTANCE,
        )
        recorder.write(
            {
                "event": "n-event-report",
                "mode": mode,
                "status": int(status.Status) if "Status" in status else None,
                **report_record(event_type, report),
            }
        )

    def report_later(assoc: Any, calling_ae: str, report: Any) -> None:
        # EVT_DIMSE_SENT fires just before the N-ACTION-RSP goes on the wire: let it go first.
        time.sleep(0.3)
        if args.report == "same":
            send(assoc, report, "same")
            return
        host, port = peers[calling_ae]
        reporter = AE(ae_title=args.ae_title)
        reporter.add_requested_context(STORAGE_COMMITMENT_PUSH_MODEL)
        role = build_role(STORAGE_COMMITMENT_PUSH_MODEL, scp_role=True)
        new_assoc = reporter.associate(host, port, ae_title=calling_ae, ext_neg=[role])
        if new_assoc.is_established:
            send(new_assoc, report, "new")
            new_assoc.release()
        else:
            recorder.write({"event": "n-event-report", "mode": "new", "status": None})

    def on_sent(event: Any) -> None:
        if type(event.message).__name__ != "N_ACTION_RSP":
            return
        with lock:
            waiting = pending.pop(id(event.assoc), None)
        if waiting is not None:
            threading.Thread(
                target=report_later, args=(event.assoc, *waiting), daemon=True
            ).start()

    ae = AE(ae_title=args.ae_title)
    ae.maximum_associations = 16
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
    ae.add_supported_context(STORAGE_COMMITMENT_PUSH_MODEL, TRANSFER_SYNTAXES)
    handlers = [
        (evt.EVT_C_STORE, on_store),
        (evt.EVT_N_ACTION, on_action),
        (evt.EVT_DIMSE_SENT, on_sent),
        *end_handlers(recorder, strip=True),
    ]
    return serve_until_stopped(ae, (args.bind, args.port), handlers, recorder=recorder)


if __name__ == "__main__":
    sys.exit(main())
