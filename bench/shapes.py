"""The data shapes of the side-by-side benchmark, each a list of typed columns and a
deterministic row generator. One definition serves every tool: bench_data.py writes the
inputs from it, compare.py writes lakeworker's datasets from it, and convert_with.py gives
pyarrow, DuckDB and Polars the same column types.

- narrow: ~100-byte rows of 10 short columns (short ids, small ints, 2-decimal floats,
  second-resolution timestamps, a short quoted text): per-row and per-cell costs dominate.
- wide: ~170-byte rows (long quoted notes, 17-digit floats, microsecond timestamps).
- text: long high-cardinality strings (sentences, URLs, user agents): string handling and
  dictionary encoding that cannot pay.
- numeric: 20 int and float columns: number parsing and encoding.
The JSON-lines twins of narrow and wide carry the same rows.
"""
import datetime
import json

TYPES = ("string", "int", "float", "bool", "date", "timestamp")

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "fox", "golf", "hotel", "india", "juliet", "kilo", "lima",
         "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey",
         "xray", "yankee", "zulu", "amber", "basalt", "cobalt", "dune", "ember", "fjord", "glacier", "harbor"]
CATEGORIES = ["books", "games", "garden", "kitchen", "music", "office", "outdoor", "pets", "shoes", "toys",
              "audio", "baby", "beauty", "bikes", "camera", "cars", "phones", "sports", "tools", "travel"]
START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def _wide(rng, i, notes):
    t = START + datetime.timedelta(seconds=rng.randrange(0, 365 * 86400), microseconds=rng.randrange(0, 1000000))
    return (f"ev-{i:010d}", rng.randrange(1, 10_000_000), round(rng.uniform(0, 5000), 2), rng.randrange(1, 100),
            rng.random() < 0.5, t.date().isoformat(), t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), rng.choice(CATEGORIES),
            rng.random(), notes[rng.randrange(len(notes))])


def _narrow(rng, i, notes):
    t = START + datetime.timedelta(seconds=rng.randrange(0, 365 * 86400))
    return (f"o{i:07x}", rng.randrange(1, 1000), rng.randrange(0, 100), round(rng.uniform(0, 500), 2),
            round(rng.uniform(0, 50), 2), rng.random() < 0.7, t.strftime("%Y-%m-%dT%H:%M:%SZ"),
            rng.choice(CATEGORIES[:8]), f"s{rng.randrange(0, 50):02d}", notes[rng.randrange(len(notes))][:14])


def _text(rng, i, _notes):
    sentence = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))
    path = "/".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))
    agent = (f"Mozilla/5.0 (X11; Linux x86_64; rv:{rng.randrange(60, 140)}.0) Gecko/{rng.randrange(10**7, 10**8)} "
             f"Firefox/{rng.randrange(60, 140)}.{rng.randrange(0, 10)}")
    return (f"doc-{i:012d}", rng.randrange(1, 10**9), f"https://{rng.choice(WORDS)}.example.com/{path}?q={i}",
            agent, sentence.capitalize() + f". Ref {rng.randrange(10**9)}.", f"{rng.choice(WORDS)}-{rng.randrange(10**6)}")


def _numeric(rng, i, _notes):
    ints = [i] + [rng.randrange(-10**6, 10**6) for _ in range(9)]
    floats = [round(rng.uniform(-1000, 1000), rng.choice((2, 4, 6))) for _ in range(10)]
    return tuple(ints + floats)


SHAPES = {
    "narrow": {
        "columns": [("order_id", "string"), ("store", "int"), ("qty", "int"), ("price", "float"),
                    ("discount", "float"), ("paid", "bool"), ("at", "timestamp"), ("category", "string"),
                    ("status", "string"), ("note", "string")],
        "row": _narrow,
        "formats": ("csv", "jsonl"),
    },
    "wide": {
        "columns": [("id", "string"), ("user_id", "int"), ("amount", "float"), ("quantity", "int"), ("paid", "bool"),
                    ("day", "date"), ("created_at", "timestamp"), ("category", "string"), ("ratio", "float"),
                    ("note", "string")],
        "row": _wide,
        "formats": ("csv", "jsonl"),
    },
    "text": {
        "columns": [("doc_id", "string"), ("author", "int"), ("url", "string"), ("agent", "string"),
                    ("body", "string"), ("tag", "string")],
        "row": _text,
        "formats": ("csv",),
    },
    "numeric": {
        "columns": [(f"i{n}", "int") for n in range(10)] + [(f"f{n}", "float") for n in range(10)],
        "row": _numeric,
        "formats": ("csv",),
    },
}


def notes(rng):
    """Quoted free text with commas: the text cells of the wide and narrow shapes."""
    found = []
    for i in range(512):
        words = " ".join(rng.choice(WORDS[:12]) for _ in range(rng.randint(3, 9)))
        found.append(f'He said "{words}", then, twice: {i}')
    return found


def csv_cell(value, kind):
    if kind == "bool":
        return "true" if value else "false"
    if kind == "float":
        return repr(value)
    if kind == "string":
        text = str(value)
        if any(c in text for c in ',"\n'):
            return '"' + text.replace('"', '""') + '"'
        return text
    return str(value)


def csv_line(row, columns):
    return ",".join(csv_cell(v, kind) for v, (_, kind) in zip(row, columns)) + "\n"


def json_line(row, columns):
    return json.dumps(dict(zip([c for c, _ in columns], row)), separators=(",", ":")) + "\n"
