"""DICOMweb benchmark (issue 9), run by `scripts/bench web`: dimsum serve against Orthanc with its
DICOMweb plugin (Debian packages orthanc, orthanc-dicomweb), in one run, on the same data and
through the same Python HTTP client (keep-alive connections on 127.0.0.1):

1. STOW-RS ingest into a fresh server on a real disk: 600 CT files of 512 KB (one series) in
   requests of 50 instances, and 2000 files of 4 KB in requests of 100: files/s, MB/s.
2. Series metadata (WADO-RS) of that 600-instance series: p50/p99 over BENCH_WEB_METADATA
   requests (default 20), each answer checked to hold 600 data sets.
3. WADO-RS retrieval of the series (multipart/related application/dicom, as stored): MB/s.
4. QIDO-RS at study level on the synthetic archive of the archive benchmark (its three C-FIND
   queries, and OHIF Viewer's study list query): p50/p99 over BENCH_WEB_QUERIES requests
   (default 200) each, the number of results checked; dimsum on BENCH_ARCHIVE_STUDIES studies
   (1,000,000 instances by default) and on BENCH_ARCHIVE_PEER_STUDIES studies, Orthanc on
   BENCH_ARCHIVE_PEER_STUDIES studies loaded with DCMTK storescu.
Peak RSS of every server. Prints a markdown report on stdout.
"""

import http.client
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_lib import (PER_STUDY, QUERIES, ServerProcess, first_line, free_port, load_index,  # noqa: E402
                       log, peer_files, stop_servers, study_values)

REPO = os.environ["REPO"]
DIMSUM = os.environ["DIMSUM_BIN"]
LOADER = os.environ["LOADER_BIN"]
RUNS = int(os.environ["BENCH_RUNS"])
DATA = os.environ["BENCH_DATA"]
DISK = os.environ["BENCH_DISK"]
STUDIES = int(os.environ["BENCH_ARCHIVE_STUDIES"])
PEER_STUDIES = int(os.environ["BENCH_ARCHIVE_PEER_STUDIES"])
QIDO_REQUESTS = int(os.environ.get("BENCH_WEB_QUERIES", "200"))
METADATA_REQUESTS = int(os.environ.get("BENCH_WEB_METADATA", "20"))
HOST = "127.0.0.1"
AE = "ARCHIVE"
ENV = dict(os.environ, TCP_NODELAY="1", RUST_LIB_BACKTRACE="0")
ORTHANC_DICOMWEB = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
STARTUP_TIMEOUT = 600.0
REQUEST_TIMEOUT = 600.0
SERIES_FILES = 600
INGEST_SETS = [  # key, label, source folder, files, files per STOW-RS request
    ("ct", f"{SERIES_FILES} CT files of 512 KB (one series)", "ct", SERIES_FILES, 50),
    ("small", "2000 files of 4 KB", "small", 2000, 100),
]
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
DICOM_JSON = "application/dicom+json"
os.makedirs(DISK, exist_ok=True)
WORK = tempfile.mkdtemp(prefix="web-", dir=DISK)


def cleanup() -> None:
    stop_servers()
    shutil.rmtree(WORK, ignore_errors=True)


class Server(ServerProcess):
    """dimsum serve or Orthanc with DICOMweb, on free ports, listening on both when made;
    `sample()` records its VmHWM (bench_lib.ServerProcess)."""

    NAMES = {"serve": "dimsum serve", "orthanc": "Orthanc + DICOMweb plugin"}

    def __init__(self, kind: str, folder: str, label: str) -> None:
        self.kind = kind
        self.folder = folder
        self.dicom_port = free_port()
        self.http_port = free_port()
        os.makedirs(folder, exist_ok=True)
        log_path = os.path.join(WORK, f"{kind}-{label}-{self.http_port}.log")
        super().__init__(self.NAMES[kind], self.argv(), [self.http_port, self.dicom_port], log_path, ENV,
                         WORK, STARTUP_TIMEOUT)
        self.root = "/dicom-web"

    def argv(self) -> list[str]:
        if self.kind == "serve":
            return [DIMSUM, "serve", "--data", self.folder, "--bind", HOST, "--port", str(self.dicom_port),
                    "--http-port", str(self.http_port), "--aet", AE]
        config = os.path.join(self.folder, "orthanc.json")
        with open(config, "w") as out:
            json.dump({
                "Name": "bench", "StorageDirectory": os.path.join(self.folder, "storage"),
                "IndexDirectory": os.path.join(self.folder, "index"), "StorageCompression": False,
                "DicomServerEnabled": True, "DicomAet": AE, "DicomPort": self.dicom_port,
                "HttpPort": self.http_port, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
                "HttpServerEnabled": True, "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False,
                "LimitFindResults": 0, "LimitFindInstances": 0, "SaveJobs": False,
                "Plugins": [ORTHANC_DICOMWEB],
                "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
            }, out)
        return ["Orthanc", config]

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.http_port, timeout=REQUEST_TIMEOUT)


def generate(key: str, count: int) -> str:
    folder = os.path.join(DATA, key)
    marker_ok = os.path.isdir(folder) and len(os.listdir(folder)) == count
    if not marker_ok:
        log(f"generating {key} data into {folder} (kept for later runs)")
        subprocess.run([sys.executable, os.path.join(REPO, "tests", "data", "make_datasets.py"), folder,
                        "--batch", str(count), "--kind", key], capture_output=True, check=True)
    return folder


def request(connection: http.client.HTTPConnection, method: str, path: str, headers: dict,
            body=None) -> tuple[int, dict, bytes]:
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    data = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, data


# --- 1. STOW-RS ---------------------------------------------------------------------------------

BOUNDARY = "dimsum-bench-boundary-5f1c"


def stow_body(files: list[str]):
    """The multipart/related body of `files` (read as it is sent) and its length."""
    length = 0
    for path in files:
        length += len(f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n") + os.path.getsize(path) + 2
    length += len(f"--{BOUNDARY}--\r\n")

    def chunks():
        for path in files:
            yield f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            with open(path, "rb") as file:
                yield file.read()
            yield b"\r\n"
        yield f"--{BOUNDARY}--\r\n".encode()
    return chunks(), length


def stow(server: Server, files: list[str], per_request: int) -> float:
    connection = server.connection()
    started = time.perf_counter()
    for first in range(0, len(files), per_request):
        batch = files[first:first + per_request]
        body, length = stow_body(batch)
        status, _, data = request(connection, "POST", f"{server.root}/studies", {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
            "Accept": DICOM_JSON, "Content-Length": str(length)}, body)
        if status != 200:
            raise RuntimeError(f"STOW-RS to {server.name}: HTTP {status}: {data[:300]!r}")
        stored = json.loads(data).get("00081199", {}).get("Value", [])
        if len(stored) != len(batch):
            raise RuntimeError(f"STOW-RS to {server.name}: {len(stored)} of {len(batch)} instances referenced")
    elapsed = time.perf_counter() - started
    connection.close()
    server.sample()
    return elapsed


def series_of(folder: str) -> tuple[str, str]:
    """The Study and Series Instance UIDs of the CT set (one series)."""
    import pydicom
    first = sorted(os.listdir(folder))[0]
    ds = pydicom.dcmread(os.path.join(folder, first), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return statistics.median(ordered), p99


def metadata(server: Server, study: str, series: str) -> tuple[float, float]:
    connection = server.connection()
    samples = []
    for _ in range(METADATA_REQUESTS):
        started = time.perf_counter()
        status, _, data = request(connection, "GET", f"{server.root}/studies/{study}/series/{series}/metadata",
                                  {"Accept": DICOM_JSON})
        # Until the last byte is in; the client's JSON parsing is not the server's time.
        samples.append((time.perf_counter() - started) * 1000)
        if status != 200:
            raise RuntimeError(f"series metadata from {server.name}: HTTP {status}: {data[:300]!r}")
        count = len(json.loads(data))
        if count != SERIES_FILES:
            raise RuntimeError(f"series metadata from {server.name}: {count} data sets, {SERIES_FILES} expected")
    connection.close()
    server.sample()
    return percentiles(samples)


def retrieve(server: Server, study: str, series: str) -> tuple[float, int]:
    """Seconds and bytes of a WADO-RS retrieval of the series by curl (a C client, so that the
    client's speed does not cap the figure), after one untimed retrieval whose parts are
    counted and whose size the timed one must match."""
    expected = count_parts(server, study, series)
    url = f"http://{HOST}:{server.http_port}{server.root}/studies/{study}/series/{series}"
    done = subprocess.run(["curl", "-sS", "--fail", "-o", "/dev/null", "-H", f"Accept: {AS_STORED}",
                           "-w", "%{size_download} %{time_total}", url],
                          capture_output=True, timeout=REQUEST_TIMEOUT, env=ENV)
    if done.returncode != 0:
        raise RuntimeError(f"curl WADO-RS from {server.name}: {done.stderr.decode(errors='replace')[:300]}")
    size, seconds = done.stdout.decode().split()
    server.sample()
    if int(size) != expected:
        raise RuntimeError(f"WADO-RS from {server.name}: {size} bytes by curl, {expected} counted before")
    return float(seconds), int(size)


def count_parts(server: Server, study: str, series: str) -> int:
    """Bytes of a WADO-RS retrieval of the series, its parts counted (not timed)."""
    connection = server.connection()
    connection.request("GET", f"{server.root}/studies/{study}/series/{series}", headers={"Accept": AS_STORED})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"WADO-RS from {server.name}: HTTP {response.status}: {response.read()[:300]!r}")
    content_type = response.getheader("Content-Type", "")
    boundary = None
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        raise RuntimeError(f"WADO-RS from {server.name}: no boundary in {content_type!r}")
    delimiter = f"\r\n--{boundary}".encode()
    total, parts, tail = 0, 0, b"\r\n"
    while True:
        chunk = response.read(1 << 20)
        if not chunk:
            break
        total += len(chunk)
        window = tail + chunk
        parts += window.count(delimiter)
        tail = window[-(len(delimiter) - 1):]
    connection.close()
    if parts - 1 != SERIES_FILES:  # the closing delimiter is counted too
        raise RuntimeError(f"WADO-RS from {server.name}: {parts - 1} parts, {SERIES_FILES} expected")
    return total


# --- 4. QIDO-RS ---------------------------------------------------------------------------------

OHIF_QUERY = ("OHIF study list", "limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060"
              "&StudyDate=19520101-20251231")


def qido_queries(studies: int) -> list[tuple[str, str, int]]:
    """label, query string, expected number of results."""
    queries = []
    for label, attribute, value, predicate in QUERIES:
        if value is None:
            value = f"ACC{studies // 2 + 7:08}"
            expected = 1
        else:
            expected = sum(1 for study in range(studies) if predicate(study_values(study)))
        queries.append((label, urllib.parse.urlencode({attribute: value}), expected))
    queries.append((*OHIF_QUERY, min(101, studies)))
    return queries


def qido(server: Server, query: str, expected: int) -> tuple[float, float]:
    connection = server.connection()
    samples = []
    for _ in range(QIDO_REQUESTS):
        started = time.perf_counter()
        status, _, data = request(connection, "GET", f"{server.root}/studies?{query}", {"Accept": DICOM_JSON})
        samples.append((time.perf_counter() - started) * 1000)
        count = len(json.loads(data)) if status == 200 and data else 0
        if status not in (200, 204) or count != expected:
            raise RuntimeError(f"QIDO-RS {query} on {server.name}: HTTP {status}, {count} results,"
                               f" {expected} expected: {data[:200]!r}")
    connection.close()
    server.sample()
    return percentiles(samples)


def load_orthanc(studies: int) -> tuple[Server, float]:
    server = Server("orthanc", os.path.join(WORK, f"qido-orthanc-{studies}"), "qido")
    source = peer_files(DISK, studies)
    log(f"loading {studies * PER_STUDY} instances into Orthanc with DCMTK storescu")
    started = time.perf_counter()
    subprocess.run(["storescu", "-aec", AE, "+sd", "+r", HOST, str(server.dicom_port), source],
                   stdin=subprocess.DEVNULL, capture_output=True, env=ENV, check=True, timeout=7200)
    return server, studies * PER_STUDY / (time.perf_counter() - started)


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def mib(kib: int | None) -> str:
    return f"{kib / 1024:.0f} MiB" if kib else "?"


def main() -> None:
    load_at_start = os.getloadavg()[0]
    sources = {key: generate(folder, count if key != "ct" else 1000) for key, _, folder, count, _ in INGEST_SETS}
    files = {key: sorted(os.path.join(sources[key], name) for name in os.listdir(sources[key]))[:count]
             for key, _, _, count, _ in INGEST_SETS}
    sizes = {key: sum(os.path.getsize(path) for path in paths) for key, paths in files.items()}
    study, series = series_of(sources["ct"])
    errors: list[str] = []

    # 1-3: STOW-RS, then series metadata and WADO-RS on what the last run stored.
    stow_runs: dict = {}
    metadata_results: dict = {}
    retrieve_runs: dict = {}
    peaks: dict = {}
    for kind in ("serve", "orthanc"):
        for run_number in range(RUNS):
            log(f"STOW-RS into {Server.NAMES[kind]} run {run_number + 1}/{RUNS}")
            folder = os.path.join(WORK, f"stow-{kind}-{run_number}")
            try:
                server = Server(kind, folder, "stow")
            except RuntimeError as failure:
                errors.append(str(failure))
                break
            try:
                for key, _, _, _, per_request in INGEST_SETS:
                    os.sync()
                    stow_runs.setdefault((kind, key), []).append(stow(server, files[key], per_request))
                if run_number == RUNS - 1:
                    log(f"series metadata and WADO-RS from {server.name}")
                    metadata_results[kind] = metadata(server, study, series)
                    for _ in range(RUNS):
                        retrieve_runs.setdefault(kind, []).append(retrieve(server, study, series))
            except (RuntimeError, OSError, subprocess.SubprocessError, ValueError) as failure:
                errors.append(str(failure).replace("\n", " ")[:400])
                break
            finally:
                peaks[(kind, "stow")] = max(peaks.get((kind, "stow"), 0), server.stop())
                shutil.rmtree(folder, ignore_errors=True)

    # 4: QIDO-RS on the synthetic archives.
    qido_rows = []
    loads = {}
    for kind, studies in (("serve", STUDIES), ("serve", PEER_STUDIES), ("orthanc", PEER_STUDIES)):
        try:
            if kind == "serve":
                folder, rate = load_index(DISK, LOADER, studies)
                server = Server("serve", folder, "qido")
            else:
                server, rate = load_orthanc(studies)
            loads[(kind, studies)] = rate
        except (RuntimeError, OSError, subprocess.SubprocessError) as failure:
            errors.append(str(failure)[:400])
            continue
        try:
            for label, query, expected in qido_queries(studies):
                runs = []
                try:
                    for run_number in range(RUNS):
                        log(f"QIDO-RS {label} on {server.name} ({studies} studies) run {run_number + 1}")
                        runs.append(qido(server, query, expected))
                except (RuntimeError, OSError, ValueError) as failure:
                    # One query failing (e.g. a server matching differently) leaves the others.
                    errors.append(str(failure).replace("\n", " ")[:400])
                    continue
                qido_rows.append((kind, studies, label, expected, runs))
        finally:
            peaks[(kind, f"qido-{studies}")] = server.stop()

    out = ["## DICOMweb benchmark (dimsum serve, Orthanc + DICOMweb plugin) on 127.0.0.1\n"]
    out.append(f"Servers' data on a real disk ({DISK}); one Python http.client keep-alive connection as the"
               f" client of both (curl for the WADO-RS retrieval; latencies to the last byte of the answer, the"
               f" client's JSON parsing left out); median of {RUNS} runs.\n")
    out.append("### 1. STOW-RS ingest into a fresh server (index included)\n")
    out.append("| data set | server | runs (s) | files/s | MB/s |")
    out.append("|---|---|---|---|---|")
    medians = {}
    for key, label, _, count, per_request in INGEST_SETS:
        for kind in ("serve", "orthanc"):
            runs = stow_runs.get((kind, key), [])
            if runs:
                median = statistics.median(runs)
                medians[(kind, key)] = median
                cells = f"{fmt(count / median)} | {fmt(sizes[key] / median / 1e6)}"
            else:
                cells = "— | —"
            out.append(f"| {label}, {per_request} per request | {Server.NAMES[kind]} |"
                       f" {', '.join(f'{value:.2f}' for value in runs)} | {cells} |")
    out.append("")
    out.append(f"### 2-3. Series metadata ({SERIES_FILES} instances, {METADATA_REQUESTS} requests) and WADO-RS"
               " retrieval of the series (as stored)\n")
    out.append("| server | metadata p50 (ms) | metadata p99 (ms) | retrieval runs (s) | retrieval MB/s |")
    out.append("|---|---|---|---|---|")
    retrieve_rates = {}
    for kind in ("serve", "orthanc"):
        p50, p99 = metadata_results.get(kind, (None, None))
        runs = retrieve_runs.get(kind, [])
        if runs:
            seconds = statistics.median(run[0] for run in runs)
            retrieve_rates[kind] = runs[0][1] / seconds / 1e6
        out.append(f"| {Server.NAMES[kind]} | {f'{p50:.1f}' if p50 else '—'} | {f'{p99:.1f}' if p99 else '—'} |"
                   f" {', '.join(f'{run[0]:.2f}' for run in runs)} |"
                   f" {fmt(retrieve_rates[kind]) if kind in retrieve_rates else '—'} |")
    out.append("")
    out.append(f"### 4. QIDO-RS at study level, {QIDO_REQUESTS} requests per run\n")
    out.append("| server | studies (instances) | load rate (instances/s) | query | results | p50 (ms) | p99 (ms) |"
               " p99 runs (ms) |")
    out.append("|---|---|---|---|---|---|---|---|")
    qido_p99 = {}
    for kind, studies, label, expected, runs in qido_rows:
        p50 = statistics.median(run[0] for run in runs)
        p99 = statistics.median(run[1] for run in runs)
        qido_p99[(kind, studies, label)] = p99
        load = loads.get((kind, studies))
        out.append(f"| {Server.NAMES[kind]} | {studies:,} ({studies * PER_STUDY:,}) | {fmt(load) if load else '—'} |"
                   f" {label} | {expected} | {p50:.2f} | {p99:.2f} | {', '.join(f'{run[1]:.2f}' for run in runs)} |")
    out.append("")
    out.append("Peak RSS: " + ", ".join(f"{Server.NAMES[kind]} ({what}) {mib(kib)}"
                                       for (kind, what), kib in sorted(peaks.items())) + "\n")
    out.append("### Targets (issue 9)\n")
    out.append("| target | measured | |")
    out.append("|---|---|---|")
    for key, label, _, count, _ in INGEST_SETS:
        ours, theirs = medians.get(("serve", key)), medians.get(("orthanc", key))
        if ours and theirs:
            ratio = theirs / ours
            out.append(f"| STOW-RS {label}: 3× Orthanc | {fmt(count / ours)} against {fmt(count / theirs)} files/s:"
                       f" {ratio:.1f}× | {'met' if ratio >= 3 else '**NOT met**'} |")
    if "serve" in metadata_results:
        p99 = metadata_results["serve"][1]
        theirs = metadata_results.get("orthanc")
        versus = f" (Orthanc {theirs[1]:.0f} ms)" if theirs else ""
        out.append(f"| series metadata of {SERIES_FILES} instances under 100 ms | p99 {p99:.1f} ms{versus} |"
                   f" {'met' if p99 < 100 else '**NOT met**'} |")
    if "serve" in retrieve_rates and "orthanc" in retrieve_rates:
        ratio = retrieve_rates["serve"] / retrieve_rates["orthanc"]
        out.append(f"| WADO-RS retrieval: 3× Orthanc | {fmt(retrieve_rates['serve'])} against"
                   f" {fmt(retrieve_rates['orthanc'])} MB/s: {ratio:.1f}× | {'met' if ratio >= 3 else '**NOT met**'} |")
    for (kind, studies, label), p99 in qido_p99.items():
        if kind == "serve" and studies == STUDIES:
            out.append(f"| QIDO-RS {label} at {studies * PER_STUDY:,} instances | p99 {p99:.2f} ms | |")
    out.append("")
    out.append("### Versions and machine")
    out.append(f"- dimsum: {first_line([DIMSUM, '--version'])} (release build); {first_line(['Orthanc', '--version'])}"
               f" with {os.path.basename(ORTHANC_DICOMWEB)} (Debian packages orthanc, orthanc-dicomweb)")
    out.append(f"- {first_line(['rustc', '--version'])}; Python {platform.python_version()}")
    out.append(f"- machine: nproc {first_line(['nproc'])}; kernel {platform.release()}; load average (1 min) at"
               f" start {load_at_start:.2f}, at end {os.getloadavg()[0]:.2f}")
    if errors:
        out.append("\n### Failures\n")
        out += [f"- {error}" for error in errors]
    print("\n".join(out), flush=True)
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    import atexit
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    main()
