#!/usr/bin/env python3
"""The HTTP scoring API's latency, throughput and memory under load: the SLA table.

Lands --rows generated rows (the 20-feature extract of benches/models.py), trains its
logistic regression and random forest, starts `lakescore serve` with the HTTP API on
loopback, and drives it with the load client (benches/http_load) for each model:

- single rows at a fixed rate (open loop, --rate requests/s; latency counted from when each
  request was due, so queueing shows);
- 100-row requests from 4 connections as fast as they are answered (rows/s);
- overload: 100-row requests from 256 connections against 2 scoring slots and a queue of
  16, to show that the excess is refused with 429 and the server's memory stays flat.

Every request asks for explanations (the API always gives them). Prints one table: requests,
answered per second, rows per second, p50/p99/p99.9 latency, statuses, and the server's
resident memory before and after each load.

    cargo build --release && cargo build --release -p http-load
    python3 benches/http_api.py                 # 10 s per load
    python3 benches/http_api.py --seconds 30 --rate 1000
"""

import argparse
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench_common import release_binary, run, scratch_folder
from models import NUMERIC, project, write_csv


def load_client() -> str:
    return os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "http-load")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rows_from_csv(path: Path, count: int) -> list:
    """The first `count` rows of the extract, as the API takes them."""
    rows = []
    with path.open() as extract:
        for record in csv.DictReader(extract):
            row = {"id": record["id"]}
            for name in NUMERIC:
                row[name] = float(record[name])
            row["plan"] = record["plan"]
            row["region"] = record["region"]
            row["flag_a"] = record["flag_a"] == "true"
            row["flag_b"] = record["flag_b"] == "true"
            rows.append(row)
            if len(rows) == count:
                break
    return rows


def rss_mib(pid: int) -> tuple:
    """The process's resident memory now and at its peak, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def wait_ready(port: int) -> None:
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit("the server never became ready")


def drive(client: str, url: str, token: str, body: Path, load: list, seconds: float) -> dict:
    out = subprocess.run(
        [client, "--url", url, "--token", token, "--body", str(body), "--seconds", str(seconds), *load],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="rows to land and train on")
    parser.add_argument("--rate", type=float, default=1000, help="single-row requests per second")
    parser.add_argument("--seconds", type=float, default=10, help="length of each load")
    parser.add_argument("--binary", default=release_binary())
    parser.add_argument("--client", default=load_client())
    parser.add_argument("--keep", action="store_true", help="keep the scratch project")
    options = parser.parse_args()
    for path, build in [(options.binary, "cargo build --release"), (options.client, "cargo build --release -p http-load")]:
        if not os.path.exists(path):
            sys.exit(f"{path} not found: run `{build}` first")
    with scratch_folder("lakescore-bench-http-", options.keep) as scratch:
        (scratch / "extracts").mkdir()
        print(f"generating {options.rows:,} rows in {scratch} ...", file=sys.stderr)
        write_csv(scratch / "extracts/customers.csv", options.rows)
        token_out = run(options.binary, scratch, ["serve", "--new-token"])[2]
        token = token_out.split("is not stored): ")[1].split()[0]
        token_hash = token_out.split('secret_sha256 = "')[1].split('"')[0]
        port = free_port()
        settings = f"""
[serve.http]
listen = "127.0.0.1:{port}"
max_in_flight = 2
max_queued = 16

[[serve.token]]
name = "bench"
secret_sha256 = "{token_hash}"
models = ["*"]
"""
        (scratch / "lakescore.toml").write_text(project(min(options.rows, 100_000)) + settings)
        run(options.binary, scratch, ["ingest"])
        for model in ["logistic", "forest"]:
            run(options.binary, scratch, ["train", model])
        rows = rows_from_csv(scratch / "extracts/customers.csv", 100)
        (scratch / "one.json").write_text(json.dumps({"rows": rows[:1]}))
        (scratch / "hundred.json").write_text(json.dumps({"rows": rows}))
        log = open(scratch / "serve.log", "w")
        server = subprocess.Popen([options.binary, "serve"], cwd=scratch, stdout=log, stderr=log)
        results = []
        try:
            wait_ready(port)
            for model in ["logistic", "forest"]:
                url = f"http://127.0.0.1:{port}/v1/models/{model}/predict"
                loads = [
                    (f"1 row at {options.rate:,.0f}/s", "one.json", ["--rate", str(options.rate)], 1),
                    ("100 rows, 4 connections", "hundred.json", ["--connections", "4"], 100),
                    ("overload: 100 rows, 256 connections", "hundred.json", ["--connections", "256"], 100),
                ]
                for name, body, load, per_request in loads:
                    before, _ = rss_mib(server.pid)
                    report = drive(options.client, url, token, scratch / body, load, options.seconds)
                    after, peak = rss_mib(server.pid)
                    results.append((model, name, per_request, report, before, after, peak))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
            log.close()
    print()
    print("| model | load | requests | answered/s | rows/s | p50 ms | p99 ms | p99.9 ms | statuses | server RSS MiB before → after (peak) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    for model, name, per_request, report, before, after, peak in results:
        statuses = ", ".join(f"{code}: {count:,}" for code, count in report["statuses"].items())
        print(
            f"| {model} | {name} | {report['requests']:,} | {report['ok_per_second']:,.0f} | "
            f"{report['ok_per_second'] * per_request:,.0f} | {report['p50_ms']:.2f} | {report['p99_ms']:.2f} | "
            f"{report['p999_ms']:.2f} | {statuses} | {before:,.0f} → {after:,.0f} ({peak:,.0f}) |"
        )


if __name__ == "__main__":
    main()
