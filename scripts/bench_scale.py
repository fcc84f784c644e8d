"""Scale-out benchmark (issue 10, docs/scale-out.md), run by `scripts/bench scale`: dimsum serve
with its index on PostgreSQL, as one node and as two nodes sharing one database and one data
folder, against Orthanc with its PostgreSQL index plugin and, for reference, dimsum serve on its
default SQLite index; in one run, on the same data, everything on a real disk (BENCH_DISK).

1. Ingest (C-STORE, index included) of the archive benchmark's 1000 CT files of 512 KB and 2000
   files of 4 KB (BENCH_SCALE_CT and BENCH_SCALE_SMALL send only the first N of each), each set
   sent by BENCH_SCALE_SENDERS (default 4) DCMTK storescu processes at once, each an equal share
   of the files:
   - 1 dimsum node on PostgreSQL pinned to core 0 (taskset), every sender to it;
   - 2 dimsum nodes on one PostgreSQL database and one data folder, node A on core 0 and node B
     on core 1, half the senders to each;
   - Orthanc with the PostgreSQL index plugin (Debian orthanc-postgresql; the files on disk, as
     dimsum's), on core 0, every sender to it;
   - 1 dimsum node on SQLite, on core 0, every sender to it;
   - the two PostgreSQL setups again with each node limited to BENCH_SCALE_NODE_CPU (default
     0.25; 0 leaves them out) of its core by a cgroup CPU quota: on 2 cores shared with
     PostgreSQL and the senders, this gives each node a compute budget of its own, so that the
     ratio of 2 nodes to 1 shows how nodes add up.
   The senders and PostgreSQL are not pinned. Every measurement is run BENCH_RUNS times against
   a fresh database and data folder (median reported); every run checks that each sender had
   every file acknowledged, that each server's index counts every instance (a C-FIND of the
   study's Number of Study Related Instances on every node) and that every file is on disk: a
   run that lost an instance is an error, not a figure. files/s, MB/s, servers' peak RSS, and
   the ratios 2 nodes / 1 node and dimsum (1 node) / Orthanc.
2. C-FIND at STUDY level at BENCH_ARCHIVE_STUDIES studies (default 100,000, i.e. 1,000,000
   instances) on PostgreSQL: the archive benchmark's three queries, BENCH_ARCHIVE_FINDS queries
   (default 200) over one association through `dimsum findscu --timing` (p50, p99). The index is
   loaded once by the synthetic_index example into the database synthetic_<STUDIES>.

The PostgreSQL server (fsync on, scripts/postgres with DIMSUM_PG_FSYNC=on) is a cluster kept in
BENCH_DISK/pg, started for the run and stopped at its end, so the synthetic index is loaded
once. Prints a markdown report on stdout.
"""

import atexit
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_lib import (BATCH_SETS, PER_STUDY, QUERIES, first_line, free_port, generate_batch,  # noqa: E402
                       log, machine_lines, parse_timing, query_keys, ServerProcess, stop_servers, timed_find_argv)

REPO = os.environ["REPO"]
DIMSUM = os.environ["DIMSUM_BIN"]
LOADER = os.environ["LOADER_BIN"]
RUNS = int(os.environ["BENCH_RUNS"])
DATA = os.environ["BENCH_DATA"]
DISK = os.environ["BENCH_DISK"]
STUDIES = int(os.environ["BENCH_ARCHIVE_STUDIES"])
FINDS = int(os.environ["BENCH_ARCHIVE_FINDS"])
SEND = {"ct": int(os.environ.get("BENCH_SCALE_CT", "1000")),
        "small": int(os.environ.get("BENCH_SCALE_SMALL", "2000"))}
SENDERS = int(os.environ.get("BENCH_SCALE_SENDERS", "4"))
# The share of its core each node of the CPU-limited setups may use (a cgroup CPU quota, on top of
# its taskset core): each node then has a compute budget of its own, as on a machine of its own,
# and the senders and PostgreSQL use the rest of the 2 cores (0: no CPU-limited setups).
NODE_CPU = float(os.environ.get("BENCH_SCALE_NODE_CPU", "0.25"))
CPU_PERIOD_US = 10_000
HOST = "127.0.0.1"
AE = "ARCHIVE"
MAX_PDU = "131072"
ENV = dict(os.environ, TCP_NODELAY="1", RUST_LIB_BACKTRACE="0")
# Extra flags for every dimsum serve (e.g. BENCH_SCALE_SERVE_ARGS=--fsync: durable commits).
SERVE_ARGS = os.environ.get("BENCH_SCALE_SERVE_ARGS", "").split()
CLIENT_TIMEOUT = 900.0
STARTUP_TIMEOUT = 120.0
LOAD_TIMEOUT = 4 * 3600.0
ORTHANC_PG_INDEX = "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so"
# Orthanc's index connections: the plugin's default, 1. With 4 (one per sender), Orthanc 1.10.1
# refused some stores of every other run (Refused: OutOfResources; its log: "Database could not
# serialize access due to concurrent update"): concurrent stores into one study conflict, and
# its retries give up.
ORTHANC_PG_CONNECTIONS = 1
PG_DIR = os.path.join(DISK, "pg")
SYNTHETIC_DB = f"synthetic_{STUDIES}"

os.makedirs(DISK, exist_ok=True)
WORK = tempfile.mkdtemp(prefix="scale-", dir=DISK)  # data folders and server logs
# The senders' logs stay off the disk being measured.
CLIENT_LOGS = tempfile.mkdtemp(prefix="dimsum-bench-scale-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)


# --- PostgreSQL ---------------------------------------------------------------------------------


class Cluster:
    """The bench's PostgreSQL server in PG_DIR: created by `scripts/postgres start` the first time,
    started again by `scripts/postgres restart` later (its databases kept), stopped by `stop()`."""

    def __init__(self) -> None:
        script = os.path.join(REPO, "scripts", "postgres")
        existing = os.path.exists(os.path.join(PG_DIR, "data", "PG_VERSION"))
        argv = [script, "restart" if existing else "start", PG_DIR]
        log(f"PostgreSQL: {' '.join(argv[1:])} (fsync on)")
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              env=dict(os.environ, DIMSUM_PG_FSYNC="on"), timeout=600)
        if done.returncode != 0:
            raise SystemExit(f"bench: ERROR: scripts/postgres {argv[1]} {PG_DIR} failed:"
                             f" {done.stderr.decode(errors='replace').strip()[-400:]}")
        with open(os.path.join(PG_DIR, "url")) as url:
            self.url = url.read().strip()
        self.created: list[str] = []
        if self.query("SHOW fsync") != "on":
            raise SystemExit(f"bench: ERROR: the PostgreSQL cluster in {PG_DIR} runs with fsync off;"
                             " remove that folder for a new one with fsync on")

    def database_url(self, database: str) -> str:
        return f"{self.url.rsplit('/', 1)[0]}/{database}"

    def query(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                               self.database_url(database), "-c", sql], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {done.stderr.decode(errors='replace').strip()[-300:]}")
        return done.stdout.decode().strip()

    def create(self, database: str) -> str:
        self.query(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        self.query(f'CREATE DATABASE "{database}"')
        if database != SYNTHETIC_DB:
            self.created.append(database)
        return self.database_url(database)

    def drop_created(self) -> None:
        for database in self.created:
            try:
                self.query(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            except (RuntimeError, subprocess.TimeoutExpired) as failure:
                log(f"could not drop {database}: {failure}")
        self.created.clear()

    def settle(self) -> None:
        """Writes out what earlier runs left dirty, so that no run pays for the one before it."""
        self.query("CHECKPOINT")
        os.sync()

    def cpu_seconds(self) -> float:
        """CPU time of the server so far: the postmaster's (with its reaped children's) and its
        live children's (the backends, checkpointer, WAL writer…)."""
        with open(os.path.join(PG_DIR, "data", "postmaster.pid")) as pid_file:
            postmaster = int(pid_file.readline())
        total = cpu_seconds(postmaster, children=True)
        try:
            with open(f"/proc/{postmaster}/task/{postmaster}/children") as listing:
                total += sum(cpu_seconds(int(child)) for child in listing.read().split())
        except OSError:
            pass
        return total

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster, as `pg_ctl stop -m fast`), the data kept."""
        try:
            with open(os.path.join(PG_DIR, "data", "postmaster.pid")) as pid_file:
                pid = int(pid_file.readline())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 120
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.1)


cluster: Cluster | None = None


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User and system CPU time of a process (and of its reaped children), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(value) for value in fields[11:15 if children else 13])  # utime stime [cutime cstime]
    return ticks / os.sysconf("SC_CLK_TCK")


# --- servers ------------------------------------------------------------------------------------


def cpu_cgroup(name: str, share: float) -> str:
    """A new cgroup `name` whose processes may use `share` of one CPU (cgroup v2 cpu.max, or v1
    cpu.cfs_quota_us), its quota renewed every CPU_PERIOD_US; its directory."""
    quota = max(1000, int(share * CPU_PERIOD_US))
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        folder, limits = f"/sys/fs/cgroup/{name}", {"cpu.max": f"{quota} {CPU_PERIOD_US}"}
    else:
        folder = f"/sys/fs/cgroup/cpu/{name}"
        limits = {"cpu.cfs_period_us": str(CPU_PERIOD_US), "cpu.cfs_quota_us": str(quota)}
    try:
        os.makedirs(folder, exist_ok=True)
        for file_name, value in limits.items():
            with open(os.path.join(folder, file_name), "w") as limit:
                limit.write(value)
    except OSError as error:
        raise RuntimeError(f"cannot limit a node's CPU with a cgroup at {folder} ({error}): run as root"
                           " with the cgroup cpu controller, or set BENCH_SCALE_NODE_CPU=0") from error
    return folder


class Server(ServerProcess):
    """One server process, pinned to `cpu` with taskset (None: not pinned) and, with `cpu_share`,
    limited to that share of it (a cgroup of its own), listening on `port` (and `http_port`)."""

    def __init__(self, name: str, argv: list[str], port: int, cpu: int | None, http_port: int | None = None,
                 cpu_share: float | None = None) -> None:
        self.port = port
        self.http_port = http_port
        self.cgroup = None
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu), *argv]
        if cpu_share:
            # The process joins the cgroup before it starts (exec), so all its threads are in it.
            self.cgroup = cpu_cgroup(f"dimsum-bench-{os.getpid()}-{port}", cpu_share)
            argv = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', self.cgroup, *argv]
        log_path = os.path.join(WORK, f"{re.sub(r'[^A-Za-z0-9]+', '-', name)}-{port}.log")
        try:
            super().__init__(name, argv, [port] + ([http_port] if http_port else []), log_path, ENV, WORK,
                             STARTUP_TIMEOUT)
        except RuntimeError:
            self.remove_cgroup()
            raise

    def stop(self) -> int:
        peak = super().stop()
        self.remove_cgroup()
        return peak

    def remove_cgroup(self) -> None:
        if self.cgroup:
            try:
                os.rmdir(self.cgroup)
                self.cgroup = None
            except OSError as error:
                log(f"cgroup {self.cgroup} stays: {error}")


def dimsum_node(folder: str, cpu: int | None, index_url: str | None = None, node: str | None = None,
                cpu_share: float | None = None) -> Server:
    """dimsum serve on `folder`: its SQLite index, or the PostgreSQL one at `index_url` as `node`;
    on core `cpu`, limited to `cpu_share` of it."""
    port = free_port()
    argv = [DIMSUM, "serve", "--data", folder, "--bind", HOST, "--port", str(port), "--aet", AE, "--max-pdu", MAX_PDU,
            "--no-http"]
    argv += SERVE_ARGS
    if index_url:
        argv += ["--index", index_url, "--node", node or "a"]
    return Server(f"dimsum serve {node or 'sqlite'}", argv, port, cpu, cpu_share=cpu_share)


def orthanc(folder: str, cpu: int, index_url: str) -> Server:
    """Orthanc with its index in PostgreSQL (the index plugin) and its files in `folder`/storage."""
    port, http_port = free_port(), free_port()
    os.makedirs(folder, exist_ok=True)
    config = os.path.join(folder, "orthanc.json")
    with open(config, "w") as out:
        json.dump({
            "Name": "bench", "StorageDirectory": os.path.join(folder, "storage"),
            "IndexDirectory": os.path.join(folder, "index"), "StorageCompression": False,
            "DicomServerEnabled": True, "DicomAet": AE, "DicomPort": port, "HttpPort": http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "HttpServerEnabled": True,
            "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True, "DicomCheckCalledAet": False,
            "LimitFindResults": 0, "MaximumPduLength": int(MAX_PDU), "SaveJobs": False,
            "Plugins": [ORTHANC_PG_INDEX],
            "PostgreSQL": {"EnableIndex": True, "EnableStorage": False, "ConnectionUri": index_url,
                           "IndexConnectionsCount": ORTHANC_PG_CONNECTIONS},
        }, out)
    return Server("Orthanc + PostgreSQL", ["Orthanc", config], port, cpu, http_port)


def cleanup() -> None:
    stop_servers()
    if cluster:
        cluster.drop_created()
        cluster.stop()
    shutil.rmtree(WORK, ignore_errors=True)
    shutil.rmtree(CLIENT_LOGS, ignore_errors=True)


atexit.register(cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))


# --- 1. ingest ----------------------------------------------------------------------------------

SETUPS = [  # key, label
    ("pg1", "dimsum serve on PostgreSQL, 1 node (core 0)"),
    ("pg2", "dimsum serve on PostgreSQL, 2 nodes (cores 0 and 1)"),
    ("orthanc", "Orthanc + PostgreSQL index (core 0)"),
    ("sqlite", "dimsum serve on SQLite, 1 node (core 0)"),
] + ([
    ("pg1-limited", f"dimsum serve on PostgreSQL, 1 node limited to {NODE_CPU:g} of core 0"),
    ("pg2-limited", f"dimsum serve on PostgreSQL, 2 nodes limited to {NODE_CPU:g} of cores 0 and 1"),
] if NODE_CPU else [])
ACKNOWLEDGED = re.compile(r"Received Store Response \((Success|Warning[^)]*)\)")
NUMBER_OF_INSTANCES = re.compile(r"\(0020,1208\) IS \[?(\d+)")


def start_setup(key: str, folder: str, run_number: int) -> list[Server]:
    """The setup's servers, each on a fresh database (PostgreSQL) and a fresh data folder."""
    if key == "sqlite":
        return [dimsum_node(folder, 0)]
    index_url = cluster.create(f"bench_scale_{key}_{run_number}")
    if key == "orthanc":
        return [orthanc(folder, 0, index_url)]
    share = NODE_CPU if key.endswith("-limited") else None
    nodes = [dimsum_node(folder, 0, index_url, "a", share)]
    if key.startswith("pg1"):
        return nodes
    try:
        nodes.append(dimsum_node(folder, 1, index_url, "b", share))
    except RuntimeError:
        nodes[0].stop()
        raise
    return nodes


def send(files: list[str], servers: list[Server]) -> float:
    """Sends `files` with SENDERS DCMTK storescu processes at once (sender i: every SENDERS-th file
    from the i-th, to servers[i * len(servers) // SENDERS]); the time from the first start to the
    last exit. Every file must have been acknowledged (Success or Warning)."""
    started = time.perf_counter()
    senders = []
    for number in range(SENDERS):
        share = files[number::SENDERS]
        server = servers[number * len(servers) // SENDERS]
        log_path = os.path.join(CLIENT_LOGS, f"storescu-{number}.log")
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(["storescu", "-v", "-aec", AE, "-pdu", MAX_PDU, HOST, str(server.port), *share],
                                       stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=ENV)
        senders.append((process, share, log_path, server))
    problems = []
    for process, share, log_path, server in senders:
        try:
            process.wait(timeout=max(1.0, CLIENT_TIMEOUT - (time.perf_counter() - started)))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    elapsed = time.perf_counter() - started
    for process, share, log_path, server in senders:
        with open(log_path, "rb") as log_file:
            output = log_file.read().decode(errors="replace")
        os.remove(log_path)
        acknowledged = len(ACKNOWLEDGED.findall(output))
        if process.returncode != 0 or acknowledged != len(share):
            problems.append(f"storescu → {server.name} exited {process.returncode} with {acknowledged} of"
                            f" {len(share)} files acknowledged: {output.strip()[-300:]}")
    for server in servers:
        server.sample()
    if problems:
        logs = "; ".join(f"{server.name} log: {server.tail()}" for server in servers)
        raise RuntimeError(f"{'; '.join(problems)}; {logs}")
    return elapsed


def indexed_instances(server: Server, study_uid: str) -> int:
    """The study's Number of Study Related Instances as the server's C-FIND answers it."""
    done = subprocess.run([DIMSUM, "findscu", "-S", "--call", AE, "-k", "QueryRetrieveLevel=STUDY",
                           "-k", f"StudyInstanceUID={study_uid}", "-k", "NumberOfStudyRelatedInstances",
                           HOST, str(server.port)], stdin=subprocess.DEVNULL, capture_output=True, env=ENV,
                          timeout=CLIENT_TIMEOUT)
    output = (done.stdout + done.stderr).decode(errors="replace")
    counts = NUMBER_OF_INSTANCES.findall(output)
    if done.returncode != 0 or len(counts) != 1:
        raise RuntimeError(f"C-FIND of the study on {server.name}: exit {done.returncode}, {len(counts)} answers:"
                           f" {output.strip()[-300:]}")
    return int(counts[0])


def stored_files(folder: str) -> int:
    return sum(len(names) for _root, _dirs, names in os.walk(os.path.join(folder, "storage")))


def ingest(sets: list) -> tuple[dict, dict, dict]:
    """Runs every setup BENCH_RUNS times, interleaved; seconds per (setup, set), the first error of
    a setup (the set it failed on, the message), peak RSS (KiB) per (setup, node index)."""
    results: dict = {}
    errors: dict = {}
    peaks: dict = {}
    written: list[str] = []
    for run_number in range(RUNS):
        for key, label in SETUPS:
            if key in errors:
                continue
            log(f"ingest: {label} run {run_number + 1}/{RUNS}")
            folder = os.path.join(WORK, f"ingest-{key}-{run_number}")
            written.append(folder)
            servers: list[Server] = []
            set_key = sets[0][0]
            try:
                servers = start_setup(key, folder, run_number)
                sent = 0
                for set_key, _label, files, _bytes, study_uid in sets:
                    cluster.settle()
                    server_cpu = sum(cpu_seconds(server.process.pid) for server in servers)
                    pg_cpu = cluster.cpu_seconds()
                    seconds = send(files, servers)
                    run = {"seconds": seconds, "pg_cpu": cluster.cpu_seconds() - pg_cpu,
                           "server_cpu": sum(cpu_seconds(server.process.pid) for server in servers) - server_cpu}
                    sent += len(files)
                    for server in servers:
                        counted = indexed_instances(server, study_uid)
                        if counted != len(files):
                            raise RuntimeError(f"{server.name} counts {counted} instances in the study of the"
                                               f" {len(files)} {set_key} files sent")
                    on_disk = stored_files(folder)
                    if on_disk != sent:
                        raise RuntimeError(f"{on_disk} files stored after sending {sent}")
                    results.setdefault((key, set_key), []).append(run)
            except (RuntimeError, subprocess.TimeoutExpired) as failure:
                errors[key] = (set_key, str(failure).replace("\n", " ")[:800])
            finally:
                for number, server in enumerate(servers):
                    peaks.setdefault((key, number), []).append(server.stop())
    # Removed only after all runs (ext4 here is slow to create files just after a big deletion:
    # see the archive benchmark); the databases at the end.
    for folder in written:
        shutil.rmtree(folder, ignore_errors=True)
    cluster.drop_created()
    return results, errors, peaks


# --- 2. C-FIND on PostgreSQL at 1,000,000 instances ---------------------------------------------


def load_synthetic() -> float | None:
    """The synthetic index of STUDIES studies in database SYNTHETIC_DB (loaded once, kept with the
    cluster), and the rate it was loaded at (None: loaded by an earlier run that did not record it)."""
    rate_file = os.path.join(PG_DIR, f"{SYNTHETIC_DB}.rate")
    exists = cluster.query(f"SELECT count(*) FROM pg_database WHERE datname = '{SYNTHETIC_DB}'") == "1"
    if exists and os.path.exists(rate_file):
        instances = cluster.query("SELECT count(*) FROM instance", SYNTHETIC_DB)
        if instances == str(STUDIES * PER_STUDY):
            with open(rate_file) as rate:
                return float(rate.read().strip() or 0) or None
        log(f"{SYNTHETIC_DB} holds {instances} instances, not {STUDIES * PER_STUDY}: loading it again")
    index_url = cluster.create(SYNTHETIC_DB)
    log(f"loading the synthetic index of {STUDIES} studies ({STUDIES * PER_STUDY} instances) into {SYNTHETIC_DB}")
    started = time.perf_counter()
    done = subprocess.run([LOADER, index_url, str(STUDIES), str(PER_STUDY)], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=LOAD_TIMEOUT)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"synthetic_index failed: {done.stderr.decode(errors='replace').strip()[-400:]}")
    instances = cluster.query("SELECT count(*) FROM instance", SYNTHETIC_DB)
    if instances != str(STUDIES * PER_STUDY):
        raise RuntimeError(f"synthetic_index left {instances} instances, {STUDIES * PER_STUDY} expected")
    cluster.query("VACUUM ANALYZE", SYNTHETIC_DB)
    rate = STUDIES * PER_STUDY / elapsed
    with open(rate_file, "w") as out:
        out.write(f"{rate:.0f}\n")
    return rate


def find_part() -> tuple[list, float | None, int, str | None]:
    """(query index, runs) rows, the load rate, the server's peak RSS (KiB) and an error."""
    rows: list = []
    try:
        rate = load_synthetic()
        started = time.perf_counter()
        server = dimsum_node(os.path.join(WORK, "find"), None, cluster.database_url(SYNTHETIC_DB), "find")
        log(f"dimsum serve opened {STUDIES} studies on PostgreSQL in {time.perf_counter() - started:.1f} s")
    except (RuntimeError, subprocess.TimeoutExpired) as failure:
        return rows, None, 0, str(failure).replace("\n", " ")[:500]
    error = None
    try:
        for index in range(len(QUERIES)):
            keys, expected = query_keys(STUDIES, index)
            runs = []
            for run_number in range(RUNS):
                log(f"find: {QUERIES[index][0]} ({STUDIES} studies on PostgreSQL) run {run_number + 1}/{RUNS}")
                done = subprocess.run(timed_find_argv(DIMSUM, AE, MAX_PDU, HOST, server.port, keys, FINDS),
                                      stdin=subprocess.DEVNULL, capture_output=True, env=ENV, timeout=CLIENT_TIMEOUT)
                output = (done.stdout + done.stderr).decode(errors="replace")
                if done.returncode != 0:
                    raise RuntimeError(f"dimsum findscu exited {done.returncode}: {output.strip()[-300:]}")
                runs.append(parse_timing(output, FINDS, expected))
                server.sample()
            rows.append((index, runs))
    except (RuntimeError, subprocess.TimeoutExpired) as failure:
        error = str(failure).replace("\n", " ")[:500]
    finally:
        peak = server.stop()
    return rows, rate, peak, error


# --- report -------------------------------------------------------------------------------------


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def mib(kib: list[int]) -> str:
    known = [value for value in kib if value]
    return f"{max(known) / 1024:.0f} MiB" if known else "?"


def orthanc_version() -> str:
    """Orthanc's and its PostgreSQL index plugin's versions, from a short-lived server's REST API."""
    folder = os.path.join(WORK, "orthanc-version")
    try:
        server = orthanc(folder, 0, cluster.create("bench_scale_orthanc_version"))
    except RuntimeError as failure:
        return f"? ({failure})"
    try:
        connection = http.client.HTTPConnection(HOST, server.http_port, timeout=30)
        connection.request("GET", "/system")
        system = json.loads(connection.getresponse().read())
        connection.request("GET", "/plugins/postgresql-index")
        plugin = json.loads(connection.getresponse().read())
        return (f"Orthanc {system.get('Version', '?')} with {plugin.get('ID', '?')} {plugin.get('Version', '?')}"
                f" (database schema {system.get('DatabaseVersion', '?')})")
    except (OSError, ValueError) as failure:
        return f"? ({failure})"
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def report(sets: list, results: dict, errors: dict, peaks: dict, finds: tuple, load_at_start: float,
           versions: dict) -> list[str]:
    rows, load_rate, find_peak, find_error = finds
    out = ["## Scale-out benchmark: PostgreSQL index, one and two nodes (issue 10) on 127.0.0.1\n"]
    out.append(f"Data folders and PostgreSQL on a real disk ({DISK}); PostgreSQL with fsync on, unpinned;"
               f" max PDU {MAX_PDU} on every side, TCP_NODELAY=1; median of {RUNS} runs, a fresh database and"
               " data folder each run. Peak RSS: each server's VmHWM (the two nodes: A, B).\n")
    out.append(f"### 1. Ingest: C-STORE by {SENDERS} DCMTK storescu processes at once, index included\n")
    out.append("Wall time from the first sender's start to the last one's exit; every file acknowledged, counted"
               " by every server's C-FIND and found on disk. CPU: the servers' (both nodes together) and"
               " PostgreSQL's (all its processes) user + system time during the sending, medians.\n")
    out.append("| data set | server | runs (s) | files/s | MB/s | server CPU (s) | PostgreSQL CPU (s) | server peak RSS |")
    out.append("|---|---|---|---|---|---|---|---|")
    rates: dict = {}
    for set_key, label, files, total_bytes, _uid in sets:
        for key, setup in SETUPS:
            runs = results.get((key, set_key), [])
            cells = ", ".join(f"{run['seconds']:.2f}" for run in runs)
            if errors.get(key, ("",))[0] == set_key:
                cells += f"; FAILED: {errors[key][1]}"
            elif key in errors:
                cells += "; stopped after a failure"
            if runs and key not in errors:
                median = statistics.median(run["seconds"] for run in runs)
                rates[(key, set_key)] = len(files) / median
                measured = [fmt(len(files) / median), fmt(total_bytes / median / 1e6),
                            f"{statistics.median(run['server_cpu'] for run in runs):.2f}",
                            f"{statistics.median(run['pg_cpu'] for run in runs):.2f}" if key != "sqlite" else "—"]
            else:
                measured = ["—"] * 4
            nodes = 2 if key.startswith("pg2") else 1
            rss = ", ".join(mib(peaks.get((key, number), [])) for number in range(nodes))
            out.append(f"| {len(files)} {label} | {setup} | {cells} | {' | '.join(measured)} | {rss} |")
    out.append("")
    out.append(f"### 2. C-FIND at STUDY level on PostgreSQL, {FINDS} queries on one association"
               f" (dimsum findscu --repeat {FINDS} --timing)\n")
    out.append(f"{STUDIES:,} synthetic studies × {PER_STUDY} instances ({STUDIES * PER_STUDY:,}), loaded once by"
               f" `synthetic_index -- postgres://…/{SYNTHETIC_DB} {STUDIES}`"
               f" ({fmt(load_rate) + ' instances/s' if load_rate else 'loaded by an earlier run'});"
               f" dimsum serve's peak RSS {mib([find_peak])}.\n")
    out.append("| query | matches | p50 (ms) | p99 (ms) | p99 runs (ms) |")
    out.append("|---|---|---|---|---|")
    p99s = {}
    for index, runs in rows:
        p50 = statistics.median(run["p50"] for run in runs)
        p99s[index] = (statistics.median(run["p99"] for run in runs), runs[0]["matches"])
        p99_runs = ", ".join(f"{run['p99']:.2f}" for run in runs)
        out.append(f"| {QUERIES[index][0]} | {runs[0]['matches']} | {p50:.2f} | {p99s[index][0]:.2f} | {p99_runs} |")
    if find_error:
        out.append(f"| FAILED: {find_error} | | | | |")
    out.append("")
    out.append("### Targets (issue 10)\n")
    out.append("| target | measured | |")
    out.append("|---|---|---|")
    for set_key, label, files, _bytes, _uid in sets:
        one, theirs, sqlite = rates.get(("pg1", set_key)), rates.get(("orthanc", set_key)), rates.get(("sqlite", set_key))
        name = f"{len(files)} {label}"
        for suffix, how in (("", "the whole machine"), ("-limited", f"each node {NODE_CPU:g} of its core")):
            one_node, two_nodes = rates.get(("pg1" + suffix, set_key)), rates.get(("pg2" + suffix, set_key))
            if one_node and two_nodes:
                ratio = two_nodes / one_node
                out.append(f"| {name}: 2 nodes at least 1.5× one node ({how}) | {fmt(two_nodes)} against"
                           f" {fmt(one_node)} files/s: {ratio:.2f}× | {'met' if ratio >= 1.5 else '**NOT met**'} |")
        if one and theirs:
            out.append(f"| {name}: one node on PostgreSQL at least 3× Orthanc + PostgreSQL | {fmt(one)} against"
                       f" {fmt(theirs)} files/s: {one / theirs:.1f}× | {'met' if one / theirs >= 3 else '**NOT met**'} |")
        if one and sqlite:
            out.append(f"| {name}: (reference) one node on PostgreSQL against one on SQLite | {fmt(one)} against"
                       f" {fmt(sqlite)} files/s: {one / sqlite:.2f}× | |")
    for index, (p99, matches) in p99s.items():
        out.append(f"| C-FIND {QUERIES[index][0]} at {STUDIES * PER_STUDY:,} instances on PostgreSQL ({matches}"
                   f" studies): p99 under 20 ms | {p99:.2f} ms | {'met' if p99 < 20 else '**NOT met**'} |")
    out.append("")
    out.append("### Versions and machine")
    out.append(f"- dimsum: {versions['dimsum']} (release build)")
    out.append(f"- PostgreSQL: {versions['postgres']} (cluster in {PG_DIR}: fsync, synchronous_commit and"
               " full_page_writes on, shared_buffers 256MB)")
    out.append(f"- {versions['orthanc']} (Debian packages; index in PostgreSQL, IndexConnectionsCount"
               f" {ORTHANC_PG_CONNECTIONS}; files on disk, not compressed)")
    out.append(f"- DCMTK: {first_line(['storescu', '--version'])}")
    out.append(f"- {first_line(['rustc', '--version'])}; Python {platform.python_version()}")
    out += machine_lines(DISK, load_at_start)
    return out


def main() -> None:
    global cluster
    load_at_start = os.getloadavg()[0]
    sets = []
    for key, label, count in BATCH_SETS:
        if not 0 < SEND[key] <= count:
            raise SystemExit(f"bench: ERROR: send 1 to {count} {key} files, not {SEND[key]}")
        _folder, records = generate_batch(REPO, DATA, key, count)
        records = sorted(records, key=lambda record: record["path"])[:SEND[key]]
        uids = {record["study_instance_uid"] for record in records}
        if len(uids) != 1:
            raise SystemExit(f"bench: ERROR: the {key} files are not one study: {sorted(uids)[:3]}")
        sets.append((key, label, [record["path"] for record in records], sum(r["bytes"] for r in records),
                     uids.pop()))
    cluster = Cluster()
    versions = {"dimsum": first_line([DIMSUM, "--version"]), "postgres": cluster.query("SHOW server_version"),
                "orthanc": orthanc_version()}
    cluster.drop_created()
    results, errors, peaks = ingest(sets)
    finds = find_part()
    print("\n".join(report(sets, results, errors, peaks, finds, load_at_start, versions)), flush=True)
    if errors or finds[3]:
        sys.exit(1)


main()
