#!/usr/bin/env python3
"""dicomweb-client 0.61 (PyPI) as a real DICOMweb peer of dimsum's tests: PS3.18 STOW-RS,
QIDO-RS and WADO-RS requests against a DICOMweb root such as `dimsum serve`'s.

    dicomweb_client_peer.py URL store FILE...
    dicomweb_client_peer.py URL retrieve --out DIR --study UID [--series UID [--instance UID]]
                                         [--transfer-syntax UID|*]
    dicomweb_client_peer.py URL search REQUESTS.json
    dicomweb_client_peer.py URL metadata --out DIR --study UID [--series UID [--instance UID]]
                                         [--bulk-media-type TYPE]
    dicomweb_client_peer.py URL frames --out DIR --study UID --series UID --instance UID
                                       --frames N[,N...] [--media-type TYPE]
                                       [--transfer-syntax UID|*]
    dicomweb_client_peer.py URL rendered --out FILE --study UID --series UID [--instance UID]
                                         [--media-type image/jpeg|image/png]

Every sub-command uses the client's public API as an application would (no hand-made HTTP),
with one correction: the Host header names the URL's port (see `client`).
  store     reads each FILE with pydicom and sends them all with `store_instances` (one
            request); reports the response data set as DICOM JSON.
  retrieve  `retrieve_study` / `retrieve_series` / `retrieve_instance` (the deepest level given),
            accepting `application/dicom` in the client's default transfer syntax or the one
            given (`*`: as stored); writes each data set to DIR/<SOP Instance UID>.dcm as received.
  search    runs each request of REQUESTS.json, a list of objects
              {"name", "level": "studies"|"series"|"instances", "study", "series", "filters",
               "fields", "limit", "offset", "fuzzymatching", "get_remaining"}
            (all but name and level optional) with `search_for_studies` / `_series` /
            `_instances`, and reports each one's DICOM JSON results.
  metadata  `retrieve_study_metadata` / `_series_metadata` / `_instance_metadata`; every
            BulkDataURI of the metadata (nested ones too) is fetched with `retrieve_bulkdata`
            (accepting the client's default, any type, or --bulk-media-type) and
            its bytes written to DIR/bulkdata/<SOP Instance UID>.<path>.bin; each instance is
            rebuilt from its metadata with pydicom (`Dataset.from_json`, bulk data from those
            bytes) and written to DIR/instances/<SOP Instance UID>.dcm in Explicit VR Little
            Endian.
  frames    `retrieve_instance_frames` of the listed frames (media type as given, default the
            client's: any); writes DIR/frame-<N>.bin.
  rendered  `retrieve_instance_rendered` / `retrieve_series_rendered`; writes FILE and reports
            what Pillow decodes of it (format, size, mode), image by image when the body is a
            multipart/related of rendered instances.

Prints one JSON object on stdout. An HTTP error is reported, not raised:
  {"error": {"status": int, "method": str, "url": str, "body": str}}
in place of the results of the call that failed (for search, of that request alone).
Exit code: 0 when every call succeeded, 1 when one got an HTTP error or failed otherwise
(the report then says which), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from io import BytesIO
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

# every request gets an answer or fails within this many seconds (connect, read)
TIMEOUT = (10, 60)
# how much of an error response body the report keeps
BODY_EXCERPT = 2000
BULKDATA_URI = "BulkDataURI"


class Failed(Exception):
    """A call failed; `report` says how (HTTP status and URL, or the Python error)."""

    def __init__(self, report: dict[str, Any]) -> None:
        super().__init__(json.dumps(report))
        self.report = report


def attempt(call: Callable[[], Any]) -> Any:
    """Runs `call`, turning an HTTP error or any other failure into `Failed`."""
    try:
        return call()
    except requests.HTTPError as error:
        response = error.response
        request = error.request
        raise Failed(
            {
                "status": response.status_code if response is not None else None,
                "method": request.method if request is not None else None,
                "url": request.url if request is not None else None,
                "body": (response.text[:BODY_EXCERPT] if response is not None else ""),
            }
        ) from error
    except Exception as error:  # noqa: BLE001 - any failure of the client is reported
        raise Failed(
            {
                "status": None,
                "exception": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc()[-BODY_EXCERPT:],
            }
        ) from error


def client(url: str) -> DICOMwebClient:
    web = DICOMwebClient(url, timeout=TIMEOUT)
    # a failed request is reported at once, not retried with back-off
    web.set_http_retry_params(retry=False)
    # dicomweb-client 0.61 sets the Host header of its requests to the URL's host without its
    # port, which RFC 9110 7.2 requires when it is not the scheme's default; a server builds its
    # absolute URLs (Retrieve URL, BulkDataURI) from that header, and they would name port 80.
    # Send host:port, as curl, browsers and requests itself do.
    parsed = urlparse(url)
    if parsed.port is not None:
        web.host = f"{parsed.hostname}:{parsed.port}"
    return web


# -- store ------------------------------------------------------------------------------------


def store(web: DICOMwebClient, args: argparse.Namespace) -> dict[str, Any]:
    datasets = [pydicom.dcmread(path) for path in args.files]
    sent = [
        {"path": str(path), "sop_instance_uid": str(ds.SOPInstanceUID)}
        for path, ds in zip(args.files, datasets)
    ]
    response = attempt(lambda: web.store_instances(datasets))
    return {"sent": sent, "response": response.to_json_dict()}


# -- retrieve ---------------------------------------------------------------------------------


def retrieve(web: DICOMwebClient, args: argparse.Namespace) -> dict[str, Any]:
    media_types = None
    if args.transfer_syntax:
        media_types = (("application/dicom", args.transfer_syntax),)
    if args.instance:
        datasets = [
            attempt(
                lambda: web.retrieve_instance(
                    args.study, args.series, args.instance, media_types=media_types
                )
            )
        ]
    elif args.series:
        datasets = attempt(
            lambda: web.retrieve_series(args.study, args.series, media_types=media_types)
        )
    else:
        datasets = attempt(lambda: web.retrieve_study(args.study, media_types=media_types))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    instances = []
    for ds in datasets:
        uid = str(ds.SOPInstanceUID)
        path = out / f"{uid}.dcm"
        ds.save_as(path)
        meta = getattr(ds, "file_meta", None)
        instances.append(
            {
                "sop_instance_uid": uid,
                "transfer_syntax": str(getattr(meta, "TransferSyntaxUID", "")),
                "path": str(path),
            }
        )
    return {"instances": instances}


# -- search -----------------------------------------------------------------------------------


def search(web: DICOMwebClient, args: argparse.Namespace) -> dict[str, Any]:
    requests_ = json.loads(Path(args.requests).read_text(encoding="utf-8"))
    results: dict[str, Any] = {}
    failed = False
    for request in requests_:
        name = request["name"]
        options = {
            "fuzzymatching": request.get("fuzzymatching"),
            "limit": request.get("limit"),
            "offset": request.get("offset"),
            "fields": request.get("fields"),
            "search_filters": request.get("filters"),
            "get_remaining": bool(request.get("get_remaining", False)),
        }
        level = request["level"]
        if level == "studies":
            call = lambda: web.search_for_studies(**options)  # noqa: E731
        elif level == "series":
            call = lambda: web.search_for_series(  # noqa: E731
                study_instance_uid=request.get("study"), **options
            )
        elif level == "instances":
            call = lambda: web.search_for_instances(  # noqa: E731
                study_instance_uid=request.get("study"),
                series_instance_uid=request.get("series"),
                **options,
            )
        else:
            raise SystemExit(f"unknown level {level!r} in request {name!r}")
        try:
            results[name] = {"datasets": attempt(call)}
        except Failed as failure:
            failed = True
            results[name] = {"error": failure.report}
    return {"results": results, "failed": failed}


# -- metadata and bulk data -------------------------------------------------------------------


def bulk_data_uris(dataset: dict[str, Any], path: str = "") -> list[tuple[str, str, str]]:
    """Every (path, vr, uri) of a DICOM JSON data set's BulkDataURIs, nested ones included."""
    found = []
    for tag, attribute in dataset.items():
        where = f"{path}{tag}"
        if BULKDATA_URI in attribute:
            found.append((where, attribute.get("vr", ""), attribute[BULKDATA_URI]))
        if attribute.get("vr") == "SQ":
            for index, item in enumerate(attribute.get("Value") or []):
                found.extend(bulk_data_uris(item, f"{where}.{index}."))
    return found


def metadata(web: DICOMwebClient, args: argparse.Namespace) -> dict[str, Any]:
    if args.instance:
        datasets = [
            attempt(
                lambda: web.retrieve_instance_metadata(args.study, args.series, args.instance)
            )
        ]
    elif args.series:
        datasets = attempt(lambda: web.retrieve_series_metadata(args.study, args.series))
    else:
        datasets = attempt(lambda: web.retrieve_study_metadata(args.study))
    bulk_media_types = (args.bulk_media_type,) if args.bulk_media_type else None
    rebuilt_dir = Path(args.out) / "instances"
    bulk_dir = Path(args.out) / "bulkdata"
    rebuilt_dir.mkdir(parents=True, exist_ok=True)
    bulk_dir.mkdir(parents=True, exist_ok=True)
    instances = []
    for item in datasets:
        uid_attribute = item.get("00080018", {}).get("Value") or [""]
        uid = str(uid_attribute[0])
        fetched: dict[str, bytes] = {}
        bulk = []
        for where, vr, uri in bulk_data_uris(item):
            parts = attempt(lambda: web.retrieve_bulkdata(uri, media_types=bulk_media_types))
            content = b"".join(parts)
            fetched[uri] = content
            path = bulk_dir / f"{uid}.{where}.bin"
            path.write_bytes(content)
            bulk.append(
                {
                    "path": where,
                    "vr": vr,
                    "uri": uri,
                    "parts": len(parts),
                    "bytes": len(content),
                    "file": str(path),
                }
            )
        rebuilt = attempt(lambda: rebuild(item, fetched))
        file = rebuilt_dir / f"{uid}.dcm"
        rebuilt.save_as(file, enforce_file_format=True)
        instances.append(
            {"sop_instance_uid": uid, "json": item, "bulkdata": bulk, "file": str(file)}
        )
    return {"instances": instances}


def rebuild(item: dict[str, Any], fetched: dict[str, bytes]) -> Dataset:
    """The data set of a DICOM JSON object, bulk data taken from what was fetched."""

    def bulk(_tag: str, _vr: str, uri: str) -> bytes:
        return fetched[uri]

    ds = Dataset.from_json(item, bulk_data_uri_handler=bulk)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


# -- frames and rendered ----------------------------------------------------------------------


def frames(web: DICOMwebClient, args: argparse.Namespace) -> dict[str, Any]:
    numbers = [int(number) for number in args.frames.split(",")]
    media_types = None
    if args.media_type:
        media_types = (
            ((args.media_type, args.transfer_syntax),)
            if args.transfer_syntax
            else (args.media_type,)
        )
    contents = attempt(
        lambda: web.retrieve_instance_frames(
            args.study, args.series, args.instance, numbers, media_types=media_types
        )
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for number, content in zip(numbers, contents):
        path = out / f"frame-{number}.bin"
        path.write_bytes(content)
        written.append({"number": number, "bytes": len(content), "path": str(path)})
    return {"requested": numbers, "received": len(contents), "frames": written}


def split_multipart(content: bytes) -> list[bytes] | None:
    """The parts of a multipart/related body (RFC 2046 5.1.1), or None when `content` is not
    one: `retrieve_*_rendered` returns the body alone, without its Content-Type, and a rendered
    series or study is a multipart of rendered instances."""
    body = content[2:] if content.startswith(b"\r\n") else content
    if not body.startswith(b"--"):
        return None
    delimiter = b"\r\n" + body.split(b"\r\n", 1)[0]
    parts = []
    for chunk in (b"\r\n" + body).split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            return parts
        header_end = chunk.find(b"\r\n\r\n")
        if header_end < 0:
            raise ValueError("a part has no end of its header block")
        parts.append(chunk[header_end + 4 :])
    raise ValueError("the multipart body has no close delimiter")


def rendered(web: DICOMwebClient, args: argparse.Namespace) -> dict[str, Any]:
    from PIL import Image  # Pillow: a dependency of dicomweb-client

    media_types = (args.media_type,) if args.media_type else None
    if args.instance:
        content = attempt(
            lambda: web.retrieve_instance_rendered(
                args.study, args.series, args.instance, media_types=media_types
            )
        )
    else:
        content = attempt(
            lambda: web.retrieve_series_rendered(args.study, args.series, media_types=media_types)
        )
    Path(args.out).write_bytes(content)
    parts = attempt(lambda: split_multipart(content))
    images = []
    for part in parts if parts is not None else [content]:
        image = attempt(lambda: Image.open(BytesIO(part)))
        attempt(image.load)
        images.append(
            {
                "bytes": len(part),
                "format": image.format,
                "width": image.width,
                "height": image.height,
                "mode": image.mode,
            }
        )
    return {"multipart": parts is not None, "images": images, "path": args.out}


# -- command line -----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    commands = parser.add_subparsers(dest="command", required=True)

    stow = commands.add_parser("store")
    stow.add_argument("files", nargs="+")

    def uids(sub: argparse.ArgumentParser, instance_required: bool = False) -> None:
        sub.add_argument("--study", required=True)
        sub.add_argument("--series", required=instance_required)
        sub.add_argument("--instance", required=instance_required)

    wado = commands.add_parser("retrieve")
    uids(wado)
    wado.add_argument("--out", required=True)
    wado.add_argument("--transfer-syntax")

    qido = commands.add_parser("search")
    qido.add_argument("requests", help="a JSON file: a list of search requests")

    meta = commands.add_parser("metadata")
    uids(meta)
    meta.add_argument("--out", required=True)
    meta.add_argument("--bulk-media-type", help="what retrieve_bulkdata accepts (default: any)")

    frame = commands.add_parser("frames")
    uids(frame, instance_required=True)
    frame.add_argument("--frames", required=True)
    frame.add_argument("--media-type")
    frame.add_argument("--transfer-syntax")
    frame.add_argument("--out", required=True)

    render = commands.add_parser("rendered")
    uids(render)
    render.add_argument("--media-type")
    render.add_argument("--out", required=True)

    args = parser.parse_args()
    if getattr(args, "instance", None) and not args.series:
        parser.error("--instance needs --series")

    run = {
        "store": store,
        "retrieve": retrieve,
        "search": search,
        "metadata": metadata,
        "frames": frames,
        "rendered": rendered,
    }[args.command]
    try:
        report = run(client(args.url), args)
        code = 1 if report.get("failed") else 0
    except Failed as failure:
        report = {"error": failure.report}
        code = 1
    print(json.dumps(report))
    return code


if __name__ == "__main__":
    sys.exit(main())
