#!/usr/bin/env python3
"""Generates the DICOM test data of dimsum's store tests and bench (pydicom 3.0 + numpy).

    make_datasets.py OUT [--standard] [--batch N --kind small|ct] [--multiframe-mb M] [--seed S]

Everything is deterministic: the same arguments give byte-identical files (UIDs derive from the
seed, the kind and the index; pixel values from a seeded generator). Files already present with
the expected size are kept (so a cache folder is cheap to refresh). It prints one JSON object on
stdout: {"files": [{"path", "kind", "sop_class_uid", "sop_instance_uid", "transfer_syntax",
"bytes"}]}.

--standard writes into OUT:
  ct.dcm                  CT Image Storage, 512x512 16-bit (about 512 KB), realistic header
  small.dcm               Secondary Capture, 60x60 8-bit (about 4 KB)
  nested_private.dcm      sequences nested 4 deep, an empty sequence and item, a private block
                          (creator + LO/US/SL/DS/FD/OB/UN elements) and a private SQ holding
                          public and private elements, explicit VR LE
  syntax_implicit.dcm     one instance (same SOP Instance UID) in Implicit VR LE,
  syntax_explicit_le.dcm  Explicit VR LE,
  syntax_explicit_be.dcm  Explicit VR BE (pixel data written as big-endian words),
  syntax_deflated.dcm     and Deflated Explicit VR LE
  jpeg.dcm                JPEG Baseline (1.2.840.10008.1.2.4.50), copied from pydicom's own test
                          files (SC_rgb_jpeg_dcmtk.dcm): pydicom cannot encode JPEG by itself
--batch N --kind small|ct writes N instances <kind>_00000.dcm ... into OUT (one study/series).
--pydicom-corpus copies every pydicom test file that is a storable Part 10 instance into
  OUT/corpus/round-<N>/ (files sharing a SOP Instance UID go to different rounds); the JSON then
  also lists under "left_out" the files not taken, with the reason.
--multiframe-mb M writes multiframe_<M>mb.dcm: Multi-frame Grayscale Word Secondary Capture,
  512x512 16-bit frames, enough frames for at least M MiB of pixel data, written frame by frame
  (the header by pydicom, then the pixel data element appended) so memory stays small.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MULTIFRAME_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's UID root, fine for test data
IMPLEMENTATION_CLASS_UID = UID_ROOT + "1"
PRIVATE_CREATOR = "DIMSUM TEST"
PRIVATE_GROUP = 0x0009
JPEG_SOURCE = "SC_rgb_jpeg_dcmtk.dcm"
FRAME_ROWS = 512
FRAME_COLUMNS = 512
FRAME_BYTES = FRAME_ROWS * FRAME_COLUMNS * 2


class Generator:
    def __init__(self, out: Path, seed: int) -> None:
        self.out = out
        self.seed = seed
        self.written: list[dict[str, Any]] = []

    # -- helpers ------------------------------------------------------------------------------

    def uid(self, *parts: Any) -> UID:
        return generate_uid(UID_ROOT, entropy_srcs=[str(self.seed), *map(str, parts)])

    def rng(self, *parts: Any) -> np.random.Generator:
        key = abs(hash_parts(self.seed, *parts))
        return np.random.default_rng(key)

    def record(self, path: Path, kind: str, **extra: Any) -> None:
        meta = pydicom.dcmread(
            path,
            stop_before_pixels=True,
            specific_tags=["SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"],
        )
        self.written.append(
            {
                "path": str(path),
                "kind": kind,
                "sop_class_uid": str(meta.file_meta.MediaStorageSOPClassUID),
                "sop_instance_uid": str(meta.file_meta.MediaStorageSOPInstanceUID),
                "study_instance_uid": str(meta.get("StudyInstanceUID", "")),
                "series_instance_uid": str(meta.get("SeriesInstanceUID", "")),
                "transfer_syntax": str(meta.file_meta.TransferSyntaxUID),
                "bytes": path.stat().st_size,
            }
            | extra
        )

    def save(self, ds: Dataset, name: str, kind: str, syntax: str) -> Path:
        path = self.out / name
        ds.file_meta = file_meta(ds, syntax)
        write_atomically(path, ds)
        self.record(path, kind)
        return path

    def patient_study(self, ds: Dataset, study_key: str) -> None:
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.PatientName = "Doe^Jane^M^^"
        ds.PatientID = "DIMSUM-0001"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "F"
        ds.PatientAge = "054Y"
        ds.StudyInstanceUID = self.uid("study", study_key)
        ds.StudyDate = "20240102"
        ds.StudyTime = "101500.123456"
        ds.StudyID = "S1"
        ds.AccessionNumber = "ACC0001"
        ds.ReferringPhysicianName = "House^Gregory"
        ds.StudyDescription = "dimsum store test"
        ds.InstitutionName = "Dimsum General Hospital"
        ds.Manufacturer = "dimsum"
        ds.ManufacturerModelName = "make_datasets.py"

    # -- instances ----------------------------------------------------------------------------

    def ct_dataset(self, index: int, series_key: str) -> Dataset:
        ds = Dataset()
        self.patient_study(ds, series_key)
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = self.uid("ct", series_key, index)
        ds.SeriesInstanceUID = self.uid("series", series_key)
        ds.FrameOfReferenceUID = self.uid("frame-of-reference", series_key)
        ds.Modality = "CT"
        ds.SeriesNumber = 2
        ds.InstanceNumber = index + 1
        ds.SeriesDescription = "AXIAL 5mm"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ContentDate = "20240102"
        ds.ContentTime = "101512.500000"
        ds.BodyPartExamined = "CHEST"
        ds.KVP = "120"
        ds.SliceThickness = "5.0"
        ds.XRayTubeCurrent = 250
        ds.ConvolutionKernel = "STANDARD"
        ds.PatientPosition = "HFS"
        ds.ImagePositionPatient = ["-250.0", "-250.0", f"{-100.0 + 5.0 * index:.1f}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.SliceLocation = f"{-100.0 + 5.0 * index:.1f}"
        ds.PixelSpacing = ["0.9765625", "0.9765625"]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = FRAME_ROWS
        ds.Columns = FRAME_COLUMNS
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = ["40", "400"]
        ds.WindowWidth = ["400", "1500"]
        pixels = self.rng("ct", series_key, index).integers(0, 4096, (FRAME_ROWS, FRAME_COLUMNS))
        ds.PixelData = pixels.astype("<u2").tobytes()
        ds["PixelData"].VR = "OW"
        return ds

    def small_dataset(self, index: int, series_key: str) -> Dataset:
        ds = Dataset()
        self.patient_study(ds, series_key)
        ds.SOPClassUID = SECONDARY_CAPTURE
        ds.SOPInstanceUID = self.uid("small", series_key, index)
        ds.SeriesInstanceUID = self.uid("series", series_key)
        ds.Modality = "OT"
        ds.ConversionType = "WSD"
        ds.SeriesNumber = 1
        ds.InstanceNumber = index + 1
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = 60
        ds.Columns = 60
        ds.BitsAllocated = 8
        ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        pixels = self.rng("small", series_key, index).integers(0, 256, (60, 60))
        ds.PixelData = pixels.astype("u1").tobytes()
        ds["PixelData"].VR = "OB"
        return ds

    def nested_private_dataset(self) -> Dataset:
        ds = self.small_dataset(0, "nested")
        ds.SOPInstanceUID = self.uid("nested-private")

        def code(value: str, scheme: str, meaning: str) -> Dataset:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = scheme
            item.CodeMeaning = meaning
            return item

        # depth 4: RequestAttributes > ScheduledProtocolCode > ProtocolContext > ContentItemModifier
        modifier = Dataset()
        modifier.ValueType = "CODE"
        modifier.ConceptNameCodeSequence = Sequence([code("G-C0E8", "SRT", "Laterality")])
        modifier.ConceptCodeSequence = Sequence([code("G-A101", "SRT", "Left")])
        context = Dataset()
        context.ValueType = "TEXT"
        context.ConceptNameCodeSequence = Sequence([code("121106", "DCM", "Comment")])
        context.TextValue = "nested three levels down"
        context.ContentItemModifierSequence = Sequence([modifier, Dataset()])  # + an empty item
        protocol = code("P-0001", "99DIMSUM", "Test protocol")
        protocol.ProtocolContextSequence = Sequence([context])
        request = Dataset()
        request.RequestedProcedureID = "RP1"
        request.ScheduledProcedureStepID = "SPS1"
        request.ScheduledProtocolCodeSequence = Sequence([protocol])
        second_request = Dataset()
        second_request.RequestedProcedureID = "RP2"
        ds.RequestAttributesSequence = Sequence([request, second_request])
        # one sequence and item with undefined length (delimiters), the others explicit
        ds["RequestAttributesSequence"].is_undefined_length = True
        request.is_undefined_length_sequence_item = True
        ds.ReferencedPerformedProcedureStepSequence = Sequence()  # an empty sequence
        ds.ProcedureCodeSequence = Sequence([code("CTCHEST", "99DIMSUM", "CT chest")])

        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
        block.add_new(0x01, "LO", "private long string")
        block.add_new(0x02, "US", [1, 2, 65535])
        block.add_new(0x03, "SL", -123456)
        block.add_new(0x04, "DS", ["1.5", "-2.25"])
        block.add_new(0x05, "FD", [3.141592653589793, -0.5])
        block.add_new(0x06, "OB", bytes(range(32)))
        block.add_new(0x07, "UN", b"\x01\x02\x03\x04")
        inner = Dataset()
        inner.CodeValue = "PRIV"
        inner_block = inner.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
        inner_block.add_new(0x10, "LO", "private inside a private sequence")
        inner_block.add_new(0x11, "UL", 4000000000)
        deeper = Dataset()
        deeper.CodeMeaning = "inside the private sequence"
        inner.ContentSequence = Sequence([deeper])
        block.add_new(0x08, "SQ", Sequence([inner, Dataset()]))
        # a second private creator in another group
        other = ds.private_block(0x0011, "DIMSUM OTHER", create=True)
        other.add_new(0x01, "SH", "second creator")
        return ds

    def syntax_dataset(self) -> Dataset:
        ds = Dataset()
        self.patient_study(ds, "syntaxes")
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = self.uid("syntaxes")
        ds.SeriesInstanceUID = self.uid("series", "syntaxes")
        ds.Modality = "CT"
        ds.SeriesNumber = 3
        ds.InstanceNumber = 1
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.ImagePositionPatient = ["0.0", "0.0", "12.5"]
        ds.PixelSpacing = ["0.5", "0.5"]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = 128
        ds.Columns = 128
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.SmallestImagePixelValue = -32768  # US or SS: resolved by PixelRepresentation
        ds.LargestImagePixelValue = 32767
        ds.ReferencedImageSequence = Sequence([Dataset()])
        ds.ReferencedImageSequence[0].ReferencedSOPClassUID = CT_IMAGE_STORAGE
        ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = self.uid("referenced")
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
        block.add_new(0x01, "LO", "byte order test")
        block.add_new(0x02, "US", [0x0102, 0xA0B0])
        self._pixels_syntax = self.rng("syntaxes").integers(-32768, 32768, (128, 128))
        return ds

    # -- writers ------------------------------------------------------------------------------

    def standard(self) -> None:
        self.save(self.ct_dataset(0, "standard"), "ct.dcm", "ct", ExplicitVRLittleEndian)
        self.save(self.small_dataset(0, "standard"), "small.dcm", "small", ExplicitVRLittleEndian)
        self.save(
            self.nested_private_dataset(),
            "nested_private.dcm",
            "nested_private",
            ExplicitVRLittleEndian,
        )
        for name, syntax in (
            ("syntax_implicit.dcm", ImplicitVRLittleEndian),
            ("syntax_explicit_le.dcm", ExplicitVRLittleEndian),
            ("syntax_explicit_be.dcm", ExplicitVRBigEndian),
            ("syntax_deflated.dcm", DeflatedExplicitVRLittleEndian),
        ):
            ds = self.syntax_dataset()
            order = ">i2" if syntax == ExplicitVRBigEndian else "<i2"
            ds.PixelData = self._pixels_syntax.astype(order).tobytes()
            ds["PixelData"].VR = "OW"
            self.save(ds, name, "syntax", syntax)
        source = pydicom.data.get_testdata_file(JPEG_SOURCE)
        if source is None:
            raise SystemExit(f"make_datasets: pydicom test file {JPEG_SOURCE} not found")
        jpeg = self.out / "jpeg.dcm"
        partial = partial_name(jpeg)
        shutil.copyfile(source, partial)
        os.replace(partial, jpeg)
        self.record(jpeg, "jpeg")

    def batch(self, count: int, kind: str) -> None:
        make = self.ct_dataset if kind == "ct" else self.small_dataset
        for index in range(count):
            path = self.out / f"{kind}_{index:05d}.dcm"
            if not path.exists():
                ds = make(index, f"batch-{kind}")
                ds.file_meta = file_meta(ds, ExplicitVRLittleEndian)
                write_atomically(path, ds)
            self.record(path, f"batch-{kind}")

    def multiframe(self, megabytes: int) -> None:
        frames = -(-megabytes * 1024 * 1024 // FRAME_BYTES)
        pixel_bytes = frames * FRAME_BYTES
        path = self.out / f"multiframe_{megabytes}mb.dcm"
        ds = Dataset()
        self.patient_study(ds, "multiframe")
        ds.SOPClassUID = MULTIFRAME_WORD_SC
        ds.SOPInstanceUID = self.uid("multiframe", megabytes)
        ds.SeriesInstanceUID = self.uid("series", "multiframe")
        ds.Modality = "OT"
        ds.SeriesNumber = 4
        ds.InstanceNumber = 1
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.ConversionType = "WSD"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = 0x00181063  # Frame Time
        ds.FrameTime = "33.3"
        ds.Rows = FRAME_ROWS
        ds.Columns = FRAME_COLUMNS
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.file_meta = file_meta(ds, ExplicitVRLittleEndian)
        if path.exists():
            header_size = len(encoded_header(ds))
            if path.stat().st_size == header_size + 12 + pixel_bytes:
                self.record_multiframe(path, ds)
                return
        base = self.rng("multiframe").integers(0, 65536, FRAME_ROWS * FRAME_COLUMNS).astype("<u2")
        partial = partial_name(path)
        with open(partial, "wb") as out:
            out.write(encoded_header(ds))
            # (7FE0,0010) OW, explicit VR LE long form: tag, VR, 2 reserved bytes, 32-bit length
            out.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, pixel_bytes))
            for frame in range(frames):
                out.write((base + np.uint16(frame)).tobytes())  # wraps: values stay 16-bit
        os.replace(partial, path)
        self.record_multiframe(path, ds)

    def record_multiframe(self, path: Path, ds: Dataset) -> None:
        self.written.append(
            {
                "path": str(path),
                "kind": "multiframe",
                "sop_class_uid": str(ds.SOPClassUID),
                "sop_instance_uid": str(ds.SOPInstanceUID),
                "study_instance_uid": str(ds.StudyInstanceUID),
                "series_instance_uid": str(ds.SeriesInstanceUID),
                "transfer_syntax": str(ExplicitVRLittleEndian),
                "bytes": path.stat().st_size,
            }
        )

    def pydicom_corpus(self) -> list[dict[str, str]]:
        """Copies pydicom's own test files into OUT/corpus/round-N/; returns those left out.

        A file is taken when pydicom reads it with force=False and it has File Meta
        Information with a Transfer Syntax UID and a SOP Class and Instance UID. Files sharing
        a SOP Instance UID (the same image in several transfer syntaxes) go to different
        rounds, so each round can be received into one folder and matched by UID.
        """
        source_dir = Path(pydicom.__file__).parent / "data" / "test_files"
        rounds: list[set[str]] = []
        left_out = []
        for source in sorted(source_dir.rglob("*")):
            if not source.is_file():
                continue
            reason = corpus_exclusion(source)
            if reason:
                left_out.append({"path": str(source), "reason": reason})
                continue
            ds = pydicom.dcmread(source, stop_before_pixels=True)
            uid = str(ds.SOPInstanceUID)
            index = next((i for i, uids in enumerate(rounds) if uid not in uids), len(rounds))
            if index == len(rounds):
                rounds.append(set())
            rounds[index].add(uid)
            folder = self.out / "corpus" / f"round-{index}"
            folder.mkdir(parents=True, exist_ok=True)
            # sub-folders of the corpus reuse names: keep the relative path in the name
            target = folder / "__".join(source.relative_to(source_dir).parts)
            if not target.exists() or target.stat().st_size != source.stat().st_size:
                partial = partial_name(target)
                shutil.copyfile(source, partial)
                os.replace(partial, target)
            self.record(target, "corpus", round=index, source=str(source))
        return left_out


def corpus_exclusion(path: Path) -> str | None:
    """Why a pydicom test file is not a storable Part 10 instance (None when it is)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=False)
    except Exception as error:  # noqa: BLE001 - the reason is reported
        return f"pydicom cannot read it with force=False: {type(error).__name__}: {error}"
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        return "no File Meta Information with a Transfer Syntax UID"
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        return "no SOP Class UID or SOP Instance UID in the data set"
    return None


def hash_parts(*parts: Any) -> int:
    """A stable (not per-process salted) 63-bit hash."""
    import hashlib

    digest = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def partial_name(path: Path) -> Path:
    """Where a file is written before it is renamed into place (concurrent runs share OUT)."""
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


def write_atomically(path: Path, ds: Dataset) -> None:
    partial = partial_name(path)
    pydicom.dcmwrite(partial, ds, enforce_file_format=True)
    os.replace(partial, path)


def file_meta(ds: Dataset, syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = "DIMSUM_TESTDATA"
    return meta


def encoded_header(ds: Dataset) -> bytes:
    """The Part 10 file (preamble, meta, data set) of `ds`, which has no pixel data."""
    from io import BytesIO

    buffer = BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write into (created if missing)")
    parser.add_argument("--standard", action="store_true", help="the fixed set of files")
    parser.add_argument("--batch", type=int, default=0, help="number of batch files")
    parser.add_argument("--kind", choices=["small", "ct"], default="small")
    parser.add_argument("--multiframe-mb", type=int, default=0)
    parser.add_argument(
        "--pydicom-corpus",
        action="store_true",
        help="copy pydicom's storable test files into OUT/corpus/round-N/",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # pydicom's notes on odd corpus files are not our output
    if not (args.standard or args.batch or args.multiframe_mb or args.pydicom_corpus):
        parser.error(
            "nothing to do: give --standard, --batch N, --multiframe-mb M or --pydicom-corpus"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    generator = Generator(args.out, args.seed)
    if args.standard:
        generator.standard()
    if args.batch:
        generator.batch(args.batch, args.kind)
    if args.multiframe_mb:
        generator.multiframe(args.multiframe_mb)
    left_out = generator.pydicom_corpus() if args.pydicom_corpus else []
    json.dump({"files": generator.written, "left_out": left_out}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
