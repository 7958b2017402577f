"""Starts moto's server (same arguments as `moto_server`) with DynamoDB item operations
made atomic.

moto's DynamoDB checks a ConditionExpression and then writes, without a lock, while its
server answers requests on several threads, so two concurrent conditional writes can both
succeed (seen in lakeworker's duplicate-delivery test: two claims of one object). Real
DynamoDB makes every conditional write atomic, and the ledger relies on that. This wrapper
puts one lock around moto's item reads and writes; everything else is moto as pinned in
tests/requirements.txt.
"""
import functools
import threading

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

_lock = threading.RLock()

for _name in ("put_item", "update_item", "delete_item", "get_item", "query", "scan", "transact_write_items"):
    _original = getattr(DynamoDBBackend, _name)

    def _locked(self, *args, __original=_original, **kwargs):
        with _lock:
            return __original(self, *args, **kwargs)

    setattr(DynamoDBBackend, _name, functools.wraps(_original)(_locked))

if __name__ == "__main__":
    main()
