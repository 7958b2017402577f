"""Generates the benchmark inputs: for each data shape of bench/shapes.py, a CSV file of
about `--mb` megabytes and, for the shapes that have one, its JSON-lines twin (the same
rows). Deterministic for a given shape and size; existing files of that size are kept.

Usage: bench_data.py --mb 1000 --out .bench [--shapes narrow,wide,text,numeric]
"""
import argparse
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes  # noqa: E402


def generate(shape, mb, out):
    """{format: path} of the shape's inputs, generated unless already there."""
    spec = shapes.SHAPES[shape]
    columns = spec["columns"]
    os.makedirs(out, exist_ok=True)
    target = mb * 1_000_000
    paths = {fmt: os.path.join(out, f"{shape}-{mb}mb.{fmt}") for fmt in spec["formats"]}
    done = os.path.join(out, f"{shape}-{mb}mb.done")
    if os.path.exists(done) and all(os.path.exists(p) for p in paths.values()):
        return paths
    rng = random.Random(mb)
    notes = shapes.notes(rng)
    files = {fmt: open(path, "w") for fmt, path in paths.items()}
    try:
        files["csv"].write(",".join(name for name, _ in columns) + "\n")
        written, i = 0, 0
        batches = {fmt: [] for fmt in files}
        while written < target:
            row = spec["row"](rng, i, notes)
            i += 1
            line = shapes.csv_line(row, columns)
            written += len(line)
            batches["csv"].append(line)
            if "jsonl" in batches:
                batches["jsonl"].append(shapes.json_line(row, columns))
            if len(batches["csv"]) == 10000:
                for fmt, lines in batches.items():
                    files[fmt].write("".join(lines))
                    lines.clear()
        for fmt, lines in batches.items():
            files[fmt].write("".join(lines))
    finally:
        for f in files.values():
            f.close()
    open(done, "w").close()
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=1000)
    parser.add_argument("--out", default=".bench")
    parser.add_argument("--shapes", default=",".join(shapes.SHAPES))
    args = parser.parse_args()
    for name in args.shapes.split(","):
        print(*generate(name, args.mb, args.out).values())
