"""What the benchmarks written in Python share (scripts/bench, scripts/bench_web.py): processes and
ports on loopback, peak memory, and the synthetic archive (its values, its index built by the
synthetic_index example, and small Part 10 files with the same values for the peers)."""

import datetime
import os
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
