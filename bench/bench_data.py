"""Generates the benchmark inputs: a CSV file of about `--mb` megabytes and its JSON-lines
twin, with 10 mixed-type columns (string ids, ints, floats, bools, dates, timestamps,
a low-cardinality string, free text with quotes and commas). Deterministic for a given
size; an existing file of the requested size is kept. The matching lakeworker datasets are
in bench/bench.toml.

Usage: bench_data.py --mb 1000 --out .bench
"""
import argparse
import datetime
import json
import os
import random

COLUMNS = [
    ("id", "string"), ("user_id", "int"), ("amount", "float"), ("quantity", "int"), ("paid", "bool"),
    ("day", "date"), ("created_at", "timestamp"), ("category", "string"), ("ratio", "float"), ("note", "string"),
]
CATEGORIES = ["books", "games", "garden", "kitchen", "music", "office", "outdoor", "pets", "shoes", "toys",
              "audio", "baby", "beauty", "bikes", "camera", "cars", "phones", "sports", "tools", "travel"]
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "fox", "golf", "hotel", "india", "juliet", "kilo", "lima"]


def rows(rng, count):
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    notes = []
    for i in range(512):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9)))
        notes.append(f'He said "{words}", then, twice: {i}')
    for i in range(count):
        t = start + datetime.timedelta(seconds=rng.randrange(0, 365 * 86400), microseconds=rng.randrange(0, 1000000))
        yield (
            f"ev-{i:010d}", rng.randrange(1, 10_000_000), round(rng.uniform(0, 5000), 2), rng.randrange(1, 100),
            rng.random() < 0.5, t.date().isoformat(), t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), rng.choice(CATEGORIES),
            rng.random(), notes[rng.randrange(len(notes))],
        )


def csv_line(r):
    note = '"' + r[9].replace('"', '""') + '"'
    return f"{r[0]},{r[1]},{r[2]},{r[3]},{'true' if r[4] else 'false'},{r[5]},{r[6]},{r[7]},{r[8]!r},{note}\n"


def json_line(r):
    return json.dumps(dict(zip([c for c, _ in COLUMNS], r)), separators=(",", ":")) + "\n"


def generate(mb, out):
    os.makedirs(out, exist_ok=True)
    target = mb * 1_000_000
    csv_path, jsonl_path = os.path.join(out, f"bench-{mb}mb.csv"), os.path.join(out, f"bench-{mb}mb.jsonl")
    if os.path.exists(csv_path) and os.path.exists(jsonl_path) and os.path.getsize(csv_path) >= target:
        return csv_path, jsonl_path
    rng = random.Random(mb)
    written = 0
    with open(csv_path, "w") as c, open(jsonl_path, "w") as j:
        c.write(",".join(name for name, _ in COLUMNS) + "\n")
        batch_c, batch_j = [], []
        for r in rows(rng, 10**12):
            line = csv_line(r)
            batch_c.append(line)
            batch_j.append(json_line(r))
            written += len(line)
            if len(batch_c) == 10000:
                c.write("".join(batch_c))
                j.write("".join(batch_j))
                batch_c, batch_j = [], []
            if written >= target:
                break
        c.write("".join(batch_c))
        j.write("".join(batch_j))
    return csv_path, jsonl_path


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=1000)
    parser.add_argument("--out", default=".bench")
    args = parser.parse_args()
    paths = generate(args.mb, args.out)
    print(*paths)
