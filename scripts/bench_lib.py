"""What the benchmarks written in Python share (scripts/bench, scripts/bench_web.py): processes and
ports on loopback, peak memory, and the synthetic archive (its values, its index built by the
synthetic_index example, and small Part 10 files with the same values for the peers)."""

import datetime
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time

PER_STUDY = 10  # instances per synthetic study (2 series)


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def is_listening(port: int) -> bool:
    suffix = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    if fields[3] == "0A" and fields[1].endswith(suffix):
                        return True
        except OSError:
            continue
    return False


def peak_rss_kib(pid: int) -> int | None:
    """VmHWM of a running process and of its live children (dcmqrscp forks per association)."""
    peak = None
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            pids += [int(child) for child in listing.read().split()]
    except OSError:
        pass
    for one in pids:
        try:
            with open(f"/proc/{one}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak or 0, int(line.split()[1]))
        except OSError:
            continue
    return peak


def first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=20)
        text = (done.stdout + done.stderr).decode(errors="replace").strip()
        return text.splitlines()[0].strip("$ ").strip() if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def study_values(study: int) -> dict:
    """The values synthetic_index gives study `study` (see crates/pacs/examples/synthetic_index.rs)."""
    patient = study // 2
    day = datetime.date(2015, 1, 1) + datetime.timedelta(days=study % 3650)
    return {"name": f"SURNAME{patient % 1000:03}^GIVEN{patient // 1000:03}", "date": day.strftime("%Y%m%d"),
            "accession": f"ACC{study:08}"}


def load_index(disk: str, loader: str, studies: int) -> tuple[str, float | None]:
    """The synthetic index of `studies` studies (built once by `loader`, the synthetic_index
    example, and kept under `disk`), and the rate it was loaded at."""
    folder = os.path.join(disk, f"index-{studies}")
    marker = os.path.join(disk, f"index-{studies}.done")
    if os.path.exists(marker):
        with open(marker) as done:
            return folder, float(done.read().strip() or 0) or None
    shutil.rmtree(folder, ignore_errors=True)
    log(f"loading the synthetic index of {studies} studies ({studies * PER_STUDY} instances) into {folder}")
    started = time.perf_counter()
    done = subprocess.run([loader, folder, str(studies), str(PER_STUDY)], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=7200)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"bench: ERROR: synthetic_index failed: {done.stderr.decode(errors='replace')[-400:]}")
    rate = studies * PER_STUDY / elapsed
    with open(marker, "w") as out:
        out.write(f"{rate:.0f}\n")
    return folder, rate


def peer_files(disk: str, studies: int) -> str:
    """Tiny Part 10 files with the synthetic index's values, one folder per study set size."""
    folder = os.path.join(disk, f"files-{studies}")
    marker = folder + ".done"
    if os.path.exists(marker):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    log(f"writing {studies * PER_STUDY} small files of {studies} studies into {folder}")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    root = "1.2.826.0.1.3680043.10.1000"
    for study in range(studies):
        values = study_values(study)
        patient = study // 2
        for number in range(PER_STUDY):
            series = number % 2
            ds = Dataset()
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            ds.StudyInstanceUID = f"{root}.{study}"
            ds.SeriesInstanceUID = f"{root}.{study}.{series}"
            ds.SOPInstanceUID = f"{root}.{study}.{series}.{number}"
            ds.StudyDate = values["date"]
            ds.StudyTime = f"{study % 24:02}{study % 60:02}00"
            ds.AccessionNumber = values["accession"]
            ds.Modality = "CT" if series == 0 else "SR"
            ds.ReferringPhysicianName = "REFERRER^SYNTHETIC"
            ds.StudyDescription = "SYNTHETIC CT CHEST"
            ds.PatientName = values["name"]
            ds.PatientID = f"PID{patient:08}"
            ds.PatientSex = "F" if patient % 2 == 0 else "M"
            ds.StudyID = str(study % 100000)
            ds.SeriesNumber = series + 1
            ds.InstanceNumber = number + 1
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
            ds.save_as(os.path.join(folder, f"{study:07}_{number:02}.dcm"), enforce_file_format=True)
    with open(marker, "w") as out:
        out.write("done\n")
    return folder


# The C-FIND / QIDO-RS queries at study level on the synthetic archive: label, attribute, value
# (None: an accession number in the middle of the index), and which studies match.
QUERIES = [
    ("wildcard patient name", "PatientName", "SURNAME042^*", lambda v: v["name"].startswith("SURNAME042^")),
    ("date range (3 days)", "StudyDate", "20200101-20200103",
     lambda v: "20200101" <= v["date"] <= "20200103"),
    ("accession number", "AccessionNumber", None, None),
]


def terminate(process: subprocess.Popen, grace: float = 30.0) -> None:
    """Stops a server the bench started: SIGTERM, then SIGKILL after `grace` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# The store benchmarks' data (archive and scale modes): key, label, files. Each kind is one study
# and one series (tests/data/make_datasets.py --batch), generated once into BENCH_DATA/<key>.
BATCH_SETS = [("ct", "CT files of 512 KB", 1000), ("small", "files of 4 KB", 2000)]


def generate_batch(repo: str, data: str, key: str, count: int) -> tuple[str, list[dict]]:
    """The folder of `count` generated `key` files (kept for later runs: files already there are
    not written again) and make_datasets.py's record of each (path, bytes, study_instance_uid…)."""
    folder = os.path.join(data, key)
    log(f"generating {key} data into {folder} (kept for later runs)")
    done = subprocess.run([sys.executable, os.path.join(repo, "tests", "data", "make_datasets.py"), folder,
                           "--batch", str(count), "--kind", key], capture_output=True, check=True)
    files = json.loads(done.stdout)["files"]
    if len(os.listdir(folder)) != count:
        raise SystemExit(f"bench: ERROR: {folder} holds other files than the {count} {key} files")
    return folder, files


# The study-level C-FIND of the archive benchmarks through `dimsum findscu --repeat N --timing`.
RETURN_KEYS = ["PatientName", "PatientID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
               "StudyInstanceUID", "StudyDescription"]
TIMING = re.compile(r"timing: (\d+) queries, p50 ([\d.]+) ms, p99 ([\d.]+) ms, (\d+) matches")


def query_keys(studies: int, index: int) -> tuple[list[str], int]:
    """QUERIES[index] on the synthetic archive of `studies` studies: findscu's -k keys and the
    number of studies it matches."""
    _label, attribute, value, predicate = QUERIES[index]
    if value is None:  # an accession number in the middle of the index
        value = f"ACC{studies // 2 + 7:08}"
        expected = 1
    else:
        expected = sum(1 for study in range(studies) if predicate(study_values(study)))
    keys = ["QueryRetrieveLevel=STUDY", f"{attribute}={value}"] + [k for k in RETURN_KEYS if k != attribute]
    return keys, expected


def timed_find_argv(dimsum: str, ae: str, max_pdu: str, host: str, port: int, keys: list[str],
                    repeat: int) -> list[str]:
    """dimsum findscu sending the query `repeat` times on one association and timing each."""
    argv = [dimsum, "findscu", "-S", "--call", ae, "--max-pdu", max_pdu, "--repeat", str(repeat), "--timing"]
    for key in keys:
        argv += ["-k", key]
    return argv + [host, str(port)]


def parse_timing(output: str, repeat: int, expected: int) -> dict:
    """p50/p99 (ms) from findscu's timing line; every query must have matched `expected` studies."""
    timing = TIMING.search(output)
    if not timing:
        raise RuntimeError(f"no timing line in: {output.strip()[-300:]}")
    queries, p50, p99, matches = timing.groups()
    if int(queries) != repeat or int(matches) != repeat * expected:
        raise RuntimeError(f"{queries} queries and {matches} matches; {repeat} and {repeat * expected} expected")
    return {"p50": float(p50), "p99": float(p99), "matches": expected}


def machine_lines(disk: str | None, load_at_start: float) -> list[str]:
    """The report's lines on the machine (cores, CPU, kernel, memory, the disk under `disk`) and
    its load average at the start and now."""
    cpu = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = first_line(["sh", "-c", "free -g | awk 'NR == 2 {print $2 \" GiB memory\"}'"])
    machine = f"- machine: nproc {first_line(['nproc'])}; CPU: {cpu}; kernel: {platform.release()}; {memory}"
    if disk:
        device = first_line(["sh", "-c", f"df -h {disk} | awk 'NR == 2 {{print $1}}'"])
        machine += f"; disk {device}"
    lines = [machine, f"- load average (1 min) at start {load_at_start:.2f}, at end {os.getloadavg()[0]:.2f}"]
    if os.environ.get("BENCH_MEMORY_NOTE"):
        lines.append(f"- guest memory: {os.environ['BENCH_MEMORY_NOTE']}")
    return lines


class ServerProcess:
    """A server process the bench started, its output in `log_path`. Once made, it is listening on
    every port of `ports`; `sample()` records its peak RSS (VmHWM, see peak_rss_kib) and fails if
    it has exited; `stop()` ends it and returns that peak (KiB). The ones not stopped yet are in
    RUNNING_SERVERS (stop_servers() at exit)."""

    def __init__(self, name: str, argv: list[str], ports: list[int], log_path: str, env: dict, cwd: str,
                 timeout: float) -> None:
        self.name = name
        self.log_path = log_path
        self.peak_kib = 0
        with open(log_path, "wb") as log_file:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file,
                                            stderr=subprocess.STDOUT, env=env, cwd=cwd)
        RUNNING_SERVERS.append(self)
        deadline = time.monotonic() + timeout
        while not all(is_listening(port) for port in ports):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start: {self.tail()}")
            time.sleep(0.05)

    def tail(self) -> str:
        try:
            with open(self.log_path, "rb") as log_file:
                return log_file.read().decode(errors="replace").strip()[-400:].replace("\n", " ")
        except OSError:
            return "?"

    def sample(self) -> None:
        self.peak_kib = max(self.peak_kib, peak_rss_kib(self.process.pid) or 0)
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.process.returncode}): {self.tail()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.peak_kib = max(self.peak_kib, peak_rss_kib(self.process.pid) or 0)
        terminate(self.process)
        if self in RUNNING_SERVERS:
            RUNNING_SERVERS.remove(self)
        return self.peak_kib


RUNNING_SERVERS: list[ServerProcess] = []


def stop_servers() -> None:
    for server in list(RUNNING_SERVERS):
        server.stop()
