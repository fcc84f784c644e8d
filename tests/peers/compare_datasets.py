#!/usr/bin/env python3
"""Compares DICOM files element by element after decoding (pydicom 3.0), for dimsum's store tests.

    compare_datasets.py SENT RECEIVED [--ignore-meta] [--expect-ts UID] [--allow-extra]
                        [--expect-same-ts] [--expect-source-ae AE]
                        [--ignore-tag GGGG,EEEE ...]

SENT and RECEIVED are two files, or two folders (searched recursively) whose files are matched by
SOP Instance UID. Two data sets are equal when they hold the same elements with the same decoded
values, whatever their transfer syntaxes:
  - values are compared as pydicom decodes them (numbers, strings, person names, ...);
  - OB/OW/OF/OL/OD/OV values and uncompressed pixel data are compared as little-endian bytes
    (words of a big-endian file are swapped first); encapsulated pixel data as its raw
    fragments;
  - an element that one side holds as UN (e.g. a private element received in implicit VR) is
    decoded with the VR of the other side before comparing (a private SQ included);
  - sequences item by item, recursively;
  - group length elements (gggg,0000) are ignored: they depend on the encoding.
The RECEIVED files' File Meta Information is checked too (unless --ignore-meta): Media Storage
SOP Class/Instance UID equal to the data set's SOP Class/Instance UID, and with --expect-ts the
Transfer Syntax UID (with --expect-same-ts: the sent file's), with --expect-source-ae the Source
Application Entity Title.

Prints a JSON report on stdout: {"equal": bool, "compared": N, "missing": [...], "extra": [...],
"unreadable": [...], "differences": [{"sop_instance_uid", "sent", "received", "path", "what"}]}
and exits 0 only when everything is equal (2 on usage errors).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pydicom.values import convert_SQ

# encodings whose values are compared as raw bytes, with their word size for byte swapping
WORD_SIZE = {"OB": 1, "UN": 1, "OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
MAX_DIFFERENCES = 50  # per instance, to keep the report readable


class Comparison:
    def __init__(self, ignored: set[int], sent: Encoding, received: Encoding) -> None:
        self.ignored = ignored
        self.sent_encoding = sent
        self.received_encoding = received
        self.differences: list[dict[str, Any]] = []

    def differ(self, path: str, what: str) -> None:
        if len(self.differences) < MAX_DIFFERENCES:
            self.differences.append({"path": path, "what": what})

    def datasets(self, sent: Dataset, received: Dataset, path: str) -> None:
        sent_tags = {int(tag) for tag in sent.keys() if self.compared(tag)}
        received_tags = {int(tag) for tag in received.keys() if self.compared(tag)}
        for tag in sorted(sent_tags | received_tags):
            where = f"{path}({tag >> 16:04X},{tag & 0xFFFF:04X})"
            if tag not in received_tags:
                self.differ(where, "missing in the received data set")
                continue
            if tag not in sent_tags:
                self.differ(where, "not in the sent data set")
                continue
            try:
                left = sent[tag]
                right = received[tag]
                left, right = reconcile_vr(
                    left, self.sent_encoding, right, self.received_encoding
                )
            except Exception as error:  # noqa: BLE001 - any decoding failure is a difference
                self.differ(where, f"cannot decode: {type(error).__name__}: {error}")
                continue
            self.elements(left, right, where)

    def compared(self, tag: Any) -> bool:
        tag = int(tag)
        return (tag & 0xFFFF) != 0 and tag >> 16 != 0x0002 and tag not in self.ignored

    def elements(self, left: DataElement, right: DataElement, where: str) -> None:
        if left.VR != right.VR and not (left.VR in WORD_SIZE and right.VR in WORD_SIZE):
            self.differ(where, f"VR {left.VR} sent, {right.VR} received")
            return
        if left.VR == "SQ":
            left_items = left.value or []
            right_items = right.value or []
            if len(left_items) != len(right_items):
                self.differ(where, f"{len(left_items)} items sent, {len(right_items)} received")
                return
            for index, (one, other) in enumerate(zip(left_items, right_items)):
                self.datasets(one, other, f"{where}[{index}]")
            return
        if left.VR in WORD_SIZE:
            left_bytes = little_endian_bytes(left, self.sent_encoding)
            right_bytes = little_endian_bytes(right, self.received_encoding)
            if left_bytes != right_bytes:
                self.differ(where, describe_bytes(left_bytes, right_bytes))
            return
        if normalise(left.value) != normalise(right.value):
            self.differ(where, f"value {shorten(left.value)} sent, {shorten(right.value)} received")


class Encoding:
    """How a file's data set is encoded: what a UN element's bytes and OW words follow."""

    def __init__(self, ds: Dataset) -> None:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if syntax is not None:
            self.implicit = syntax == pydicom.uid.ImplicitVRLittleEndian
            self.little = syntax != pydicom.uid.ExplicitVRBigEndian
        else:  # no meta: what pydicom found while reading
            implicit, little = ds.original_encoding
            self.implicit = bool(implicit) if implicit is not None else False
            self.little = bool(little) if little is not None else True
        self.character_set = ds._character_set


def reconcile_vr(
    left: DataElement, left_encoding: Encoding, right: DataElement, right_encoding: Encoding
) -> tuple[DataElement, DataElement]:
    """Decodes a UN element with the VR the other side knows."""
    if left.VR == right.VR:
        return left, right
    if left.VR == "UN" and right.VR != "UN":
        return reinterpret(left, right.VR, left_encoding), right
    if right.VR == "UN" and left.VR != "UN":
        return left, reinterpret(right, left.VR, right_encoding)
    return left, right


def reinterpret(element: DataElement, vr: str, encoding: Encoding) -> DataElement:
    raw = bytes(element.value) if isinstance(element.value, (bytes, bytearray)) else b""
    if vr == "SQ":
        # a UN sequence is encoded in implicit VR (PS3.5 §6.2.2), in the file's byte order
        items = convert_SQ(raw, True, encoding.little, encoding=encoding.character_set)
        return DataElement(element.tag, "SQ", items)
    raw_element = RawDataElement(
        Tag(element.tag), vr, len(raw), raw, 0, encoding.implicit, encoding.little
    )
    return convert_raw_data_element(raw_element, encoding=encoding.character_set)


def little_endian_bytes(element: DataElement, encoding: Encoding) -> bytes:
    value = element.value
    if value is None:
        return b""
    if not isinstance(value, (bytes, bytearray)):
        return bytes(value) if isinstance(value, (list, tuple)) else str(value).encode()
    value = bytes(value)
    word = WORD_SIZE.get(element.VR, 1)
    if element.tag == 0x7FE00010 and element.is_undefined_length:
        return value  # encapsulated: fragments are always little endian
    if word > 1 and not encoding.little and len(value) % word == 0:
        import numpy as np

        return np.frombuffer(value, dtype=f">u{word}").astype(f"<u{word}").tobytes()
    return value


def normalise(value: Any) -> Any:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [normalise(item) for item in value]
    if isinstance(value, str):
        return value.rstrip(" \x00")
    if isinstance(value, bytes):
        return value.rstrip(b" \x00")
    if type(value).__name__ == "PersonName":
        return str(value).rstrip(" \x00")
    return value


def shorten(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def describe_bytes(left: bytes, right: bytes) -> str:
    if len(left) != len(right):
        return f"{len(left)} bytes sent, {len(right)} bytes received"
    first = next(index for index, (a, b) in enumerate(zip(left, right)) if a != b)
    return f"{len(left)} bytes each, first difference at byte {first}"


# ------------------------------------------------------------------------------------------------


def read(path: Path, header_only: bool = False) -> Dataset:
    return pydicom.dcmread(path, force=True, stop_before_pixels=header_only)


def check_meta(
    ds: Dataset, expect_ts: str | None, sent: Dataset, expect_source_ae: str | None = None
) -> list[dict[str, str]]:
    """Checks the received file's File Meta Information against its data set.

    When the sent file was itself inconsistent (its meta names another SOP instance than its
    data set, as some of pydicom's test files do), the sender may put either UID in the
    C-STORE-RQ, so the received meta may hold either.
    """
    problems = []
    sent_meta = getattr(sent, "file_meta", None) or {}
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        return [{"path": "(0002)", "what": "no File Meta Information"}]
    for meta_keyword, ds_keyword in (
        ("MediaStorageSOPClassUID", "SOPClassUID"),
        ("MediaStorageSOPInstanceUID", "SOPInstanceUID"),
    ):
        allowed = {str(ds.get(ds_keyword, "")), str(sent.get(ds_keyword, ""))}
        if str(sent_meta.get(meta_keyword, "")) != str(sent.get(ds_keyword, "")):
            allowed.add(str(sent_meta.get(meta_keyword, "")))
        if str(meta.get(meta_keyword, "")) not in allowed:
            problems.append(
                {
                    "path": f"(0002) {meta_keyword}",
                    "what": f"{meta.get(meta_keyword)!s} in the meta, "
                    f"{ds.get(ds_keyword)!s} in the data set",
                }
            )
    source_ae = str(meta.get("SourceApplicationEntityTitle", "")).strip()
    if expect_source_ae is not None and source_ae != expect_source_ae:
        problems.append(
            {
                "path": "(0002,0016) SourceApplicationEntityTitle",
                "what": f"{source_ae!r} received, {expect_source_ae!r} expected",
            }
        )
    if expect_ts and str(meta.TransferSyntaxUID) != expect_ts:
        problems.append(
            {
                "path": "(0002,0010) TransferSyntaxUID",
                "what": f"{meta.TransferSyntaxUID} received, {expect_ts} expected",
            }
        )
    return problems


def compare_files(
    sent_path: Path, received_path: Path, args: argparse.Namespace
) -> list[dict[str, str]]:
    sent = read(sent_path)
    received = read(received_path)
    comparison = Comparison(args.ignored, Encoding(sent), Encoding(received))
    comparison.datasets(sent, received, "")
    problems = comparison.differences
    if not args.ignore_meta:
        expect_ts = args.expect_ts
        if args.expect_same_ts:
            expect_ts = str(getattr(sent, "file_meta", {}).get("TransferSyntaxUID", "")) or None
        problems = check_meta(received, expect_ts, sent, args.expect_source_ae) + problems
    return problems


def index_folder(folder: Path, unreadable: list[dict[str, str]]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root, _dirs, files in os.walk(folder):
        for name in sorted(files):
            path = Path(root) / name
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
                uid = str(ds.SOPInstanceUID)
            except Exception as error:  # noqa: BLE001 - reported, not fatal
                unreadable.append({"file": str(path), "error": f"{type(error).__name__}: {error}"})
                continue
            found.setdefault(uid, path)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sent", type=Path)
    parser.add_argument("received", type=Path)
    parser.add_argument("--ignore-meta", action="store_true", help="do not check received meta")
    parser.add_argument("--expect-ts", help="transfer syntax UID the received files must have")
    parser.add_argument(
        "--expect-source-ae", help="Source Application Entity Title the received meta must hold"
    )
    parser.add_argument(
        "--expect-same-ts",
        action="store_true",
        help="each received file must have the transfer syntax of the sent file",
    )
    parser.add_argument(
        "--allow-extra", action="store_true", help="received instances not sent are no error"
    )
    parser.add_argument("--ignore-tag", action="append", default=[], metavar="GGGG,EEEE")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # pydicom's notes on odd files would clutter the report
    try:
        args.ignored = {int(tag.replace(",", ""), 16) for tag in args.ignore_tag}
    except ValueError:
        parser.error("--ignore-tag takes GGGG,EEEE in hexadecimal")

    report: dict[str, Any] = {
        "equal": False,
        "compared": 0,
        "missing": [],
        "extra": [],
        "unreadable": [],
        "differences": [],
    }
    if args.sent.is_dir() != args.received.is_dir():
        parser.error("SENT and RECEIVED must both be files or both be folders")
    if args.sent.is_dir():
        sent_index = index_folder(args.sent, [])
        received_index = index_folder(args.received, report["unreadable"])
        pairs = []
        for uid, path in sorted(sent_index.items()):
            if uid in received_index:
                pairs.append((uid, path, received_index[uid]))
            else:
                report["missing"].append({"sop_instance_uid": uid, "sent": str(path)})
        if not args.allow_extra:
            report["extra"] = [
                {"sop_instance_uid": uid, "received": str(path)}
                for uid, path in sorted(received_index.items())
                if uid not in sent_index
            ]
    else:
        pairs = [("", args.sent, args.received)]

    for uid, sent_path, received_path in pairs:
        try:
            problems = compare_files(sent_path, received_path, args)
        except Exception as error:  # noqa: BLE001 - an unreadable file is a difference
            problems = [{"path": "", "what": f"cannot read: {type(error).__name__}: {error}"}]
        report["compared"] += 1
        for problem in problems:
            report["differences"].append(
                {"sop_instance_uid": uid, "sent": str(sent_path), "received": str(received_path)}
                | problem
            )
    report["equal"] = not (
        report["missing"] or report["extra"] or report["unreadable"] or report["differences"]
    )
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0 if report["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
