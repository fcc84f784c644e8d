#!/usr/bin/env python3
"""A deliberately misbehaving Storage SCU for dimsum's hostile-peer tests (no pynetdicom).

It speaks the Upper Layer protocol by hand (PS3.8 §9.3) so that it can send what a correct
library never would:

    raw_storescu.py HOST PORT FILE [--ts UID] [--sop-instance-uid-hex HEX]
                    [--abort-after BYTES | --vanish-after BYTES] [--lie LIE]
                    [--max-pdu N] [--calling AE] [--called AE] [--timeout S]

FILE is read with pydicom and re-encoded in --ts (default Explicit VR LE); give a little-endian
FILE (pydicom keeps OW bytes as read, so a big-endian source would arrive with swapped words).
--sop-instance-uid-hex replaces the SOP Instance UID in the command AND the data set (hex, so
  that it may hold NUL, '/' or anything else).
--abort-after N sends the first N bytes of the data set (never the last fragment), then an
  A-ABORT; --vanish-after N does the same but just closes the socket.
--lie patient-name-length: the data set (sent in implicit VR LE) holds (0010,0010) with a
  length of 0xFFFFFFF0 followed by 10 bytes; --lie item-length: a sequence whose item claims
  0xFFFFFFF0 bytes; --lie nested-undefined: 1000 nested sequences of undefined length.

Prints one JSON object: {"associated": bool, "accepted_ts": uid | null, "status": int | null,
"error_comment": str | null, "sent_bytes": int, "outcome": "response" | "aborted-by-us" |
"vanished" | "peer-aborted" | "peer-closed" | "rejected" | "timeout" | "no-connection"}. Exit code 0.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import warnings
from typing import Any

import pydicom
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
IMPLEMENTATION_CLASS_UID = b"1.2.826.0.1.3680043.8.498.1.99"
CONTEXT_ID = 1
HUGE = 0xFFFFFFF0


# -- PDU encoding (PS3.8 §9.3) --------------------------------------------------------------------


def item(item_type: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(payload)) + payload


def pdu(pdu_type: int, payload: bytes) -> bytes:
    return struct.pack(">BBI", pdu_type, 0, len(payload)) + payload


def ae(title: str) -> bytes:
    return title.encode("ascii")[:16].ljust(16, b" ")


def associate_rq(calling: str, called: str, sop_class: str, ts: str, max_pdu: int) -> bytes:
    context = struct.pack(">BBBB", CONTEXT_ID, 0, 0, 0)
    context += item(0x30, sop_class.encode()) + item(0x40, ts.encode())
    user = item(0x51, struct.pack(">I", max_pdu)) + item(0x52, IMPLEMENTATION_CLASS_UID)
    body = struct.pack(">HH", 1, 0) + ae(called) + ae(calling) + bytes(32)
    body += item(0x10, APPLICATION_CONTEXT) + item(0x20, context) + item(0x50, user)
    return pdu(0x01, body)


def p_data(pdvs: list[tuple[bool, bool, bytes]]) -> bytes:
    """PDVs of (is_command, is_last, data) on the one presentation context."""
    body = b""
    for is_command, is_last, data in pdvs:
        header = (1 if is_command else 0) | (2 if is_last else 0)
        body += struct.pack(">IBB", len(data) + 2, CONTEXT_ID, header) + data
    return pdu(0x04, body)


A_RELEASE_RQ = pdu(0x05, bytes(4))
A_ABORT = pdu(0x07, bytes([0, 0, 0, 0]))


# -- command sets (PS3.7 §6.3, always implicit VR LE) --------------------------------------------


def element(group: int, elem: int, value: bytes) -> bytes:
    return struct.pack("<HHI", group, elem, len(value)) + value


def uid_value(uid: bytes) -> bytes:
    return uid + (b"\x00" if len(uid) % 2 else b"")


def c_store_rq(sop_class: str, sop_instance: bytes, message_id: int = 1) -> bytes:
    body = element(0x0000, 0x0002, uid_value(sop_class.encode()))
    body += element(0x0000, 0x0100, struct.pack("<H", 0x0001))
    body += element(0x0000, 0x0110, struct.pack("<H", message_id))
    body += element(0x0000, 0x0700, struct.pack("<H", 0))
    body += element(0x0000, 0x0800, struct.pack("<H", 0x0000))
    body += element(0x0000, 0x1000, uid_value(sop_instance))
    return element(0x0000, 0x0000, struct.pack("<I", len(body))) + body


def parse_command(data: bytes) -> dict[int, bytes]:
    elements = {}
    offset = 0
    while offset + 8 <= len(data):
        group, elem, length = struct.unpack_from("<HHI", data, offset)
        offset += 8
        elements[(group << 16) | elem] = data[offset : offset + length]
        offset += length
    return elements


# -- data sets -------------------------------------------------------------------------------------


def encode_dataset(path: str, ts: str, sop_instance: bytes | None) -> tuple[str, bytes, bytes]:
    ds = pydicom.dcmread(path)
    if sop_instance is not None:
        ds.SOPInstanceUID = sop_instance.decode("latin-1")
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = ts == ImplicitVRLittleEndian
    write_dataset(buffer, ds)
    instance = sop_instance if sop_instance is not None else str(ds.SOPInstanceUID).encode()
    return str(ds.SOPClassUID), instance, buffer.getvalue()


def lying_dataset(lie: str, sop_class: str, sop_instance: bytes) -> bytes:
    """Implicit VR LE data sets whose lengths do not add up."""
    head = element(0x0008, 0x0016, uid_value(sop_class.encode()))
    head += element(0x0008, 0x0018, uid_value(sop_instance))
    if lie == "patient-name-length":
        return head + struct.pack("<HHI", 0x0010, 0x0010, HUGE) + b"Doe^John^^"
    if lie == "item-length":
        item_header = struct.pack("<HHI", 0xFFFE, 0xE000, HUGE)
        sequence = struct.pack("<HHI", 0x0008, 0x1115, 0xFFFFFFFF) + item_header
        return head + sequence + element(0x0008, 0x1150, uid_value(b"1.2.3"))
    if lie == "nested-undefined":
        nested = b""
        for _ in range(1000):
            nested += struct.pack("<HHI", 0x0040, 0xA730, 0xFFFFFFFF)  # Content Sequence
            nested += struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)  # item, undefined
        return head + nested
    raise ValueError(lie)


# -- the conversation --------------------------------------------------------------------------


class Peer:
    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive_pdu(self) -> tuple[int, bytes] | None:
        header = self._exactly(6)
        if header is None:
            return None
        pdu_type, _reserved, length = struct.unpack(">BBI", header)
        body = self._exactly(length)
        return None if body is None else (pdu_type, body)

    def _exactly(self, count: int) -> bytes | None:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def close(self) -> None:
        self.sock.close()


def accepted_ts(body: bytes) -> tuple[str | None, int]:
    """From an A-ASSOCIATE-AC body: the transfer syntax of our context and the peer's max PDU."""
    offset = 68
    syntax = None
    max_pdu = 16384
    while offset + 4 <= len(body):
        item_type, _reserved, length = struct.unpack_from(">BBH", body, offset)
        value = body[offset + 4 : offset + 4 + length]
        if item_type == 0x21 and value[2] == 0:
            sub_offset = 4
            while sub_offset + 4 <= len(value):
                sub_type, _r, sub_length = struct.unpack_from(">BBH", value, sub_offset)
                if sub_type == 0x40:
                    syntax = value[sub_offset + 4 : sub_offset + 4 + sub_length].decode().strip("\0 ")
                sub_offset += 4 + sub_length
        if item_type == 0x50:
            sub_offset = 0
            while sub_offset + 4 <= len(value):
                sub_type, _r, sub_length = struct.unpack_from(">BBH", value, sub_offset)
                if sub_type == 0x51:
                    max_pdu = struct.unpack_from(">I", value, sub_offset + 4)[0] or (1 << 31)
                sub_offset += 4 + sub_length
        offset += 4 + length
    return syntax, max_pdu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("file")
    parser.add_argument("--ts", default=None)
    parser.add_argument("--sop-instance-uid-hex")
    stop = parser.add_mutually_exclusive_group()
    stop.add_argument("--abort-after", type=int)
    stop.add_argument("--vanish-after", type=int)
    parser.add_argument("--lie", choices=["patient-name-length", "item-length", "nested-undefined"])
    parser.add_argument("--max-pdu", type=int, default=16384)
    parser.add_argument("--calling", default="RAWSCU")
    parser.add_argument("--called", default="ANY-SCP")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # hostile UIDs are the point: no pydicom warnings

    instance = bytes.fromhex(args.sop_instance_uid_hex) if args.sop_instance_uid_hex else None
    ts = args.ts or (ImplicitVRLittleEndian if args.lie else ExplicitVRLittleEndian)
    sop_class, instance, dataset = encode_dataset(args.file, ts, instance)
    if args.lie:
        dataset = lying_dataset(args.lie, sop_class, instance)

    report: dict[str, Any] = {
        "associated": False,
        "accepted_ts": None,
        "status": None,
        "error_comment": None,
        "sent_bytes": 0,
        "outcome": None,
    }

    def finish(outcome: str) -> int:
        report["outcome"] = outcome
        print(json.dumps(report), flush=True)
        return 0

    try:
        peer = Peer(args.host, args.port, args.timeout)
    except OSError as error:
        report["error_comment"] = f"cannot connect: {type(error).__name__}: {error}"
        return finish("no-connection")
    try:
        peer.send(associate_rq(args.calling, args.called, sop_class, ts, args.max_pdu))
        reply = peer.receive_pdu()
        if reply is None or reply[0] != 0x02:
            return finish("rejected")
        report["associated"] = True
        report["accepted_ts"], peer_max_pdu = accepted_ts(reply[1])
        if report["accepted_ts"] != ts:
            peer.send(A_ABORT)
            return finish("rejected")
        fragment = max(16, min(peer_max_pdu, 65536) - 6 - 6)
        peer.send(p_data([(True, True, c_store_rq(sop_class, instance))]))
        stop_after = args.abort_after if args.abort_after is not None else args.vanish_after
        offset = 0
        while offset < len(dataset):
            chunk = dataset[offset : offset + fragment]
            if stop_after is not None and offset + len(chunk) >= stop_after:
                chunk = chunk[: max(0, stop_after - offset)]
                if chunk:
                    peer.send(p_data([(False, False, chunk)]))
                report["sent_bytes"] = offset + len(chunk)
                if args.abort_after is not None:
                    peer.send(A_ABORT)
                    return finish("aborted-by-us")
                return finish("vanished")
            offset += len(chunk)
            peer.send(p_data([(False, offset >= len(dataset), chunk)]))
        report["sent_bytes"] = offset
        command = b""
        while True:
            received = peer.receive_pdu()
            if received is None:
                return finish("peer-closed")
            pdu_type, body = received
            if pdu_type == 0x07:
                return finish("peer-aborted")
            if pdu_type != 0x04:
                continue
            pdv_offset = 0
            last = False
            while pdv_offset + 6 <= len(body):
                length, _context, control = struct.unpack_from(">IBB", body, pdv_offset)
                command += body[pdv_offset + 6 : pdv_offset + 4 + length]
                last = last or (control & 0x03) == 0x03
                pdv_offset += 4 + length
            if last:
                break
        elements = parse_command(command)
        if 0x00000900 in elements:
            report["status"] = struct.unpack("<H", elements[0x00000900][:2])[0]
        if 0x00000902 in elements:
            report["error_comment"] = elements[0x00000902].decode("latin-1").strip("\0 ")
        peer.send(A_RELEASE_RQ)
        peer.receive_pdu()  # A-RELEASE-RP (or nothing: the result is already known)
        return finish("response")
    except socket.timeout:
        return finish("timeout")
    except (ConnectionError, OSError) as error:
        report["error_comment"] = f"{type(error).__name__}: {error}"
        return finish("peer-closed")
    finally:
        peer.close()


if __name__ == "__main__":
    sys.exit(main())
