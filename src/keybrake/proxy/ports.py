"""What the hot path needs from the store, named once.

Every module of the proxy's shell (pipeline, keys, facts, reservation, record, settler) types its
store as `HotPathStore`, so narrowing it to a role protocol of store.base is this one line. The
methods the proxy calls: key_by_hash, now_ms, db_now_ms, reserve, dedup_get, count_request,
counters_for, credential, ledger_get, ledger_put, insert_audit, settle_many. The pure decisions
(proxy/decide.py, proxy/outcome.py, proxy/decisions.py) use none.
"""

from __future__ import annotations

from keybrake.store.base import Store

HotPathStore = Store
