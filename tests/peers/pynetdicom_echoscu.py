#!/usr/bin/env python3
"""A pynetdicom 3.0 Verification SCU used as a real peer by dimsum's interop tests and bench.

It opens one association, sends --repeat C-ECHO requests (message ids 1..=N), releases (or
aborts with --abort) and prints ONE JSON object on stdout describing what was negotiated:

  established, rejected {result, source, reason} | null, aborted, statuses [..],
  accepted_contexts [{context_id, abstract_syntax, transfer_syntax, result}],
  rejected_contexts [{context_id, abstract_syntax, result}],
  acceptor_ae_title, acceptor_max_pdu, acceptor_implementation_class_uid,
  acceptor_implementation_version_name, user_identity_response | null,
  echo_seconds (time spent on the echoes only), error | null

Exit status: 0 every echo answered 0x0000; 1 a non-success or missing status;
3 association rejected or no context accepted; 5 aborted or failed to connect.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from pynetdicom import AE
from pynetdicom.pdu_primitives import UserIdentityNegotiation
from pynetdicom.sop_class import Verification
from peer_records import scu_arguments, set_up_logging, text

DEFAULT_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
]



def main() -> int:
    parser = scu_arguments(__doc__, "PYECHOSCU")
    parser.add_argument(
        "--max-pdu", type=int, default=16382, help="maximum PDU we receive (0 = unlimited)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="number of C-ECHO requests")
    parser.add_argument(
        "--abstract-syntax",
        action="append",
        help="abstract syntax UID to propose, repeatable (default: Verification)",
    )
    parser.add_argument(
        "--transfer-syntax",
        action="append",
        help="transfer syntax UID proposed in every context, repeatable "
        "(default: explicit LE, implicit LE, explicit BE)",
    )
    parser.add_argument("--username", help="user identity: username (type 1, or 2 with password)")
    parser.add_argument("--password", help="user identity: passcode (makes the type 2)")
    parser.add_argument(
        "--positive-response",
        action="store_true",
        help="ask the acceptor for a positive user identity response",
    )
    parser.add_argument("--abort", action="store_true", help="abort instead of releasing")
    parser.add_argument("--timeout", type=float, default=30.0, help="ACSE/DIMSE/network timeout")
    parser.add_argument("--debug", action="store_true", help="pynetdicom debug log on stderr")
    args = parser.parse_args()

    set_up_logging(args.debug)

    ae = AE(ae_title=args.calling)
    ae.acse_timeout = args.timeout
    ae.dimse_timeout = args.timeout
    ae.network_timeout = args.timeout
    ae.connection_timeout = args.timeout
    transfer_syntaxes = args.transfer_syntax or DEFAULT_TRANSFER_SYNTAXES
    for abstract_syntax in args.abstract_syntax or [Verification]:
        ae.add_requested_context(abstract_syntax, transfer_syntaxes)

    ext_neg = []
    if args.username is not None:
        identity = UserIdentityNegotiation()
        identity.user_identity_type = 2 if args.password is not None else 1
        identity.primary_field = args.username.encode("utf-8")
        if args.password is not None:
            identity.secondary_field = args.password.encode("utf-8")
        identity.positive_response_requested = args.positive_response
        ext_neg.append(identity)

    result: dict[str, Any] = {
        "established": False,
        "rejected": None,
        "aborted": False,
        "statuses": [],
        "accepted_contexts": [],
        "rejected_contexts": [],
        "acceptor_ae_title": None,
        "acceptor_max_pdu": None,
        "acceptor_implementation_class_uid": None,
        "acceptor_implementation_version_name": None,
        "user_identity_response": None,
        "echo_seconds": None,
        "error": None,
    }

    assoc = ae.associate(
        args.host,
        args.port,
        ae_title=args.called,
        max_pdu=args.max_pdu,
        ext_neg=ext_neg or None,
    )
    acceptor = assoc.acceptor
    response = acceptor.primitive
    result["established"] = bool(assoc.is_established)
    if assoc.is_rejected and response is not None:
        result["rejected"] = {
            "result": response.result,
            "source": response.result_source,
            "reason": response.diagnostic,
        }
    if response is not None and response.result == 0x00:
        result["acceptor_ae_title"] = text(response.called_ae_title)
        result["acceptor_max_pdu"] = acceptor.maximum_length
        result["acceptor_implementation_class_uid"] = text(acceptor.implementation_class_uid)
        result["acceptor_implementation_version_name"] = text(
            acceptor.implementation_version_name
        )
        identity_response = acceptor.user_identity
        if identity_response is not None:
            result["user_identity_response"] = text(identity_response.server_response)
        result["accepted_contexts"] = [
            {
                "context_id": cx.context_id,
                "abstract_syntax": text(cx.abstract_syntax),
                "transfer_syntax": text(cx.transfer_syntax[0]),
                "result": cx.result,
            }
            for cx in assoc.accepted_contexts
        ]
        result["rejected_contexts"] = [
            {
                "context_id": cx.context_id,
                "abstract_syntax": text(cx.abstract_syntax),
                "result": cx.result,
            }
            for cx in assoc.rejected_contexts
        ]

    exit_code = 0
    if assoc.is_established:
        verification_accepted = any(
            cx.abstract_syntax == Verification for cx in assoc.accepted_contexts
        )
        if verification_accepted:
            started = time.perf_counter()
            for message_id in range(1, args.repeat + 1):
                status = assoc.send_c_echo(msg_id=message_id)
                if "Status" in status:
                    result["statuses"].append(int(status.Status))
                else:
                    # no response: DIMSE timeout, abort or invalid response
                    result["statuses"].append(None)
                    result["error"] = (
                        f"no response to C-ECHO-RQ {message_id}"
                        f" (established={assoc.is_established}, aborted={assoc.is_aborted})"
                    )
                    break
            result["echo_seconds"] = time.perf_counter() - started
        else:
            result["error"] = "Verification SOP Class was not accepted"
        if args.abort:
            assoc.abort()
        elif assoc.is_established:
            assoc.release()
    result["aborted"] = bool(assoc.is_aborted)

    if result["rejected"] is not None:
        exit_code = 3
    elif not result["established"]:
        if response is not None and response.result == 0x00:
            exit_code = 3  # accepted but with no usable context: pynetdicom aborts
            result["error"] = "no presentation context accepted"
        else:
            exit_code = 5
            result["error"] = result["error"] or "association not established"
    elif result["error"] is not None and not result["statuses"]:
        exit_code = 3  # Verification was not accepted
    elif any(status != 0 for status in result["statuses"]) or len(result["statuses"]) < args.repeat:
        exit_code = 1
    elif result["aborted"] and not args.abort:
        exit_code = 5

    print(json.dumps(result, sort_keys=True), flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
