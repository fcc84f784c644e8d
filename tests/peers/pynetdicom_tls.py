#!/usr/bin/env python3
"""A pynetdicom 3.0 Verification SCU and SCP over TLS, used as a real peer by dimsum's interop tests.

Two modes, each printing ONE JSON object per line on stdout (flushed) for every event, and
appending the same lines to --record FILE when given:

  echoscu HOST PORT --ca CA [--cert CERT --key KEY] [--aet AE] [--aec AE] [--repeat N]
      {"event": "tls-failed", "error": ..., "reason": ..., "verify_message": ...}
      {"event": "tls", "version": "TLSv1.3", "cipher": ..., "peer_subject": {...}}
      {"event": "accepted", "acceptor_ae_title": ...}
      {"event": "rejected", "result": ..., "source": ..., "reason": ...}
      {"event": "c-echo", "message_id": ..., "status": ... | null}
      {"event": "released"} | {"event": "aborted"}
      {"event": "failed", "error": ...}            (not established)
    Exit status: 0 every echo answered 0x0000; 1 a non-success or missing status;
    3 association rejected; 5 aborted, TLS refused or failed to connect.

  echoscp PORT --ca CA --cert CERT --key KEY [--require-client-cert] [--aet AE]
      {"event": "ready", "port": ...}               (the socket listens)
      {"event": "tls-failed", "address": ..., "error": ..., "reason": ..., "verify_message": ...}
      {"event": "accepted", "calling_ae": ..., "called_ae": ..., "tls_version": ...,
       "cipher": ..., "peer_subject": {...} | null}
      {"event": "c-echo", "message_id": ..., "calling_ae": ...}
      {"event": "released", "calling_ae": ...} | {"event": "aborted", "calling_ae": ...}
    peer_subject is null when no certificate was verified (none shown, or --no-verify).
    It asks clients for a certificate and verifies one against --ca when shown; with
    --require-client-cert a client without one is refused. Stops cleanly on SIGTERM/SIGINT.

TLS: Python's ssl (OpenSSL 3), TLS 1.2 or later. Host names are not checked (as DCMTK and
dimsum do not): the server's chain must lead to --ca, whatever name it carries. --no-verify
accepts any server certificate (DCMTK's -ic).
"""

from __future__ import annotations

import argparse
import ssl
import sys
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification
from peer_records import Recorder, set_up_logging, text
from peer_server import end_handlers, serve_until_stopped

TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
]




def _ssl_error(exc: BaseException) -> dict[str, Any]:
    return {
        "error": str(exc),
        "reason": getattr(exc, "reason", None),
        "verify_message": getattr(exc, "verify_message", None),
    }


def _subject(sock: Any) -> dict[str, str] | None:
    """The peer certificate's subject as {attribute: value}, or None without one."""
    try:
        cert = sock.getpeercert()
    except (ValueError, OSError):
        return None
    if not cert:
        return None
    return {key: value for rdn in cert.get("subject", ()) for key, value in rdn}


def _tls_socket(assoc: Any) -> ssl.SSLSocket | None:
    transport = getattr(assoc.dul, "socket", None)
    sock = getattr(transport, "socket", None)
    return sock if isinstance(sock, ssl.SSLSocket) else None


def _tls_details(sock: ssl.SSLSocket | None) -> dict[str, Any]:
    if sock is None:
        return {"tls_version": None, "cipher": None, "peer_subject": None}
    cipher = sock.cipher()
    return {
        "tls_version": sock.version(),
        "cipher": cipher[0] if cipher else None,
        "peer_subject": _subject(sock),
    }


def client_context(args: argparse.Namespace, printer: Recorder) -> ssl.SSLContext:
    class RecordingSocket(ssl.SSLSocket):
        """Reports a failed client handshake (pynetdicom only logs it)."""

        def connect(self, address: Any) -> None:
            try:
                super().connect(address)
            except ssl.SSLError as exc:
                printer.write({"event": "tls-failed", **_ssl_error(exc)})
                raise

        def recv(self, *recv_args: Any, **kwargs: Any) -> bytes:
            # With TLS 1.3 a server's refusal of our certificate arrives after the handshake,
            # as an alert at the first read.
            try:
                return super().recv(*recv_args, **kwargs)
            except ssl.SSLError as exc:
                printer.write({"event": "tls-failed", **_ssl_error(exc)})
                raise

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.sslsocket_class = RecordingSocket
    context.check_hostname = False  # DICOM peers: trust the chain, not the name
    if args.no_verify:
        context.verify_mode = ssl.CERT_NONE
    else:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=args.ca)
    if args.cert:
        context.load_cert_chain(certfile=args.cert, keyfile=args.key)
    return context


def server_context(args: argparse.Namespace, printer: Recorder) -> ssl.SSLContext:
    class RecordingContext(ssl.SSLContext):
        """Reports a failed server handshake (pynetdicom's server drops it silently)."""

        def wrap_socket(self, sock: Any, *wrap_args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            try:
                address = sock.getpeername()
            except OSError:
                address = None
            try:
                return super().wrap_socket(sock, *wrap_args, **kwargs)
            except (ssl.SSLError, OSError) as exc:
                printer.write(
                    {
                        "event": "tls-failed",
                        "address": list(address) if address else None,
                        **_ssl_error(exc),
                    }
                )
                raise

    context = RecordingContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=args.cert, keyfile=args.key)
    context.load_verify_locations(cafile=args.ca)
    context.verify_mode = ssl.CERT_REQUIRED if args.require_client_cert else ssl.CERT_OPTIONAL
    return context


def echoscu(args: argparse.Namespace, printer: Recorder) -> int:
    ae = AE(ae_title=args.aet)
    ae.acse_timeout = args.timeout
    ae.dimse_timeout = args.timeout
    ae.network_timeout = args.timeout
    ae.connection_timeout = args.timeout
    ae.add_requested_context(Verification, TRANSFER_SYNTAXES)

    context = client_context(args, printer)
    assoc = ae.associate(
        args.host, args.port, ae_title=args.aec, tls_args=(context, args.host)
    )
    sock = _tls_socket(assoc)
    if sock is not None and assoc.is_established:
        details = _tls_details(sock)
        printer.write(
            {
                "event": "tls",
                "version": details["tls_version"],
                "cipher": details["cipher"],
                "peer_subject": details["peer_subject"],
            }
        )

    response = assoc.acceptor.primitive
    if assoc.is_rejected and response is not None:
        printer.write(
            {
                "event": "rejected",
                "result": response.result,
                "source": response.result_source,
                "reason": response.diagnostic,
            }
        )
        return 3
    if not assoc.is_established:
        printer.write(
            {
                "event": "failed",
                "error": "association not established (aborted, TLS refused or no connection)",
            }
        )
        return 5

    printer.write({"event": "accepted", "acceptor_ae_title": text(response.called_ae_title)})
    exit_code = 0
    for message_id in range(1, args.repeat + 1):
        status = assoc.send_c_echo(msg_id=message_id)
        value = int(status.Status) if "Status" in status else None
        printer.write({"event": "c-echo", "message_id": message_id, "status": value})
        if value is None:
            exit_code = 5 if assoc.is_aborted else 1
            break
        if value != 0:
            exit_code = 1
    if assoc.is_established:
        assoc.release()
    if assoc.is_aborted:
        printer.write({"event": "aborted"})
        return exit_code or 5
    printer.write({"event": "released"})
    return exit_code


def echoscp(args: argparse.Namespace, printer: Recorder) -> int:
    def on_accepted(event: Any) -> None:
        assoc = event.assoc
        requestor = assoc.requestor
        printer.write(
            {
                "event": "accepted",
                "calling_ae": text(requestor.ae_title),
                "called_ae": text(requestor.primitive.called_ae_title),
                **_tls_details(_tls_socket(assoc)),
            }
        )

    def on_echo(event: Any) -> int:
        printer.write(
            {
                "event": "c-echo",
                "message_id": int(event.request.MessageID),
                "calling_ae": text(event.assoc.requestor.ae_title),
            }
        )
        return 0x0000

    ae = AE(ae_title=args.aet)
    ae.network_timeout = args.timeout
    ae.acse_timeout = args.timeout
    ae.dimse_timeout = args.timeout
    ae.add_supported_context(Verification, TRANSFER_SYNTAXES)
    handlers = [
        (evt.EVT_ACCEPTED, on_accepted),
        (evt.EVT_C_ECHO, on_echo),
        *end_handlers(printer),
    ]
    return serve_until_stopped(
        ae,
        (args.bind, args.port),
        handlers,
        announce=lambda: printer.write({"event": "ready", "port": args.port}),
        ssl_context=server_context(args, printer),
    )


def main() -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--record", help="also append the JSON lines to this file")
    common.add_argument("--timeout", type=float, default=30.0, help="network/ACSE/DIMSE timeout")
    common.add_argument("--debug", action="store_true", help="pynetdicom debug log on stderr")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)

    scu = modes.add_parser("echoscu", parents=[common], help="send C-ECHO over TLS")
    scu.add_argument("host")
    scu.add_argument("port", type=int)
    scu.add_argument("--ca", help="trusted CA or server certificate (PEM)")
    scu.add_argument("--cert", help="our certificate (PEM); none for anonymous TLS")
    scu.add_argument("--key", help="our private key (PEM), with --cert")
    scu.add_argument("--no-verify", action="store_true", help="accept any server certificate")
    scu.add_argument("--aet", default="PYTLSSCU", help="our (calling) AE title")
    scu.add_argument("--aec", default="ANY-SCP", help="the peer's (called) AE title")
    scu.add_argument("--repeat", type=int, default=1, help="number of C-ECHO requests")

    scp = modes.add_parser("echoscp", parents=[common], help="answer C-ECHO over TLS")
    scp.add_argument("port", type=int)
    scp.add_argument("--bind", default="127.0.0.1")
    scp.add_argument("--ca", required=True, help="trusted CA or client certificate (PEM)")
    scp.add_argument("--cert", required=True, help="our certificate (PEM)")
    scp.add_argument("--key", required=True, help="our private key (PEM)")
    scp.add_argument(
        "--require-client-cert",
        action="store_true",
        help="refuse clients that show no certificate",
    )
    scp.add_argument("--aet", default="PYTLSSCP", help="our AE title")

    args = parser.parse_args()
    if args.mode == "echoscu":
        if bool(args.cert) != bool(args.key):
            parser.error("--cert and --key go together")
        if not args.ca and not args.no_verify:
            parser.error("--ca is required unless --no-verify is given")

    set_up_logging(args.debug)

    printer = Recorder(args.record, echo=True)
    try:
        if args.mode == "echoscu":
            return echoscu(args, printer)
        return echoscp(args, printer)
    finally:
        printer.close()


if __name__ == "__main__":
    sys.exit(main())
