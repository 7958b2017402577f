"""Starts moto's server (same arguments as `moto_server`) with two places where moto is
weaker than AWS patched; everything else is moto as pinned in tests/requirements.txt.

1. DynamoDB item operations made atomic. moto's DynamoDB checks a ConditionExpression and
   then writes, without a lock, while its server answers requests on several threads, so two
   concurrent conditional writes can both succeed (seen in lakeworker's duplicate-delivery
   test: two claims of one object). Real DynamoDB makes every conditional write atomic, and
   the ledger relies on that. This wrapper puts one lock around moto's item reads and writes.

2. Glue UpdateTable honours VersionId. moto 5.2.5 ignores UpdateTable's VersionId: the last
   writer wins. Real Glue refuses an UpdateTable whose VersionId is not the table's current
   version with ConcurrentModificationException, and each update it accepts makes a new
   version. Iceberg's Glue catalog (the Rust `iceberg-catalog-glue` crate, pyiceberg, Java's
   GlueTableOperations) commits by GetTable -> write new metadata -> UpdateTable with the
   VersionId from that GetTable, and relies on this refusal so that two concurrent commits
   cannot both land (the loser's snapshot would otherwise be silently dropped). moto keeps a
   table's versions in FakeTable.versions ({"1": TableInput, "2": ...}) and its current one in
   FakeTable._current_version (an int, starting at 1, +1 on every UpdateTable); GetTable
   returns str(_current_version) as VersionId, so that is what the check compares with. The
   check and the update run under one lock, as do Glue's other table requests (moto's
   CreateTable also checks-then-inserts, so two concurrent creates could both succeed; real
   Glue answers the second with AlreadyExistsException). An UpdateTable without VersionId
   stays unconditional, as in Glue. moto already answers CreateTable of an existing table with
   AlreadyExistsException and GetTable of a missing table (or database) with
   EntityNotFoundException, like Glue, so those are left as they are.
"""
import functools
import json
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.glue.exceptions import GlueClientError
from moto.glue.responses import GlueResponse
from moto.server import main

_lock = threading.RLock()

for _name in ("put_item", "update_item", "delete_item", "get_item", "query", "scan", "transact_write_items"):
    _original = getattr(DynamoDBBackend, _name)

    def _locked(self, *args, __original=_original, **kwargs):
        with _lock:
            return __original(self, *args, **kwargs)

    setattr(DynamoDBBackend, _name, functools.wraps(_original)(_locked))


class ConcurrentModificationException(GlueClientError):
    def __init__(self, message):
        super().__init__("ConcurrentModificationException", message)


_glue_lock = threading.RLock()

for _name in (
    "create_table",
    "get_table",
    "get_tables",
    "delete_table",
    "batch_delete_table",
    "get_table_version",
    "get_table_versions",
    "delete_table_version",
):
    _original = getattr(GlueResponse, _name)

    def _glue_locked(self, *args, __original=_original, **kwargs):
        with _glue_lock:
            return __original(self, *args, **kwargs)

    setattr(GlueResponse, _name, functools.wraps(_original)(_glue_locked))

_original_update_table = GlueResponse.update_table


@functools.wraps(_original_update_table)
def _update_table(self):
    request = json.loads(self.body)
    version_id = request.get("VersionId")
    with _glue_lock:
        if version_id is not None:
            name = (request.get("TableInput") or {}).get("Name")
            # Raises EntityNotFoundException for a missing database or table, as Glue does.
            table = self.glue_backend.get_table(request.get("DatabaseName"), name)
            current = str(table._current_version)  # what GetTable returns as VersionId
            if version_id != current:
                raise ConcurrentModificationException(
                    f"Update table failed due to concurrent modifications: VersionId {version_id}"
                    f" is not the current version {current} of table {name}."
                )
        return _original_update_table(self)


GlueResponse.update_table = _update_table

if __name__ == "__main__":
    main()
