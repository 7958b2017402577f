"""`make bench-compare`: lakeworker, pyarrow and DuckDB side by side on the same inputs.

Generates (once) a CSV of about --mb megabytes and its JSON-lines twin, converts each
with every tool on one core (pinned with taskset, each tool told to use one thread) and
on every core, and prints one table: wall seconds, input MB/s, peak RSS (from the kernel's
rusage of the process), output size, row count and whether the ten data columns have the
expected types (read back with pyarrow). Then checks that lakeworker's memory does not grow
with the file: the CSV repeated --scale times, converted again.

Usage: compare.py --bin target/release/lakeworker [--mb 1000] [--scale 4] [--out .bench]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_data  # noqa: E402

EXPECTED = {"id": "string", "user_id": "int64", "amount": "double", "quantity": "int64", "paid": "bool",
            "day": "date32[day]", "created_at": "timestamp[us, tz=UTC]", "category": "string",
            "ratio": "double", "note": "string"}


def run(command, env=None, one_core=False):
    """Runs a command; returns (wall seconds, peak RSS in MiB). GNU time measures the peak
    RSS: the rusage of a child forked from this (large) Python process would count the
    parent's pages mapped at fork time."""
    if one_core:
        command = ["taskset", "-c", "0"] + command
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.monotonic()
        status = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name] + command,
                                env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL).returncode
        wall = time.monotonic() - start
        if status != 0:
            sys.exit(f"failed ({status}): {' '.join(command)}")
        return wall, int(rss.read().split()[-1]) / 1024


def check_output(path):
    """(rows, types ok, extra columns) of a Parquet file, read with pyarrow."""
    schema = pq.read_schema(path)
    types = {field.name: str(field.type) for field in schema}
    ok = all(types.get(name) == kind for name, kind in EXPECTED.items())
    extra = [name for name in types if name not in EXPECTED]
    return pq.read_metadata(path).num_rows, ok, extra


def convert(tool, fmt, src, dst, one_core, args):
    if os.path.exists(dst):
        os.remove(dst)
    if tool == "lakeworker":
        dataset = "bench" if fmt == "csv" else "bench_jsonl"
        command = [args.bin, "convert", "--config", os.path.join(HERE, "bench.toml"), "--dataset", dataset, src, dst]
        env = {"LAKEWORKER__WORKER__CONVERSION_THREADS": "1" if one_core else "0", "LAKEWORKER__LOG__LEVEL": "warn"}
        return run(command, env, one_core)
    command = [sys.executable, os.path.join(HERE, "convert_with.py"), tool, fmt, src, dst, "1" if one_core else "0"]
    return run(command, one_core=one_core)


def warm(path):
    """Reads a file once so every tool finds it in the page cache."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def repeated(csv_path, times, out):
    """The CSV's rows `times` over, one header: a bigger file of the same shape."""
    path = os.path.join(out, f"bench-x{times}.csv")
    size = os.path.getsize(csv_path)
    if os.path.exists(path) and os.path.getsize(path) > size * (times - 1):
        return path
    with open(path, "wb") as out_file:
        for n in range(times):
            with open(csv_path, "rb") as f:
                header = f.readline()
                if n == 0:
                    out_file.write(header)
                shutil.copyfileobj(f, out_file, 1 << 24)
    return path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--mb", type=int, default=1000)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--out", default=".bench")
    parser.add_argument("--tools", default="lakeworker,pyarrow,duckdb")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print(f"generating inputs of about {args.mb} MB in {args.out} (kept for the next run) ...", flush=True)
    csv_path, jsonl_path = bench_data.generate(args.mb, args.out)
    cores = os.cpu_count()
    rows = []
    header = f"{'tool':<11} {'format':<6} {'cores':>5} {'wall s':>7} {'MB/s':>7} {'peak RSS MiB':>12} {'output MB':>9} {'rows':>10}  types"
    for fmt, src in [("csv", csv_path), ("jsonl", jsonl_path)]:
        size_mb = os.path.getsize(src) / 1e6
        warm(src)
        for one_core in (True, False):
            for tool in args.tools.split(","):
                dst = os.path.join(args.out, f"out-{tool}-{fmt}-{'1' if one_core else 'all'}.parquet")
                wall, rss = convert(tool, fmt, src, dst, one_core, args)
                count, ok, extra = check_output(dst)
                types = "ok" if ok else "WRONG"
                if extra:
                    types += f" (+{', '.join(extra)})"
                row = (f"{tool:<11} {fmt:<6} {1 if one_core else cores:>5} {wall:>7.2f} {size_mb / wall:>7.0f} "
                       f"{rss:>12.0f} {os.path.getsize(dst) / 1e6:>9.1f} {count:>10}  {types}")
                print(row, flush=True)
                rows.append((fmt, count, ok, row))
    counts = {(fmt, count) for fmt, count, _, _ in rows}
    same = len(counts) == 2 and all(ok for _, _, ok, _ in rows)
    print(f"\ninput: {os.path.getsize(csv_path) / 1e6:.0f} MB CSV, {os.path.getsize(jsonl_path) / 1e6:.0f} MB JSON lines; "
          f"{cores} cores")
    print(header)
    for _, _, _, row in rows:
        print(row)
    print("same row count per format and the expected column types on every side:", "yes" if same else "NO")

    if args.scale > 1:
        big = repeated(csv_path, args.scale, args.out)
        print(f"\nmemory versus file size (CSV, every core): {os.path.getsize(csv_path) / 1e9:.1f} GB "
              f"and {os.path.getsize(big) / 1e9:.1f} GB", flush=True)
        print(f"{'tool':<11} {'input GB':>8} {'wall s':>7} {'peak RSS MiB':>12}")
        tools = [t for t in args.tools.split(",") if t in ("lakeworker", "pyarrow")]
        for tool in tools:
            found = []
            for src in (csv_path, big):
                warm(src)
                dst = os.path.join(args.out, f"out-{tool}-scale.parquet")
                wall, rss = convert(tool, "csv", src, dst, False, args)
                found.append(rss)
                print(f"{tool:<11} {os.path.getsize(src) / 1e9:>8.1f} {wall:>7.2f} {rss:>12.0f}", flush=True)
            print(f"{tool}: peak RSS grew {100 * (found[1] / found[0] - 1):+.0f}% for a {args.scale}x bigger file")
        os.remove(big)
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
