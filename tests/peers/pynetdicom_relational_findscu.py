#!/usr/bin/env python3
"""A pynetdicom C-FIND SCU (Study Root) proposing C-FIND extended negotiation, for dimsum's interop tests.

It proposes, for Study Root Query/Retrieve - FIND, a SOP Class Extended Negotiation item whose
service-class application information (PS3.4 C.5.1.1, Table C.5-1) is byte 1 relational queries
(--relational), byte 2 combined date-time matching (--combined-datetime), byte 3 fuzzy semantic
matching of person names (--fuzzy-names); with none of them no item is proposed. It sends one C-FIND with the keys given (-k Keyword=Value; an empty value is a
return key) at --level, releases, and prints ONE JSON object on stdout:

  established, proposed (hex) | null, accepted (hex of the acceptor's answer) | null,
  statuses [every response status, in order], matches [{Keyword: text}], error | null

Exit status: 0 the query ended with Success; 1 another final status; 3 not established.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind
from peer_records import scu_arguments, set_up_logging


def value_text(element: Any) -> str:
    """An element's value as text: person names and strings as they are, several values joined
    with a backslash, no value as an empty string."""
    value = element.value
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(item) for item in value)
    return str(value)


def main() -> int:
    parser = scu_arguments(__doc__, "PYRELSCU")
    parser.add_argument("--level", default="STUDY", help="Query/Retrieve Level")
    parser.add_argument(
        "-k", "--key", action="append", default=[], help="Keyword=Value (repeatable)"
    )
    parser.add_argument("--relational", action="store_true", help="propose relational queries")
    parser.add_argument(
        "--combined-datetime", action="store_true", help="propose combined date-time matching"
    )
    parser.add_argument(
        "--fuzzy-names", action="store_true", help="propose fuzzy semantic person name matching"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="ACSE/DIMSE/network timeout")
    parser.add_argument("--debug", action="store_true", help="pynetdicom debug log on stderr")
    args = parser.parse_args()
    set_up_logging(args.debug)

    identifier = Dataset()
    identifier.QueryRetrieveLevel = args.level
    for key in args.key:
        keyword, _, value = key.partition("=")
        setattr(identifier, keyword, value)

    ae = AE(ae_title=args.calling)
    ae.acse_timeout = args.timeout
    ae.dimse_timeout = args.timeout
    ae.network_timeout = args.timeout
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)

    proposed: bytes | None = None
    ext_neg = []
    if args.relational or args.combined_datetime or args.fuzzy_names:
        flags = [args.relational, args.combined_datetime, args.fuzzy_names]
        # As short as the last option proposed (absent bytes mean "not proposed").
        while not flags[-1]:
            flags.pop()
        proposed = bytes(int(flag) for flag in flags)
        item = SOPClassExtendedNegotiation()
        item.sop_class_uid = StudyRootQueryRetrieveInformationModelFind
        item.service_class_application_information = proposed
        ext_neg.append(item)

    result: dict[str, Any] = {
        "established": False,
        "proposed": proposed.hex() if proposed is not None else None,
        "accepted": None,
        "statuses": [],
        "matches": [],
        "error": None,
    }
    assoc = ae.associate(args.host, args.port, ae_title=args.called, ext_neg=ext_neg or None)
    result["established"] = bool(assoc.is_established)
    exit_code = 3
    if assoc.is_established:
        answer = assoc.acceptor.sop_class_extended.get(StudyRootQueryRetrieveInformationModelFind)
        result["accepted"] = answer.hex() if answer is not None else None
        final = None
        for status, found in assoc.send_c_find(
            identifier, StudyRootQueryRetrieveInformationModelFind
        ):
            if "Status" not in status:
                result["error"] = "no response (timeout, abort or invalid response)"
                break
            code = int(status.Status)
            result["statuses"].append(code)
            if code in (0xFF00, 0xFF01) and found is not None:
                result["matches"].append(
                    {element.keyword: value_text(element) for element in found if element.keyword}
                )
            else:
                final = code
        assoc.release()
        exit_code = 0 if final == 0x0000 else 1
    else:
        result["error"] = "association not established"
    print(json.dumps(result, sort_keys=True), flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
