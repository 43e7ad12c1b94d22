"""PostgreSQL: `keybrake_settle_kept` (a retry's answer settling the earlier `outcome_unknown`
request) also writes the row's `cap_usage_after_usd`: the key's usage after that settlement,
as `store.sql_settle._settle_kept` does. Before, the row kept the usage it was written with
while its reservation was held, which left out its own cost. The function is 0011's with that
one column added. SQLite: nothing (its settlement is the shared Python transaction).

Revision ID: 0013
Revises: 0012
"""

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# The counters `cap_usage_after_usd` reports, in order (`store.reservations.REPORTED_USD_COUNTERS`,
# frozen here as of this revision).
SETTLE_KEPT = r"""
CREATE OR REPLACE FUNCTION keybrake_settle_kept(e jsonb, p_by text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    r record;
    it jsonb;
    rep jsonb;
    got bigint;
    cap_usage bigint;
    cost bigint := (e->>'cost_usd')::bigint;
    usd_items text;
BEGIN
    SELECT au.reservation, au.credential INTO r FROM audit au
     WHERE au.id = e->>'id' AND au.verdict IN ('outcome_unknown') AND au.reservation IS NOT NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT x INTO rep FROM jsonb_array_elements(r.reservation::jsonb) WITH ORDINALITY AS t(x, n)
     WHERE (x->>0) LIKE 'key:%' AND (x->>4)::boolean AND x->>1 IN ('daily_usd', 'total_usd')
     ORDER BY CASE x->>1 WHEN 'daily_usd' THEN 0 ELSE 1 END, n LIMIT 1;
    FOR it IN SELECT x FROM jsonb_array_elements(r.reservation::jsonb) WITH ORDINALITY AS t(x, n)
               ORDER BY CASE WHEN (x->>0) LIKE 'key:%' THEN 0 ELSE 1 END, (x->>0) COLLATE "C",
                        (x->>1) COLLATE "C", (x->>2)::bigint, n LOOP
        got := NULL;
        UPDATE counters SET reserved = reserved - (it->>3)::bigint,
                            used = used + CASE WHEN (it->>4)::boolean THEN cost ELSE (it->>3)::bigint END
         WHERE scope = it->>0 AND cap = it->>1 AND window_start = (it->>2)::bigint
        RETURNING used INTO got;
        IF rep IS NOT NULL AND it->>0 = rep->>0 AND it->>1 = rep->>1 AND it->>2 = rep->>2 THEN
            cap_usage := got;
        END IF;
    END LOOP;
    UPDATE audit SET verdict = 'allowed', cost_usd = cost, cost_source = e->>'cost_source', cost_kind = e->>'cost_kind',
                     settled_by = p_by, reservation = NULL,
                     reason = COALESCE('outcome settled by the retry ' || p_by, reason),
                     cap_usage_after_usd = COALESCE(cap_usage, cap_usage_after_usd)
     WHERE id = e->>'id';
    IF jsonb_typeof(e->'count') = 'object' AND r.credential IS NOT NULL THEN
        SELECT '[' || coalesce(string_agg(format('[%s, %s, %s]', to_json(x->>0), to_json(x->>1), x->>2),
                                          ', ' ORDER BY n), '') || ']'
          INTO usd_items FROM jsonb_array_elements(r.reservation::jsonb) WITH ORDINALITY AS t(x, n)
         WHERE (x->>4)::boolean;
        PERFORM keybrake_count_object(r.credential, e->'count'->>'object_id', e->>'id',
                                      (e->'count'->>'amount')::bigint, (e->'count'->>'committed')::bigint,
                                      cost, usd_items);
    END IF;
    RETURN true;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(SETTLE_KEPT)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_revision_0011().SETTLE_KEPT)  # 0011's function, without the column


def _revision_0011() -> ModuleType:
    """Migration 0011's module (its file name is no Python identifier)."""
    path = Path(__file__).with_name("0011_pg_reserve_functions.py")
    spec = importlib.util.spec_from_file_location("keybrake_migration_0011", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
