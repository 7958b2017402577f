"""`make bench-wide`: peak memory converting rows of several hundred KB.

Generates (once, into --out) a CSV and a JSON-lines file of about --mb megabytes whose rows
hold a `payload` string of 300 to 800 KB (random hex, which Parquet cannot shrink much), an
id and a `day` among a few dates, then converts each with `lakeworker convert` on every
core and prints wall seconds, input MB/s and peak RSS (GNU time's maximum resident set
size) beside the conversion memory budget (`worker.conversion_memory`, 128 MiB unless
LAKEWORKER__WORKER__CONVERSION_MEMORY says otherwise). With --old-bin, an older build is
measured the same way, for comparison.

Usage: wide_rows.py --bin target/release/lakeworker [--old-bin OLD] [--mb 400] [--out .bench]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DAYS = ["2024-05-01", "2024-05-02", "2024-05-03"]


def generate(mb, out):
    """The CSV and JSON-lines inputs; kept when they exist with the requested size."""
    os.makedirs(out, exist_ok=True)
    csv_path = os.path.join(out, f"wide-{mb}mb.csv")
    jsonl_path = os.path.join(out, f"wide-{mb}mb.jsonl")
    target = mb * 1_000_000
    if all(os.path.exists(p) and os.path.getsize(p) >= target for p in (csv_path, jsonl_path)):
        return csv_path, jsonl_path
    rng = random.Random(mb)
    written = 0
    with open(csv_path, "w") as c, open(jsonl_path, "w") as j:
        c.write("id,day,payload\n")
        row = 0
        while written < target:
            payload = rng.randbytes(rng.randrange(150_000, 400_000)).hex()
            day = DAYS[row % len(DAYS)]
            line = f"w-{row:08d},{day},{payload}\n"
            c.write(line)
            j.write(json.dumps({"id": f"w-{row:08d}", "day": day, "payload": payload}) + "\n")
            written += len(line)
            row += 1
    return csv_path, jsonl_path


def run(command, env):
    """(wall seconds, peak RSS MiB) of a command, measured by GNU time."""
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.monotonic()
        status = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss.name] + command,
                                env={**os.environ, **env}, stdout=subprocess.DEVNULL).returncode
        wall = time.monotonic() - start
        if status != 0:
            sys.exit(f"failed ({status}): {' '.join(command)}")
        return wall, int(rss.read().split()[-1]) / 1024


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--old-bin")
    parser.add_argument("--mb", type=int, default=400)
    parser.add_argument("--out", default=".bench")
    args = parser.parse_args()
    print(f"generating inputs of about {args.mb} MB in {args.out} (kept for the next run) ...", flush=True)
    paths = generate(args.mb, args.out)
    budget = os.environ.get("LAKEWORKER__WORKER__CONVERSION_MEMORY", "128MiB")
    env = {"LAKEWORKER__LOG__LEVEL": "warn"}
    binaries = [("lakeworker", args.bin)] + ([("old build", args.old_bin)] if args.old_bin else [])
    print(f"\nrows of 300-800 KB, every core ({os.cpu_count()}), worker.conversion_memory = {budget}")
    print(f"{'binary':<11} {'format':<6} {'input MB':>8} {'wall s':>7} {'MB/s':>6} {'peak RSS MiB':>12}")
    for fmt, path, dataset in [("csv", paths[0], "bench_wide"), ("jsonl", paths[1], "bench_wide_jsonl")]:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
        size = os.path.getsize(path) / 1e6
        for name, binary in binaries:
            dst = os.path.join(args.out, f"wide-out-{fmt}.parquet")
            command = [binary, "convert", "--config", os.path.join(HERE, "bench.toml"), "--dataset", dataset, path, dst]
            wall, rss = run(command, env)
            print(f"{name:<11} {fmt:<6} {size:>8.0f} {wall:>7.2f} {size / wall:>6.0f} {rss:>12.0f}", flush=True)
            os.remove(dst)


if __name__ == "__main__":
    main()
