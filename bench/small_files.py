"""`make bench-small-files`: 500 small files into a Hive table and into an Iceberg table.

For each table format (default hive, then iceberg): provisions fresh buckets, queues and
tables (with a Glue database for the catalog), uploads --files CSV files of --rows rows of
the wide shape of bench/shapes.py (their S3 notifications queue up), starts one `lakeworker
run` and waits until every file was written. Prints the drain time, the objects the lake
holds afterwards (data files, and for Iceberg its metadata files too) and, for Iceberg,
the snapshots committed. Both runs use the same `queue.max_in_flight` (--max-in-flight):
an Iceberg job holds its slot until its batch is committed.

Runs under scripts/with-moto, which provides LAKEWORKER_TEST_ENDPOINT.
Usage: small_files.py --bin target/release/lakeworker [--files 500] [--rows 200]
       [--formats hive,iceberg] [--max-in-flight 256] [--commit-interval 10s]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_data  # noqa: E402
from e2e import config, drain  # noqa: E402

DRAIN_TIMEOUT_S = 900


def lake_objects(s3, bucket):
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="curated/"):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return keys


def snapshots(glue, s3, database):
    location = glue.get_table(DatabaseName=database, Name="bench")["Table"]["Parameters"]["metadata_location"]
    bucket, key = location.removeprefix("s3://").split("/", 1)
    metadata = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    return len(metadata.get("snapshots", []))


def run_once(args, table_format, small, endpoint, scratch):
    name = f"small-{table_format}-{int(time.time())}"
    database = name.replace("-", "_")
    path = os.path.join(scratch, f"{name}.toml")
    config(endpoint, name, path)
    env = {**os.environ, "LAKEWORKER__QUEUE__WAIT_SECONDS": "1", "LAKEWORKER__LOG__FORMAT": "json",
           "LAKEWORKER__LOG__LEVEL": "lakeworker=debug,info", "LAKEWORKER__WORKER__SCRATCH_DIR": scratch,
           "LAKEWORKER__QUEUE__MAX_IN_FLIGHT": str(args.max_in_flight),
           "LAKEWORKER__LAKE__TABLE_FORMAT": table_format,
           "LAKEWORKER__ICEBERG__COMMIT_INTERVAL": args.commit_interval,
           "LAKEWORKER__CATALOG__DATABASE": database, "LAKEWORKER__CATALOG__WORKGROUP": "primary",
           "LAKEWORKER__CATALOG__OUTPUT_LOCATION": f"s3://{name}-lake/athena/"}
    subprocess.run([args.bin, "provision", "--config", path], env=env, check=True, stdout=subprocess.DEVNULL)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    glue = boto3.client("glue", endpoint_url=endpoint, region_name="us-east-1")
    for i in range(args.files):
        s3.put_object(Bucket=f"{name}-in", Key=f"small/{i:05}.csv", Body=small)

    log_path = os.path.join(scratch, f"{name}.log")
    with open(log_path, "w") as log:
        start = time.monotonic()
        worker = subprocess.Popen([args.bin, "run", "--config", path], env=env, stdout=log, stderr=subprocess.STDOUT)
    written, _, finished = drain(worker, log_path, args.files, start + DRAIN_TIMEOUT_S)
    total = sum(n for _, n in written.values())
    if total != args.files * args.rows:
        sys.exit(f"{total} rows written, {args.files * args.rows} expected; log: {log_path}")
    keys = lake_objects(s3, f"{name}-lake")
    data = [k for k in keys if k.endswith(".parquet")]
    snaps = snapshots(glue, s3, database) if table_format == "iceberg" else None
    return table_format, finished - start, len(data), len(keys), snaps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--formats", default="hive,iceberg")
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--commit-interval", default="10s")
    parser.add_argument("--out", default=".bench")
    args = parser.parse_args()
    endpoint = os.environ["LAKEWORKER_TEST_ENDPOINT"]
    source, _ = bench_data.generate("wide", 1, args.out).values()
    with open(source, "rb") as f:
        lines = f.readlines()
    small = b"".join(lines[: args.rows + 1])
    print(f"{args.files} files of {args.rows} rows ({len(small) / 1e3:.0f} KB); max_in_flight {args.max_in_flight}; "
          f"commit_interval {args.commit_interval}; {os.cpu_count()} cores", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for table_format in args.formats.split(","):
            result = run_once(args, table_format, small, endpoint, scratch)
            print(f"{table_format}: drained in {result[1]:.1f}s", flush=True)
            results.append(result)
    print(f"\n{'format':>8} {'drain s':>8} {'files/s':>8} {'data objects':>13} {'all lake objects':>17} {'snapshots':>10}")
    for fmt, seconds, data, everything, snaps in results:
        print(f"{fmt:>8} {seconds:>8.1f} {args.files / seconds:>8.1f} {data:>13} {everything:>17} "
              f"{snaps if snaps is not None else '-':>10}")


if __name__ == "__main__":
    main()
