"""Converts a benchmark input to Parquet (zstd) the way a user of another tool would.

Usage: convert_with.py pyarrow|duckdb csv|jsonl INPUT OUTPUT THREADS
THREADS 1 limits the tool to one thread; 0 lets it use every core.
Types are given explicitly on every side, so all tools write the same column types.
"""
import sys

COLUMNS = [("id", "string"), ("user_id", "int"), ("amount", "float"), ("quantity", "int"), ("paid", "bool"),
           ("day", "date"), ("created_at", "timestamp"), ("category", "string"), ("ratio", "float"),
           ("note", "string")]


def with_pyarrow(fmt, src, dst, threads):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.json as pjson
    import pyarrow.parquet as pq

    if threads == 1:
        pa.set_cpu_count(1)
        pa.set_io_thread_count(1)
    kinds = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
             "date": pa.date32(), "timestamp": pa.timestamp("us", tz="UTC")}
    schema = pa.schema([(name, kinds[kind]) for name, kind in COLUMNS])
    if fmt == "csv":
        table = pcsv.read_csv(src, read_options=pcsv.ReadOptions(use_threads=threads != 1),
                              convert_options=pcsv.ConvertOptions(column_types=schema))
    else:
        # pyarrow's JSON reader has no date parsing: read the date as text, then cast.
        day = schema.get_field_index("day")
        read_as = schema.set(day, pa.field("day", pa.string()))
        table = pjson.read_json(src, read_options=pjson.ReadOptions(use_threads=threads != 1),
                                parse_options=pjson.ParseOptions(explicit_schema=read_as))
        table = table.set_column(day, "day", pc.cast(table["day"], pa.date32()))
    pq.write_table(table, dst, compression="zstd")


def with_duckdb(fmt, src, dst, threads):
    import duckdb

    kinds = {"string": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "date": "DATE",
             "timestamp": "TIMESTAMPTZ"}
    columns = "{" + ", ".join(f"'{name}': '{kinds[kind]}'" for name, kind in COLUMNS) + "}"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if threads == 1:
        con.execute("SET threads = 1")
    if fmt == "csv":
        source = f"read_csv('{src}', header = true, columns = {columns})"
    else:
        source = f"read_json('{src}', format = 'newline_delimited', columns = {columns})"
    con.execute(f"COPY (SELECT * FROM {source}) TO '{dst}' (FORMAT parquet, COMPRESSION zstd)")


if __name__ == "__main__":
    tool, fmt, src, dst, threads = sys.argv[1:6]
    {"pyarrow": with_pyarrow, "duckdb": with_duckdb}[tool](fmt, src, dst, int(threads))
