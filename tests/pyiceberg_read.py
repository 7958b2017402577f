"""Reads an Iceberg table through pyiceberg's Glue catalog, independently of our Rust writer,
and prints JSON.

Usage: pyiceberg_read.py --endpoint URL --region R --database D --table T
URL is the emulator's address (Glue and S3 both); credentials are moto's "testing"/"testing".
Prints one JSON object:
  {"schema": {column: iceberg type}, "field_ids": {column: field id},
   "partition_spec": [{"source": column, "transform": str, "name": partition field name}],
   "rows": [row, ...] (sorted, read with table.scan().to_arrow(), so by field id),
   "snapshots": [{"snapshot_id", "parent_id", "operation", "summary": {...}}] in commit order,
   "data_files": [{"path", "record_count", "file_size_in_bytes", "partition": {...}}]
     (the current snapshot's live data files, sorted by path; partition values as stored
     in the manifests),
   "schemas": how many schemas the table's metadata holds (1 + one per schema update)}
"""
import argparse
import json

from pyiceberg.catalog import load_catalog

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--endpoint", required=True)
parser.add_argument("--region", required=True)
parser.add_argument("--database", required=True)
parser.add_argument("--table", required=True)
args = parser.parse_args()

catalog = load_catalog(
    "glue",
    **{
        "type": "glue",
        "glue.endpoint": args.endpoint,
        "glue.region": args.region,
        "glue.access-key-id": "testing",
        "glue.secret-access-key": "testing",
        "s3.endpoint": args.endpoint,
        "s3.region": args.region,
        "s3.access-key-id": "testing",
        "s3.secret-access-key": "testing",
        # Path-style requests (http://host:port/bucket/key): the emulator has no per-bucket
        # host names. pyarrow's default with an endpoint override, stated so it stays so.
        "s3.force-virtual-addressing": "false",
    },
)
table = catalog.load_table((args.database, args.table))
schema = table.schema()

partition_spec = [
    {"source": schema.find_column_name(f.source_id), "transform": str(f.transform), "name": f.name}
    for f in table.spec().fields
]

rows = table.scan().to_arrow().to_pylist()
rows.sort(key=lambda r: json.dumps(r, sort_keys=True, default=str))

# Commit order: sequence numbers increase with each commit (format v2); v1 tables have none,
# so the commit timestamp orders them (a stable sort keeps the metadata's order on ties).
snapshots = sorted(table.snapshots(), key=lambda s: (s.sequence_number or 0, s.timestamp_ms))


def summary(snapshot):
    if snapshot.summary is None:
        return {}
    # The snapshot's summary map as the metadata JSON has it, operation included.
    props = {"operation": str(snapshot.summary.operation.value)}
    props.update({k: str(v) for k, v in snapshot.summary.additional_properties.items()})
    return props


specs = table.specs()
data_files = []
if table.current_snapshot() is not None:
    for task in table.scan().plan_files():
        f = task.file
        spec = specs[f.spec_id]
        data_files.append(
            {
                "path": f.file_path,
                "record_count": f.record_count,
                "file_size_in_bytes": f.file_size_in_bytes,
                "partition": {pf.name: f.partition[i] for i, pf in enumerate(spec.fields)},
            }
        )
data_files.sort(key=lambda d: d["path"])

print(
    json.dumps(
        {
            "schema": {f.name: str(f.field_type) for f in schema.fields},
            "field_ids": {f.name: f.field_id for f in schema.fields},
            "partition_spec": partition_spec,
            "rows": rows,
            "snapshots": [
                {
                    "snapshot_id": s.snapshot_id,
                    "parent_id": s.parent_snapshot_id,
                    "operation": s.summary.operation.value if s.summary else None,
                    "summary": summary(s),
                }
                for s in snapshots
            ],
            "data_files": data_files,
            "schemas": len(table.metadata.schemas),
        },
        default=str,
    )
)
