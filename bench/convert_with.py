"""Converts a benchmark input to Parquet (zstd) the way a user of another tool would.

Usage: convert_with.py pyarrow|duckdb|polars SHAPE csv|jsonl INPUT OUTPUT THREADS
THREADS 1 limits the tool to one thread; 0 lets it use every core. The column types come
from bench/shapes.py, given explicitly on every side, so all tools write the same types.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes  # noqa: E402


def with_pyarrow(columns, fmt, src, dst, threads):
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
    schema = pa.schema([(name, kinds[kind]) for name, kind in columns])
    if fmt == "csv":
        table = pcsv.read_csv(src, read_options=pcsv.ReadOptions(use_threads=threads != 1),
                              convert_options=pcsv.ConvertOptions(column_types=schema))
    else:
        # pyarrow's JSON reader has no date parsing: read dates as text, then cast.
        dates = [i for i, (_, kind) in enumerate(columns) if kind == "date"]
        read_as = schema
        for i in dates:
            read_as = read_as.set(i, pa.field(columns[i][0], pa.string()))
        table = pjson.read_json(src, read_options=pjson.ReadOptions(use_threads=threads != 1),
                                parse_options=pjson.ParseOptions(explicit_schema=read_as))
        for i in dates:
            table = table.set_column(i, columns[i][0], pc.cast(table[columns[i][0]], pa.date32()))
    pq.write_table(table, dst, compression="zstd")


def with_duckdb(columns, fmt, src, dst, threads):
    import duckdb

    kinds = {"string": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "date": "DATE",
             "timestamp": "TIMESTAMPTZ"}
    spec = "{" + ", ".join(f"'{name}': '{kinds[kind]}'" for name, kind in columns) + "}"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if threads == 1:
        con.execute("SET threads = 1")
    if fmt == "csv":
        source = f"read_csv('{src}', header = true, columns = {spec})"
    else:
        source = f"read_json('{src}', format = 'newline_delimited', columns = {spec})"
    con.execute(f"COPY (SELECT * FROM {source}) TO '{dst}' (FORMAT parquet, COMPRESSION zstd)")


def with_polars(columns, fmt, src, dst, threads):
    if threads == 1:
        os.environ["POLARS_MAX_THREADS"] = "1"
    import polars as pl

    kinds = {"string": pl.String, "int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean, "date": pl.Date,
             "timestamp": pl.Datetime("us", "UTC")}
    schema = {name: kinds[kind] for name, kind in columns}
    # Streaming: the file is scanned and written in morsels, never read whole.
    if fmt == "csv":
        frame = pl.scan_csv(src, schema=schema)
    else:
        frame = pl.scan_ndjson(src, schema=schema)
    frame.sink_parquet(dst, compression="zstd")


if __name__ == "__main__":
    tool, shape, fmt, src, dst, threads = sys.argv[1:7]
    convert = {"pyarrow": with_pyarrow, "duckdb": with_duckdb, "polars": with_polars}[tool]
    convert(shapes.SHAPES[shape]["columns"], fmt, src, dst, int(threads))
