"""Reads Parquet with pyarrow, independently of our Rust reader, and prints JSON.

Usage: pyarrow_read.py PATH
PATH is a Parquet file, or a folder read as a Hive-partitioned dataset (the way Athena,
Spark and pyarrow discover partition columns from `column=value` folders), with the union
of its files' schemas.
Prints {"schema": {column: arrow type}, "rows": [row, ...]} with rows sorted.
"""
import json
import pathlib
import sys

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

path = pathlib.Path(sys.argv[1])
if path.is_dir():
    dataset = ds.dataset(str(path), format="parquet", partitioning="hive")
    # Files written before and after a table added columns differ: read them all with the
    # union of their schemas (as Athena reads them with the table's), missing columns null.
    schemas = [f.physical_schema for f in dataset.get_fragments()]
    if schemas:
        unified = pa.unify_schemas(schemas + [dataset.schema])
        dataset = ds.dataset(str(path), format="parquet", partitioning="hive", schema=unified)
    table = dataset.to_table()
else:
    table = pq.read_table(str(path))
rows = table.to_pylist()
rows.sort(key=lambda r: json.dumps(r, sort_keys=True, default=str))
print(json.dumps({"schema": {f.name: str(f.type) for f in table.schema}, "rows": rows}, default=str))
