"""`make bench-e2e`: the worker draining files dropped into the emulator's landing bucket.

For each poller count (default 1, 2, 4): provisions fresh buckets, queues and tables,
uploads --small small CSV files and --big files of --big-mb MB (their S3 notifications
queue up meanwhile), starts `lakeworker run`, and waits until every file was written. Prints files/s and rows/s over the drain, p50/p99 per-message processing time
(receipt to done, from the worker's "message handled" log lines) and the largest
heartbeat lateness (from its "visibility extended" debug lines). The visibility timeout is
2 s, so every in-flight message's heartbeat fires every second while every core is
converting; a heartbeat late by a second would let SQS hand the message out again.

Runs under scripts/with-moto, which provides LAKEWORKER_TEST_ENDPOINT.
Usage: e2e.py --bin target/release/lakeworker [--small 500] [--big 5] [--big-mb 200] [--pollers 1,2,4]
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_data  # noqa: E402

DRAIN_TIMEOUT_S = 1800


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] if values else 0


def inputs(args):
    """(small CSV body, its rows, big CSV path, its rows)."""
    small_src, _ = bench_data.generate("wide", 1, args.out).values()
    with open(small_src, "rb") as f:
        lines = f.readlines()
    small = b"".join(lines[: args.small_rows + 1])
    big, _ = bench_data.generate("wide", args.big_mb, args.out).values()
    with open(big, "rb") as f:
        big_rows = sum(1 for _ in f) - 1
    return small, args.small_rows, big, big_rows


def config(endpoint, name, path):
    """bench/bench.toml pointed at the emulator, with this run's resource names."""
    with open(os.path.join(HERE, "bench.toml")) as f:
        text = f.read()
    text = text.replace('region = "us-east-1"\n', f'region = "us-east-1"\nendpoint_url = "{endpoint}"\n', 1)
    queues = f"{endpoint}/123456789012/{name}"
    text = text.replace('"http://localhost/1/bench"', f'"{queues}-q"')
    text = text.replace('"http://localhost/1/bench-dlq"', f'"{queues}-dlq"')
    text = text.replace("bench-landing", f"{name}-in").replace("bench-lake", f"{name}-lake")
    text = text.replace("bench-ledger", f"{name}-ledger")
    with open(path, "w") as f:
        f.write(text)


def run_once(args, pollers, small, small_rows, big, big_rows, endpoint, scratch):
    name = f"e2e-{pollers}p-{int(time.time())}"
    path = os.path.join(scratch, f"{name}.toml")
    config(endpoint, name, path)
    env = {**os.environ, "LAKEWORKER__QUEUE__POLLERS": str(pollers), "LAKEWORKER__QUEUE__WAIT_SECONDS": "1",
           "LAKEWORKER__QUEUE__VISIBILITY_TIMEOUT_SECONDS": "2", "LAKEWORKER__LOG__FORMAT": "json",
           "LAKEWORKER__LOG__LEVEL": "lakeworker=debug,info", "LAKEWORKER__WORKER__SCRATCH_DIR": scratch}
    subprocess.run([args.bin, "provision", "--config", path], env=env, check=True, stdout=subprocess.DEVNULL)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    bucket = f"{name}-in"
    for i in range(args.small):
        s3.put_object(Bucket=bucket, Key=f"small/{i:05}.csv", Body=small)
    for i in range(args.big):
        s3.upload_file(big, bucket, f"big/{i:02}.csv")
    files = args.small + args.big
    rows = args.small * small_rows + args.big * big_rows

    log_path = os.path.join(scratch, f"{name}.log")
    with open(log_path, "w") as log:
        start = time.monotonic()
        worker = subprocess.Popen([args.bin, "run", "--config", path], env=env, stdout=log, stderr=subprocess.STDOUT)
    written, lateness, finished = drain(worker, log_path, files, start + DRAIN_TIMEOUT_S)
    total = sum(n for _, n in written.values())
    if total != rows:
        sys.exit(f"{total} rows written, {rows} expected; log: {log_path}")
    for bucket_name in (f"{name}-in", f"{name}-lake"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket_name):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket_name, Key=obj["Key"])
    seconds = finished - start
    times = [ms for ms, _ in written.values()]
    return (pollers, files, seconds, files / seconds, rows / seconds, percentile(times, 50),
            percentile(times, 99), max(times), max(lateness, default=0), len(lateness))


def drain(worker, log_path, files, deadline):
    """Waits until `files` files were written (by the worker's log), then stops the worker
    (SIGTERM); exits on a dead letter, a dead worker or the deadline. Returns what `parse`
    read and when the last file was written."""
    try:
        while time.monotonic() < deadline:
            written, lateness, failures = parse(log_path)
            if failures:
                sys.exit(f"{failures[0]} (log: {log_path})")
            if len(written) >= files:
                return written, lateness, time.monotonic()
            if worker.poll() is not None:
                sys.exit(f"the worker exited ({worker.returncode}); log: {log_path}")
            time.sleep(0.2)
        sys.exit(f"not drained in time; log: {log_path}")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


WRITTEN = re.compile(r"(s3://\S+) → (\d+) rows")


def parse(log_path):
    """({source uri: (ms, rows)} of files written, [heartbeat lateness ms], [dead-letter lines]).
    A second notification of a file already done or in progress is no failure: the ledger
    turns it away (the emulator announces a multipart upload more than once)."""
    written, lateness, failures = {}, [], []
    with open(log_path) as f:
        for line in f:
            try:
                fields = json.loads(line).get("fields", {})
            except ValueError:
                continue
            message = fields.get("message", "")
            if message == "message handled":
                for uri, rows in WRITTEN.findall(fields.get("outcome", "")):
                    written[uri] = (fields["handled_in_ms"], int(rows))
            elif message == "visibility extended":
                lateness.append(fields["lateness_ms"])
            elif message.startswith("message failed; dead-lettering"):
                failures.append(line.strip())
    return written, lateness, failures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--small-rows", type=int, default=200)
    parser.add_argument("--big", type=int, default=5)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--pollers", default="1,2,4")
    parser.add_argument("--out", default=".bench")
    args = parser.parse_args()
    endpoint = os.environ["LAKEWORKER_TEST_ENDPOINT"]
    small, small_rows, big, big_rows = inputs(args)
    print(f"{args.small} files of {small_rows} rows ({len(small) / 1e3:.0f} KB) and {args.big} of {big_rows} rows "
          f"({os.path.getsize(big) / 1e6:.0f} MB) per run; {os.cpu_count()} cores", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for pollers in [int(p) for p in args.pollers.split(",")]:
            result = run_once(args, pollers, small, small_rows, big, big_rows, endpoint, scratch)
            print(f"pollers={pollers}: drained in {result[2]:.1f}s", flush=True)
            results.append(result)
    print(f"\n{'pollers':>7} {'files':>6} {'drain s':>8} {'files/s':>8} {'rows/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8} {'max heartbeat late ms':>21} {'(extensions)':>12}")
    for r in results:
        print(f"{r[0]:>7} {r[1]:>6} {r[2]:>8.1f} {r[3]:>8.1f} {r[4]:>10.0f} {r[5]:>8} {r[6]:>8} {r[7]:>8} {r[8]:>21} {r[9]:>12}")


if __name__ == "__main__":
    main()
