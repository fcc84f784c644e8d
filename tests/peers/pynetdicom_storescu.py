#!/usr/bin/env python3
"""A pynetdicom 3.0 Storage SCU used as a real peer by dimsum's tests.

    pynetdicom_storescu.py HOST PORT FILE... [--calling AE] [--called AE] [--ts UID ...]
                           [--max-pdu N] [--timeout S]

Sends every FILE over ONE association. Without --ts, it proposes for each SOP class one
presentation context with the transfer syntaxes of that class's files, and sends each file's
data set as stored (no decoding, no conversion). With --ts (repeatable) it proposes only those
transfer syntaxes and lets pynetdicom encode each data set in the accepted one (uncompressed
only).

Prints one JSON object on stdout:
  {"associated": bool, "error": str | null,
   "accepted_contexts": [{"abstract_syntax", "transfer_syntax"}],
   "results": [{"path", "sop_class_uid", "sop_instance_uid", "transfer_syntax",
                "status": int | null, "error_comment": str | null, "error": str | null}]}
Exit code: 0 when every file was stored with status 0x0000, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import pydicom
from peer_records import set_up_logging
from pynetdicom import AE

SUCCESS = 0x0000


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace").strip(" \x00")
    return str(value).strip(" \x00")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--calling", default="PYSTORESCU")
    parser.add_argument("--called", default="ANY-SCP")
    parser.add_argument("--ts", action="append", default=[], metavar="UID")
    parser.add_argument("--max-pdu", type=int, default=16382)
    parser.add_argument("--timeout", type=float, default=30.0, help="ACSE/DIMSE/network timeout")
    parser.add_argument("--debug", action="store_true", help="pynetdicom debug log on stderr")
    args = parser.parse_args()

    set_up_logging(args.debug)

    report: dict[str, Any] = {
        "associated": False,
        "error": None,
        "accepted_contexts": [],
        "results": [],
    }
    headers = []
    for path in args.files:
        meta = pydicom.dcmread(path, stop_before_pixels=True)
        headers.append((path, str(meta.SOPClassUID), str(meta.file_meta.TransferSyntaxUID)))

    ae = AE(ae_title=args.calling)
    ae.maximum_pdu_size = args.max_pdu
    ae.acse_timeout = args.timeout
    ae.dimse_timeout = args.timeout
    ae.network_timeout = args.timeout
    syntaxes_of_class: dict[str, list[str]] = {}
    for _path, sop_class, syntax in headers:
        wanted = args.ts or [syntax]
        known = syntaxes_of_class.setdefault(sop_class, [])
        known.extend(uid for uid in wanted if uid not in known)
    for sop_class, syntaxes in syntaxes_of_class.items():
        ae.add_requested_context(sop_class, syntaxes)

    assoc = ae.associate(args.host, args.port, ae_title=args.called)
    if not assoc.is_established:
        report["error"] = "association rejected, aborted or never connected"
        print(json.dumps(report, indent=1), flush=True)
        return 1
    report["associated"] = True
    report["accepted_contexts"] = [
        {"abstract_syntax": _text(cx.abstract_syntax), "transfer_syntax": _text(cx.transfer_syntax[0])}
        for cx in assoc.accepted_contexts
    ]
    all_stored = True
    try:
        for path, sop_class, syntax in headers:
            result: dict[str, Any] = {
                "path": path,
                "sop_class_uid": sop_class,
                "transfer_syntax": syntax,
                "status": None,
                "error_comment": None,
                "error": None,
            }
            try:
                ds = pydicom.dcmread(path)
                result["sop_instance_uid"] = str(ds.SOPInstanceUID)
                # a path sends the stored bytes as they are; a Dataset lets pynetdicom encode
                status = assoc.send_c_store(ds if args.ts else path)
                if status is not None and "Status" in status:
                    result["status"] = int(status.Status)
                    result["error_comment"] = _text(status.get("ErrorComment"))
                else:
                    result["error"] = "no response (timeout, abort or invalid response)"
            except Exception as error:  # noqa: BLE001 - reported per file
                result["error"] = f"{type(error).__name__}: {error}"
            all_stored = all_stored and result["status"] == SUCCESS
            report["results"].append(result)
            if not assoc.is_established:
                report["error"] = "association ended during the transfer"
                break
    finally:
        if assoc.is_established:
            assoc.release()
    print(json.dumps(report, indent=1), flush=True)
    return 0 if all_stored and len(report["results"]) == len(headers) else 1


if __name__ == "__main__":
    sys.exit(main())
