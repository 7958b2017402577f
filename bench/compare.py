"""`make bench-compare`: lakeworker, pyarrow, DuckDB and Polars side by side on every data
shape of bench/shapes.py.

Generates (once) each shape's CSV of about --mb megabytes and, for narrow and wide, its
JSON-lines twin; converts each with every tool on one core (pinned with taskset, each tool
told to use one thread) and on every core; prints one table per input: wall seconds, input
MB/s, peak RSS (GNU time), output size, and the throughput ratio to the fastest peer with
the same cores; then checks every output (read back with pyarrow) has the row count, the
shape's column types and zstd on every column chunk. A summary gives per input the ratios,
lakeworker's speed-up from one core to all, and its output size against pyarrow's. Then
checks that lakeworker's memory does not grow with the file: --scale-shapes' CSVs repeated
--scale times, converted again.

Usage: compare.py --bin target/release/lakeworker [--mb 1000] [--shapes narrow,wide,text,numeric]
                  [--tools lakeworker,pyarrow,duckdb,polars] [--scale 4] [--scale-shapes narrow]
                  [--out .bench]
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
import shapes  # noqa: E402

ARROW_TYPES = {"string": ("string", "large_string"), "int": ("int64",), "float": ("double",), "bool": ("bool",),
               "date": ("date32[day]",), "timestamp": ("timestamp[us, tz=UTC]",)}


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


def check_output(path, columns):
    """(rows, problems) of a Parquet file, read with pyarrow: every column of the shape with
    its type, and zstd on every column chunk (lakeworker's lineage columns are extra)."""
    schema = pq.read_schema(path)
    types = {field.name: str(field.type) for field in schema}
    problems = [f"{name}: {types.get(name)}" for name, kind in columns if types.get(name) not in ARROW_TYPES[kind]]
    metadata = pq.read_metadata(path)
    codecs = {metadata.row_group(g).column(c).compression
              for g in range(metadata.num_row_groups) for c in range(metadata.num_columns)}
    if codecs != {"ZSTD"}:
        problems.append(f"codecs {sorted(codecs)}")
    return metadata.num_rows, problems


def datasets_config(out):
    """bench/bench.toml's settings with one dataset per shape and format, `{shape}_{fmt}`."""
    with open(os.path.join(HERE, "bench.toml")) as f:
        base = f.read().split("[[datasets]]")[0]
    blocks = [base]
    for shape, spec in shapes.SHAPES.items():
        for fmt in spec["formats"]:
            blocks.append(f'[[datasets]]\nname = "{shape}_{fmt}"\nmatch = "{shape}/*.{fmt}"\nformat = "{fmt}"\n')
            for name, kind in spec["columns"]:
                blocks.append(f'[[datasets.columns]]\nname = "{name}"\ntype = "{kind}"\n')
    path = os.path.join(out, "bench-shapes.toml")
    with open(path, "w") as f:
        f.write("\n".join(blocks))
    return path


def convert(tool, shape, fmt, src, dst, one_core, args):
    if os.path.exists(dst):
        os.remove(dst)
    if tool == "lakeworker":
        command = [args.bin, "convert", "--config", args.config, "--dataset", f"{shape}_{fmt}", src, dst]
        env = {"LAKEWORKER__WORKER__CONVERSION_THREADS": "1" if one_core else "0", "LAKEWORKER__LOG__LEVEL": "warn"}
        return run(command, env, one_core)
    command = [sys.executable, os.path.join(HERE, "convert_with.py"), tool, shape, fmt, src, dst,
               "1" if one_core else "0"]
    return run(command, one_core=one_core)


def warm(path):
    """Reads a file once so every tool finds it in the page cache."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def repeated(csv_path, times, out):
    """The CSV's rows `times` over, one header: a bigger file of the same shape."""
    path = os.path.join(out, f"{os.path.basename(csv_path)}-x{times}.csv")
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
    parser.add_argument("--shapes", default=",".join(shapes.SHAPES))
    parser.add_argument("--tools", default="lakeworker,pyarrow,duckdb,polars")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--scale-shapes", default="narrow")
    parser.add_argument("--out", default=".bench")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    args.config = datasets_config(args.out)
    tools = args.tools.split(",")
    cores = os.cpu_count()
    summary = []
    failed = False
    for shape in args.shapes.split(","):
        print(f"generating the {shape} inputs of about {args.mb} MB in {args.out} (kept for the next run) ...",
              flush=True)
        inputs = bench_data.generate(shape, args.mb, args.out)
        columns = shapes.SHAPES[shape]["columns"]
        for fmt, src in inputs.items():
            size_mb = os.path.getsize(src) / 1e6
            warm(src)
            results = {}
            for one_core in (True, False):
                for tool in tools:
                    dst = os.path.join(args.out, f"out-{tool}-{shape}-{fmt}-{'1' if one_core else 'all'}.parquet")
                    wall, rss = convert(tool, shape, fmt, src, dst, one_core, args)
                    count, problems = check_output(dst, columns)
                    results[(tool, one_core)] = (wall, rss, os.path.getsize(dst) / 1e6, count, problems)
                    os.remove(dst)
            counts = {r[3] for r in results.values()}
            print(f"\n{shape} {fmt}: {size_mb:.0f} MB, {max(counts)} rows, {cores} cores")
            print(f"{'tool':<11} {'cores':>5} {'wall s':>7} {'MB/s':>7} {'peak RSS MiB':>12} {'output MB':>9} "
                  f"{'vs fastest peer':>15}  checks")
            ratios = {}
            for one_core in (True, False):
                peers = [size_mb / results[(t, one_core)][0] for t in tools if t != "lakeworker"]
                fastest = max(peers) if peers else None
                for tool in tools:
                    wall, rss, out_mb, count, problems = results[(tool, one_core)]
                    speed = size_mb / wall
                    ratio = speed / fastest if fastest else float("nan")
                    ratios[(tool, one_core)] = ratio
                    check = "ok" if not problems and len(counts) == 1 else "; ".join(problems) or "row count differs"
                    failed |= check != "ok"
                    print(f"{tool:<11} {1 if one_core else cores:>5} {wall:>7.2f} {speed:>7.0f} {rss:>12.0f} "
                          f"{out_mb:>9.1f} {ratio:>14.2f}x  {check}", flush=True)
            if "lakeworker" in tools:
                one, every = results[("lakeworker", True)], results[("lakeworker", False)]
                vs_pyarrow = (one[2] / results[("pyarrow", True)][2]) if "pyarrow" in tools else float("nan")
                summary.append((f"{shape} {fmt}", ratios[("lakeworker", True)], ratios[("lakeworker", False)],
                                one[0] / every[0], max(one[1], every[1]), vs_pyarrow))
    if summary:
        print(f"\nlakeworker against the fastest peer (throughput ratio), {cores} cores:")
        print(f"{'input':<13} {'1 core':>7} {'all cores':>9} {'speed-up':>8} {'peak RSS MiB':>12} {'output / pyarrow':>16}")
        for name, one, every, speedup, rss, size in summary:
            print(f"{name:<13} {one:>6.2f}x {every:>8.2f}x {speedup:>7.2f}x {rss:>12.0f} {size:>16.3f}")
    print("every output has the row count, the column types and zstd:", "no" if failed else "yes")

    if args.scale > 1 and "lakeworker" in tools:
        print(f"\nlakeworker's peak RSS versus file size (CSV, every core, {args.scale}x the rows):")
        print(f"{'shape':<8} {'input GB':>8} {'wall s':>7} {'peak RSS MiB':>12}")
        for shape in args.scale_shapes.split(","):
            src = bench_data.generate(shape, args.mb, args.out)["csv"]
            big = repeated(src, args.scale, args.out)
            found = []
            for path in (src, big):
                warm(path)
                dst = os.path.join(args.out, "out-scale.parquet")
                wall, rss = convert("lakeworker", shape, "csv", path, dst, False, args)
                os.remove(dst)
                found.append(rss)
                print(f"{shape:<8} {os.path.getsize(path) / 1e9:>8.1f} {wall:>7.2f} {rss:>12.0f}", flush=True)
            print(f"{shape}: peak RSS {100 * (found[1] / found[0] - 1):+.0f}% for a {args.scale}x bigger file")
            os.remove(big)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
