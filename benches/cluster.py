#!/usr/bin/env python3
"""Scoring in local mode and on a loopback Ballista cluster, side by side.

Lands --rows rows (default 5 million) of 20 features with the release binary in a scratch
project, trains a logistic regression (on a sample) and a random forest, then scores every
row with each model twice: in this process (`--engine local`) and on a cluster of one
scheduler and two executors started from the same binary on loopback ports
(`--engine ballista`). Prints seconds, rows/s and peak RSS of the driver and of each
executor, and the cluster's speed relative to local mode.

On one machine every process shares the same cores, so the table shows what the cluster
path costs (plans sent, results streamed back to the driver through Arrow Flight), not
what more machines gain.

    cargo build --release
    python3 benches/cluster.py                  # 5M rows
    python3 benches/cluster.py --rows 1000000
"""

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench_common import release_binary, run, scratch_folder
from models import project, write_csv


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(port: int) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    sys.exit(f"nothing listens on {port} after 60 s")


def peak_rss_mib(pid: int) -> float:
    """The high-water mark of a running process's resident memory."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Cluster:
    """A scheduler and two executors of the release binary, serving `project`."""

    def __init__(self, binary: str, project: Path, tasks_per_executor: int):
        self.port = free_port()
        logs = project / "cluster-logs"
        logs.mkdir(exist_ok=True)
        self.processes = []

        def start(name, args):
            log = open(logs / f"{name}.log", "w")
            child = subprocess.Popen([binary, "ballista", *args], cwd=project, stdout=log, stderr=log)
            self.processes.append((name, child))

        start("scheduler", ["scheduler", "--listen", f"127.0.0.1:{self.port}"])
        wait_for(self.port)
        for number in (1, 2):
            flight = free_port()
            start(f"executor {number}", [
                "executor", "--scheduler", self.address(), "--listen", f"127.0.0.1:{flight}",
                "--grpc-port", str(free_port()), "--concurrent-tasks", str(tasks_per_executor),
            ])
            wait_for(flight)

    def address(self) -> str:
        return f"df://127.0.0.1:{self.port}"

    def executor_peaks(self) -> list:
        return [(name, peak_rss_mib(child.pid)) for name, child in self.processes if name.startswith("executor")]

    def stop(self) -> None:
        for _, child in self.processes:
            child.terminate()
        for _, child in self.processes:
            child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--binary", default=release_binary())
    parser.add_argument("--keep", action="store_true", help="keep the scratch project")
    options = parser.parse_args()
    if not os.path.exists(options.binary):
        sys.exit(f"{options.binary} not found: run `cargo build --release` first (or pass --binary)")
    cores = os.cpu_count() or 1
    with scratch_folder("lakescore-bench-cluster-", options.keep) as scratch:
        text = project(200_000).replace(
            'algorithm = "logistic_regression"\n', 'algorithm = "logistic_regression"\nmax_training_rows = 200000\n'
        )
        (scratch / "lakescore.toml").write_text(text + f"\n[engine]\npartitions = {2 * cores}\n")
        (scratch / "extracts").mkdir()
        print(f"generating {options.rows:,} rows x 20 features in {scratch} ...", file=sys.stderr)
        write_csv(scratch / "extracts/customers.csv", options.rows)
        run(options.binary, scratch, ["ingest"])
        for model in ["logistic", "forest"]:
            run(options.binary, scratch, ["train", model])
        cluster = Cluster(options.binary, scratch, max(1, cores // 2))
        results = []
        try:
            for model in ["logistic", "forest"]:
                base = ["score", model, "--input", "curated.customers", "--output"]
                local, local_rss, _ = run(options.binary, scratch, [*base, f"scored.{model}_local", "--engine", "local"])
                results.append((f"{model}: local", local, local_rss, None, None))
                remote, remote_rss, _ = run(options.binary, scratch, [
                    *base, f"scored.{model}_cluster", "--engine", "ballista", "--scheduler", cluster.address(),
                ])
                executors = ", ".join(f"{rss:,.0f}" for _, rss in cluster.executor_peaks())
                results.append((f"{model}: cluster (scheduler + 2 executors)", remote, remote_rss, executors, local))
        finally:
            cluster.stop()
        print()
        print(f"{options.rows:,} rows, scored with explanations into Delta; {cores} cores shared by every process")
        print()
        print("| scoring | seconds | rows/s | driver peak RSS MiB | executors' peak RSS MiB | vs local |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, elapsed, rss, executors, local in results:
            ratio = f"{local / elapsed:.2f}x" if local else ""
            print(f"| {name} | {elapsed:.1f} | {options.rows / elapsed:,.0f} | {rss:,.0f} | {executors or ''} | {ratio} |")


if __name__ == "__main__":
    main()
