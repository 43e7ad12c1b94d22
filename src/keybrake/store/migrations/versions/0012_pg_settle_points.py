"""PostgreSQL: `keybrake_settle` settles cost-point counters (`core.caps.POINT_COUNTERS`) to the
points the answer reports (`Settlement.points`, passed as each job's `points`), else to what was
reserved, as `store.reservations.ReservedItem.settled_amount` does. The function is 0011's with
that one branch added. SQLite: nothing (its settlement is the shared Python transaction).

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# The audit columns a settlement writes, frozen here as of this revision (as in 0011).
SETTLE_COLS = (
    "metadata, verdict, error_code, reason, status, upstream_status, cost_usd, cost_source, cost_kind,"
    " cap_usage_after_usd, vendor_request_id, vendor_object_id, settled_by, redacted_fields, latency_ms,"
    " upstream_latency_ms, overhead_ms, reservation"
)

# `store.sql_settle.SettleQueries.settle_many` in one statement. Returns one object per job:
# `open` (its row still held a reservation), `reservation`, `has_daily`, `cap_usage`, and
# `earlier_settled` (this job moved its `earlier` outcome_unknown row, in this run or in a run of
# it that committed with its answer lost (`settled_by` names it): the metric counts it then).
SETTLE = r"""
CREATE OR REPLACE FUNCTION keybrake_settle(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    jobs jsonb := a->'jobs';
    open_rows jsonb;
    mv record;
    used_after jsonb := '{}';
    got bigint;
    job jsonb;
    j int := 0;
    is_open boolean;
    v_items jsonb;
    daily jsonb;
    cap_usage jsonb;
    params jsonb;
    e jsonb;
    usd_items text;
    earlier_settled boolean;
    out jsonb := '[]';
BEGIN
    -- The rows still holding a reservation, locked first (in id order), with what they reserved.
    SELECT coalesce(jsonb_object_agg(o.id, o.reservation), '{}') INTO open_rows
      FROM (SELECT au.id, au.reservation FROM audit au
             WHERE au.id IN (SELECT jsonb_array_elements(jobs)->>'row_id')
               AND au.reservation IS NOT NULL AND au.verdict IN ('in_flight', 'outcome_unknown')
             ORDER BY au.id FOR UPDATE) o;
    -- Every counter the batch releases, in lock order (ties: job order, then item order).
    FOR mv IN
        SELECT jn - 1 AS jx, it->>0 AS scope, it->>1 AS counter, (it->>2)::bigint AS ws,
               (it->>3)::bigint AS amount,
               CASE WHEN (it->>4)::boolean THEN (jb->>'cost_usd')::bigint
                    WHEN a->'send_counters' ? (it->>1) THEN CASE WHEN (jb->>'billed')::boolean
                                                               THEN (it->>3)::bigint ELSE 0 END
                    WHEN a->'point_counters' ? (it->>1) AND (jb->>'forwarded')::boolean
                         AND jsonb_typeof(jb->'points') = 'number' THEN (jb->>'points')::bigint
                    WHEN (jb->>'forwarded')::boolean THEN (it->>3)::bigint ELSE 0 END AS actual
          FROM jsonb_array_elements(jobs) WITH ORDINALITY AS t(jb, jn),
               jsonb_array_elements((open_rows->>(jb->>'row_id'))::jsonb) WITH ORDINALITY AS u(it, n)
         WHERE open_rows ? (jb->>'row_id') AND NOT (jb->>'keep')::boolean
         ORDER BY CASE WHEN (it->>0) LIKE 'key:%' THEN 0 ELSE 1 END, (it->>0) COLLATE "C", (it->>1) COLLATE "C",
                  (it->>2)::bigint, jn, n
    LOOP
        got := NULL;
        UPDATE counters SET reserved = reserved - mv.amount, used = used + mv.actual
         WHERE scope = mv.scope AND cap = mv.counter AND window_start = mv.ws
        RETURNING used INTO got;
        used_after := used_after || jsonb_build_object(mv.jx || '|' || mv.scope || '|' || mv.counter, got);
    END LOOP;
    FOR job IN SELECT x FROM jsonb_array_elements(jobs) AS t(x) LOOP
        is_open := open_rows ? (job->>'row_id');
        daily := NULL;
        cap_usage := NULL;
        earlier_settled := false;
        IF is_open THEN
            v_items := (open_rows->>(job->>'row_id'))::jsonb;
            SELECT it INTO daily FROM jsonb_array_elements(v_items) WITH ORDINALITY AS u(it, n)
             WHERE it->>1 = job->>'daily_counter' AND (it->>0) LIKE 'key:%' ORDER BY n LIMIT 1;
            params := job->'params';
            IF daily IS NOT NULL THEN
                IF (job->>'keep')::boolean THEN
                    cap_usage := to_jsonb((SELECT ct.used FROM counters ct WHERE ct.scope = daily->>0
                                             AND ct.cap = daily->>1 AND ct.window_start = (daily->>2)::bigint));
                ELSE
                    cap_usage := used_after->(j || '|' || (daily->>0) || '|' || (daily->>1));
                END IF;
                params := params || jsonb_build_object('cap_usage_after_usd', cap_usage);
            END IF;
            params := params || jsonb_build_object('reservation',
                CASE WHEN (job->>'keep')::boolean THEN open_rows->>(job->>'row_id') END);
            UPDATE audit SET (@SETTLE_COLS@) = (SELECT @SETTLE_COLS@ FROM jsonb_populate_record(NULL::audit, params))
             WHERE id = job->>'row_id';
            IF jsonb_typeof(job->'earlier') = 'object' THEN
                earlier_settled := keybrake_settle_kept(job->'earlier', job->>'row_id');
            END IF;
        END IF;
        IF jsonb_typeof(job->'earlier') = 'object' AND NOT earlier_settled THEN
            -- Settled already: by this very job if a run of it committed but its answer was lost.
            earlier_settled := EXISTS (SELECT 1 FROM audit au WHERE au.id = job->'earlier'->>'id'
                                                                AND au.settled_by = job->>'row_id');
        END IF;
        IF jsonb_typeof(job->'ledger') = 'array' THEN
            FOR e IN SELECT x FROM jsonb_array_elements(job->'ledger') AS t(x) LOOP
                INSERT INTO ledger AS l (credential, object_id, kind, customer, account_context, currency, amount,
                                         refunded, captured, amount_counted, updated_at)
                SELECT job->>'ledger_credential', r.object_id, r.kind, r.customer, r.account_context, r.currency,
                       r.amount, r.refunded, r.captured, 0, (job->>'ts')::bigint
                  FROM jsonb_populate_record(NULL::ledger, e) r
                ON CONFLICT (credential, object_id) DO UPDATE SET
                    customer = COALESCE(excluded.customer, l.customer),
                    account_context = COALESCE(excluded.account_context, l.account_context),
                    currency = COALESCE(excluded.currency, l.currency),
                    amount = COALESCE(excluded.amount, l.amount),
                    refunded = COALESCE(excluded.refunded, l.refunded),
                    captured = COALESCE(excluded.captured, l.captured),
                    updated_at = excluded.updated_at;
            END LOOP;
        END IF;
        IF jsonb_typeof(job->'count') = 'object' AND is_open AND job->>'credential' IS NOT NULL THEN
            SELECT '[' || coalesce(string_agg(format('[%s, %s, %s]', to_json(it->>0), to_json(it->>1), it->>2),
                                              ', ' ORDER BY n), '') || ']'
              INTO usd_items FROM jsonb_array_elements(v_items) WITH ORDINALITY AS u(it, n)
             WHERE (it->>4)::boolean;
            PERFORM keybrake_count_object(job->>'credential', job->'count'->>'object_id', job->>'row_id',
                                          (job->'count'->>'amount')::bigint, (job->'count'->>'committed')::bigint,
                                          (job->>'held')::bigint, usd_items);
        END IF;
        IF jsonb_typeof(job->'dedup') = 'object' THEN
            IF job->'dedup'->>'state' = 'release' THEN
                DELETE FROM dedup WHERE key_id = job->'dedup'->>'key_id'
                   AND fingerprint = job->'dedup'->>'fingerprint' AND row_id = job->>'row_id';
            ELSE
                UPDATE dedup SET state = job->'dedup'->>'state', answer_enc = decode(job->'dedup'->>'answer_hex', 'hex')
                 WHERE key_id = job->'dedup'->>'key_id' AND fingerprint = job->'dedup'->>'fingerprint'
                   AND row_id = job->>'row_id';
            END IF;
        END IF;
        out := out || jsonb_build_array(jsonb_build_object(
            'open', is_open, 'reservation', open_rows->(job->>'row_id'),
            'has_daily', daily IS NOT NULL, 'cap_usage', cap_usage, 'earlier_settled', earlier_settled));
        j := j + 1;
    END LOOP;
    RETURN out;
END $$
""".replace("@SETTLE_COLS@", SETTLE_COLS)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(SETTLE)


def downgrade() -> None:
    """Back to 0011's function, which settles a point counter to its reserved bound."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(SETTLE.replace(_POINTS, ""))


_POINTS = """                    WHEN a->'point_counters' ? (it->>1) AND (jb->>'forwarded')::boolean
                         AND jsonb_typeof(jb->'points') = 'number' THEN (jb->>'points')::bigint
"""
