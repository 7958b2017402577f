"""Helpers for `make demo`: upload the examples, wait for the worker, report the lake."""
import argparse
import io
import json
import pathlib
import sys
import time
import tomllib
import urllib.request

import boto3
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parent.parent


def wait_emulator(endpoint, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            return
        except Exception:
            time.sleep(0.2)
    sys.exit(f"emulator did not answer at {endpoint} within {timeout}s")


def clients(endpoint, region):
    kw = dict(endpoint_url=endpoint, region_name=region,
              aws_access_key_id="test", aws_secret_access_key="test")
    return boto3.client("s3", **kw), boto3.client("sqs", **kw), boto3.client("dynamodb", **kw)


def queue_depth(sqs, url):
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def run(endpoint, config_path, timeout=120):
    config = tomllib.loads(pathlib.Path(config_path).read_text())
    s3, sqs, dynamodb = clients(endpoint, config["aws"]["region"])
    landing, lake = config["landing"]["bucket"], config["lake"]["bucket"]
    queue_url = sqs.get_queue_url(QueueName=config["queue"]["url"].rstrip("/").rsplit("/", 1)[-1])["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=config["queue"]["dead_letter_url"].rstrip("/").rsplit("/", 1)[-1])["QueueUrl"]

    examples = ROOT / "examples"
    for path in sorted(examples.rglob("*")):
        if path.is_file() and "messages" not in path.parts:
            key = str(path.relative_to(examples))
            s3.upload_file(str(path), landing, key)
            print(f"  put s3://{landing}/{key}")
    for path in sorted((examples / "messages").glob("*.json")):
        sqs.send_message(QueueUrl=queue_url, MessageBody=path.read_text())
        print(f"  sent {path.relative_to(ROOT)} to the queue")

    deadline = time.time() + timeout
    calm = 0
    while calm < 3:
        if time.time() > deadline:
            sys.exit(f"the queue still holds {queue_depth(sqs, queue_url)} message(s) after {timeout}s; see .demo/worker.log")
        calm = calm + 1 if queue_depth(sqs, queue_url) == 0 else 0
        time.sleep(0.5)
    print("  queue drained")

    print(f"\nlake objects in s3://{lake}:")
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=lake):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            body = s3.get_object(Bucket=lake, Key=key)["Body"].read()
            if key.endswith(".parquet"):
                table = pq.read_table(io.BytesIO(body))
                print(f"  {key}  ({table.num_rows} rows, {obj['Size']} bytes)")
            elif key.endswith(".rows.jsonl"):
                print(f"  {key}  ({len(body.splitlines())} quarantined rows)")
            elif "/metadata/" in key and not key.startswith(config["lake"].get("quarantine_prefix", "quarantine") + "/"):
                print(f"  {key}  (Iceberg metadata, {obj['Size']} bytes)")
            elif key.endswith(".error.json"):
                print(f"  {key}  (rejection report: {json.loads(body)['reason']})")
            else:
                print(f"  {key}  (rejected file, {obj['Size']} bytes)")

    print_rescued(s3, lake, config)

    print("\nDynamoDB tables:")
    for dataset in config.get("datasets", []):
        table = dataset.get("records_table")
        if table:
            count = dynamodb.scan(TableName=table, Select="COUNT")["Count"]
            print(f"  {table}: {count} rows (dataset {dataset['name']}, key {dataset['records_key']})")

    default_format = config["lake"].get("table_format", "hive")
    iceberg = [d["name"] for d in config.get("datasets", []) if d.get("table_format", default_format) == "iceberg"]
    if iceberg:
        print_iceberg(endpoint, config, iceberg)

    ledger = config["ledger"]["table"]
    statuses = {}
    for page in dynamodb.get_paginator("scan").paginate(TableName=ledger):
        for item in page["Items"]:
            # Object versions only (not commit records, table leases, catalog notes).
            if not item["object_uri"]["S"].startswith("s3://"):
                continue
            status = item.get("status", {}).get("S", "?")
            statuses[status] = statuses.get(status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())) or "empty"
    print(f"\nledger {ledger}: {summary}")

    dead = int(sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
    print(f"\ndead-letter queue: {dead} message(s)")


def print_rescued(s3, lake, config):
    """The rows of rescuing datasets that carry a _rescued value (read with pyarrow)."""
    names = [d["name"] for d in config.get("datasets", [])
             if "rescue" in (d.get("on_new_columns"), d.get("on_invalid"))]
    prefix = config["lake"].get("prefix", "curated")
    for name in names:
        print(f"\n_rescued values in dataset {name} (on_new_columns / on_invalid = \"rescue\"):")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=lake, Prefix=f"{prefix}/{name}/")
        for page in pages:
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith(".parquet"):
                    continue
                body = s3.get_object(Bucket=lake, Key=obj["Key"])["Body"].read()
                table = pq.read_table(io.BytesIO(body))
                key_column = table.column_names[0]
                for row in table.to_pylist():
                    if row["_rescued"] is not None:
                        print(f"  {key_column} {row[key_column]}: {row['_rescued']}")


def print_iceberg(endpoint, config, names):
    from pyiceberg.catalog import load_catalog

    region = config["aws"]["region"]
    keys = {"access-key-id": "test", "secret-access-key": "test"}
    catalog = load_catalog(
        "glue",
        **{"type": "glue", "glue.endpoint": endpoint, "glue.region": region,
           **{f"glue.{k}": v for k, v in keys.items()},
           "s3.endpoint": endpoint, "s3.region": region, "s3.force-virtual-addressing": "false",
           **{f"s3.{k}": v for k, v in keys.items()}},
    )
    database = config["catalog"]["database"]
    print("\nIceberg tables (read with pyiceberg):")
    for name in names:
        table = catalog.load_table((database, name))
        rows = table.scan().to_arrow().num_rows
        files = len(list(table.scan().plan_files()))
        snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
        print(f"  {database}.{name}: {rows} rows in {files} data files, {len(snapshots)} snapshot(s)")
        for s in snapshots:
            props = s.summary.additional_properties if s.summary else {}
            print(f"    snapshot {s.snapshot_id}: +{props.get('added-records', '?')} rows, "
                  f"commit {props.get('lakeworker.commit-id', '-')}")


def history(endpoint, config_path):
    """The load history the worker flushed at its stop (read with pyarrow)."""
    config = tomllib.loads(pathlib.Path(config_path).read_text())
    s3, _, _ = clients(endpoint, config["aws"]["region"])
    lake, prefix = config["lake"]["bucket"], config["lake"].get("prefix", "curated")
    rows = []
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=lake, Prefix=f"{prefix}/lakeworker_loads/")
    for page in pages:
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=lake, Key=obj["Key"])["Body"].read()
            rows.extend(pq.read_table(io.BytesIO(body)).to_pylist())
    print(f"\nload history (s3://{lake}/{prefix}/lakeworker_loads/, {len(rows)} rows):")
    for row in sorted(rows, key=lambda r: r["source_uri"]):
        counts = f"{row['rows_in']} in, {row['rows_written']} written, {row['rows_quarantined']} quarantined, {row['rows_rescued']} rescued"
        error = f"; first error: {row['first_error'][:90]}" if row["first_error"] else ""
        print(f"  {row['status']:8} {row['dataset']:7} {row['source_uri']} ({counts}){error}")


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("wait-emulator")
    w.add_argument("endpoint")
    r = sub.add_parser("run")
    r.add_argument("--endpoint", required=True)
    r.add_argument("--config", required=True)
    h = sub.add_parser("history")
    h.add_argument("--endpoint", required=True)
    h.add_argument("--config", required=True)
    args = parser.parse_args()
    if args.command == "wait-emulator":
        wait_emulator(args.endpoint)
    elif args.command == "history":
        history(args.endpoint, args.config)
    else:
        run(args.endpoint, args.config)


if __name__ == "__main__":
    main()
