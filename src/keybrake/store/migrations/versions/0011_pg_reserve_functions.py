"""PostgreSQL: the reservation as one statement (`keybrake_reserve`), with the window and audit-id
helpers it needs. SQLite: nothing (its reservation stays the shared Python transaction).

`keybrake_reserve(args jsonb) RETURNS jsonb` does in one statement, one implicit transaction and
one round trip what `store.sql_reserve.ReserveQueries._reserve` does in a BEGIN…COMMIT block
(store/pg_reserve.py builds `args` and reads the answer back into a `ReserveResult`). The
differential tests (tests/store/test_pg_reserve_diff.py) run both on the same database.

`keybrake_window_start` is `core.windows.window_start` (DST gaps and repeated midnights resolved
as Python's `fold=0` does: the offset in effect before the transition); `keybrake_audit_id_floor`
is `store.ids.audit_id_floor`.

Revision ID: 0011
Revises: 0010
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# The columns `store.sql_rows._INSERT_AUDIT` writes (AUDIT_FIELDS + owner, reservation,
# fingerprint, object_ref), frozen here as of this revision.
AUDIT_COLS = (
    "id, ts, method, path, verdict, key_id, label, agent_run_id, triggering_event_id, vendor, credential,"
    " endpoint, error_code, reason, status, upstream_status, cost_usd, reserved_usd, cost_source, cost_kind,"
    " cap_usage_after_usd, customer_scope_id, account_context, vendor_request_id, vendor_object_id,"
    " idempotency_key, dedup_of, settled_by, request_summary, body_hash, redacted_fields, preflight_lookup,"
    " latency_ms, upstream_latency_ms, overhead_ms, metadata, owner, reservation, fingerprint, object_ref"
)

WINDOW_START = r"""
CREATE OR REPLACE FUNCTION keybrake_window_start(p_window text, p_now bigint, p_tz text) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
    old_tz text;
    l timestamp;
    x timestamptz;
    c timestamptz;
    best timestamptz;
    o interval;
BEGIN
    IF p_window = 'hour' THEN
        RETURN p_now - ((p_now % 3600000) + 3600000) % 3600000;
    ELSIF p_window = 'total' THEN
        RETURN 0;
    ELSIF p_tz = 'UTC' AND p_window = 'day' THEN
        RETURN p_now - ((p_now % 86400000) + 86400000) % 86400000;
    END IF;
    -- The zone as the TimeZone setting reads it: always the IANA zone (`AT TIME ZONE 'CET'` would
    -- read 'CET' as the fixed-offset abbreviation), restored before returning.
    old_tz := current_setting('TimeZone');
    PERFORM set_config('TimeZone', p_tz, true);
    l := date_trunc(CASE WHEN p_window = 'month' THEN 'month' ELSE 'day' END,
                    to_timestamp(p_now::float8 / 1000.0)::timestamp);
    x := l::timestamptz;
    -- The earliest instant whose local time is `l` (a repeated midnight: the first one); none
    -- (a midnight skipped by a DST gap): PostgreSQL's reading, the offset before the gap.
    FOREACH o IN ARRAY ARRAY[
        x::timestamp - (x AT TIME ZONE 'UTC'),
        (x - interval '1 day')::timestamp - ((x - interval '1 day') AT TIME ZONE 'UTC'),
        (x + interval '1 day')::timestamp - ((x + interval '1 day') AT TIME ZONE 'UTC')
    ] LOOP
        c := (l - o) AT TIME ZONE 'UTC';
        IF c::timestamp = l AND (best IS NULL OR c < best) THEN
            best := c;
        END IF;
    END LOOP;
    PERFORM set_config('TimeZone', old_tz, true);
    RETURN floor(extract(epoch FROM coalesce(best, x)) * 1000)::bigint;
END $$
"""

AUDIT_ID_FLOOR = r"""
CREATE OR REPLACE FUNCTION keybrake_audit_id_floor(p_ts bigint) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    ms bigint := trunc((p_ts::float8 / 1000.0) * 1000.0)::bigint;
    s text := '';
BEGIN
    FOR i IN REVERSE 9..0 LOOP
        s := s || substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ', ((ms >> (5 * i)) & 31)::int + 1, 1);
    END LOOP;
    RETURN 'kbr_' || s || '0000000000000000';
END $$
"""

# Steps after the key is found OK, inside a block whose exception (a refused cap, KB001) rolls
# all of them back, as `_CapRefused` rolls back the Python transaction.
RESERVE = r"""
CREATE OR REPLACE FUNCTION keybrake_reserve(a jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    k record;
    now_ms bigint;
    st text;
    v_key text := a->>'key_id';
    g jsonb := a->'guard';
    r jsonb := a->'retry';
    d jsonb := a->'dedup';
    row_params jsonb := a->'row';
    busy text;
    db_fact jsonb;
    earlier_id text;
    earlier_verdict text;
    found_earlier boolean := false;
    dup record;
    claimed text;
    caps jsonb;
    usd bigint;
    b record;
    bc jsonb;
    work jsonb := '[]';
    v_cap jsonb;
    ws bigint;
    v_scope text;
    got jsonb;
    hit jsonb;
    remaining bigint;
    left_usd bigint;
    resv text;
    detail text;
    v_used bigint;
BEGIN
    PERFORM pg_advisory_xact_lock_shared((a->>'budgets_lock')::bigint);
    SELECT kk.status, kk.expires_at, kk.policy_version, kk.label, kk.vendor, kk.credential, kk.credential_gen,
           c.vendor AS c_vendor, c.secret_enc, c.base_url,
           CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS db_now
      INTO k
      FROM vault_keys kk LEFT JOIN credentials c ON c.name = kk.credential AND c.generation = kk.credential_gen
     WHERE kk.id = v_key;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('state', 'missing');
    END IF;
    now_ms := coalesce((a->>'now')::bigint, k.db_now);
    st := CASE WHEN k.status = 'revoked' THEN 'revoked'
               WHEN k.expires_at <= now_ms THEN 'expired'
               WHEN k.policy_version <> (a->>'policy_version')::int THEN 'changed'
               ELSE 'ok' END;
    IF st <> 'ok' THEN
        RETURN jsonb_build_object('state', st, 'key', (SELECT to_jsonb(v) FROM vault_keys v WHERE v.id = v_key));
    END IF;
    BEGIN
        IF jsonb_typeof(g) = 'object' THEN
            PERFORM pg_advisory_xact_lock(hashtextextended('object:' || k.credential || '|' || (g->>'object_ref'), 0));
            SELECT id INTO busy FROM audit
             WHERE credential = k.credential AND object_ref = g->>'object_ref' AND verdict = 'in_flight' LIMIT 1;
            IF busy IS NOT NULL THEN
                RETURN jsonb_build_object('state', 'ok', 'object_busy', busy || ' is still in flight');
            END IF;
            IF (g->>'priced')::boolean THEN
                SELECT jsonb_build_object(
                           'object_id', l.object_id, 'kind', l.kind, 'customer', l.customer,
                           'account_context', l.account_context, 'currency', l.currency, 'amount', l.amount,
                           'refunded', l.refunded, 'captured', l.captured,
                           'amount_counted', COALESCE((SELECT SUM(lc.amount_minor) FROM ledger_counts lc
                                                       WHERE lc.credential = l.credential
                                                         AND lc.object_id = l.object_id), 0))
                  INTO db_fact
                  FROM ledger l WHERE l.credential = k.credential AND l.object_id = g->>'object_ref';
                IF db_fact IS DISTINCT FROM (CASE WHEN jsonb_typeof(g->'fact') = 'object' THEN g->'fact' END) THEN
                    RETURN jsonb_build_object('state', 'ok',
                                              'object_busy', 'its facts changed since this request was priced');
                END IF;
            END IF;
        END IF;
        IF jsonb_typeof(r) = 'object' THEN
            PERFORM pg_advisory_xact_lock(hashtextextended(v_key || '|' || (r->>'idempotency_key'), 0));
            SELECT au.id, au.verdict INTO earlier_id, earlier_verdict FROM audit au
             WHERE au.key_id = v_key AND au.idempotency_key = r->>'idempotency_key'
               AND au.fingerprint = r->>'fingerprint'
               AND au.id >= keybrake_audit_id_floor(now_ms - (r->>'window_ms')::bigint)
               AND (au.verdict IN ('in_flight', 'outcome_unknown') OR (au.verdict = 'allowed' AND
                    ((au.upstream_status >= 200 AND au.upstream_status < 300)
                     OR au.upstream_status = ANY (ARRAY(SELECT jsonb_array_elements_text(r->'cached'))::int[]))))
             ORDER BY au.id LIMIT 1;
            found_earlier := FOUND;
        END IF;
        IF found_earlier THEN
            IF earlier_verdict = 'in_flight' THEN
                RETURN jsonb_build_object('state', 'ok',
                                          'retry_of', jsonb_build_object('id', earlier_id, 'verdict', earlier_verdict));
            END IF;
            row_params := row_params || '{"reserved_usd": 0, "cost_source": "none", "cost_kind": "none"}';
        ELSIF jsonb_typeof(d) = 'object' THEN
            FOR attempt IN 1..3 LOOP
                INSERT INTO dedup AS dd (key_id, fingerprint, row_id, expires_at, state, answer_enc)
                VALUES (v_key, d->>'fingerprint', row_params->>'id', now_ms + (d->>'window_ms')::bigint,
                        'in_flight', NULL)
                ON CONFLICT (key_id, fingerprint) DO UPDATE SET
                    row_id = excluded.row_id, expires_at = excluded.expires_at, state = 'in_flight', answer_enc = NULL
                WHERE dd.expires_at <= now_ms
                RETURNING dd.row_id INTO claimed;
                EXIT WHEN claimed IS NOT NULL;
                SELECT dd.row_id, dd.state, dd.answer_enc INTO dup FROM dedup dd
                 WHERE dd.key_id = v_key AND dd.fingerprint = d->>'fingerprint'
                   AND dd.expires_at > now_ms;
                IF FOUND THEN
                    RETURN jsonb_build_object('state', 'ok', 'dedup_of', jsonb_build_object(
                        'row_id', dup.row_id, 'state', dup.state, 'answer_hex', encode(dup.answer_enc, 'hex')));
                END IF;
            END LOOP;
            IF claimed IS NULL THEN
                RAISE EXCEPTION 'the dedup entry kept changing under this request' USING ERRCODE = 'KB002';
            END IF;
        END IF;
        -- The caps: the key's (the money and sends of a retry already counted: 0), then every
        -- budget covering the key, read in this statement.
        SELECT coalesce(jsonb_agg(CASE WHEN found_earlier AND (c->>'zero_on_retry')::boolean
                                       THEN jsonb_set(c, '{amount}', '0') ELSE c END ORDER BY n), '[]')
          INTO caps FROM jsonb_array_elements(a->'caps') WITH ORDINALITY AS t(c, n);
        SELECT coalesce((SELECT (c->>'amount')::bigint FROM jsonb_array_elements(caps) WITH ORDINALITY AS t(c, n)
                          WHERE c->>'scope' = 'key' AND c->>'counter' = 'total_usd' ORDER BY n LIMIT 1), 0)
          INTO usd;
        FOR b IN SELECT * FROM budgets ORDER BY id LOOP
            IF b.scope_kind = 'all'
               OR (b.scope_kind = 'label_prefix' AND k.label IS NOT NULL AND b.scope_value IS NOT NULL
                   AND substr(k.label, 1, length(b.scope_value)) = b.scope_value)
               OR (b.scope_kind = 'vendor' AND k.vendor = b.scope_value)
               OR (b.scope_kind NOT IN ('all', 'label_prefix', 'vendor') AND k.credential = b.scope_value) THEN
                FOR bc IN SELECT e FROM jsonb_array_elements(a->'budget_caps') AS t(e) LOOP
                    caps := caps || jsonb_build_array(jsonb_build_object(
                        'scope', 'budget', 'scope_id', b.id, 'name', bc->>'field', 'counter', bc->>'counter',
                        'window', bc->>'window', 'limit', to_jsonb(b)->(bc->>'field'),
                        'amount', CASE WHEN (bc->>'is_usd')::boolean THEN usd ELSE 1 END,
                        'is_usd', bc->'is_usd', 'tz', b.timezone));
                END LOOP;
            END IF;
        END LOOP;
        FOR v_cap IN SELECT e FROM jsonb_array_elements(caps) AS t(e) LOOP
            ws := keybrake_window_start(v_cap->>'window', now_ms, v_cap->>'tz');
            v_scope := (v_cap->>'scope') || ':' || (v_cap->>'scope_id');
            v_cap := v_cap || jsonb_build_object('ws', ws, 'counter_scope', v_scope);
            IF jsonb_typeof(v_cap->'limit') = 'number' AND (v_cap->>'amount')::bigint > (v_cap->>'limit')::bigint THEN
                RAISE EXCEPTION 'cap refused' USING ERRCODE = 'KB001', DETAIL = v_cap::text;
            END IF;
            work := work || jsonb_build_array(v_cap);
        END LOOP;
        -- One guarded UPSERT, rows in lock order (the key's counters, then budgets' by id).
        WITH ins AS (
            INSERT INTO counters AS ct (scope, cap, window_start, used, reserved, cap_limit)
            SELECT w->>'counter_scope', w->>'counter', (w->>'ws')::bigint, 0, (w->>'amount')::bigint,
                   (w->>'limit')::bigint
              FROM jsonb_array_elements(work) AS t(w)
             ORDER BY CASE WHEN (w->>'counter_scope') LIKE 'key:%' THEN 0 ELSE 1 END,
                      (w->>'counter_scope') COLLATE "C", (w->>'counter') COLLATE "C", (w->>'ws')::bigint
            ON CONFLICT (scope, cap, window_start) DO UPDATE
            SET reserved = ct.reserved + excluded.reserved, cap_limit = excluded.cap_limit
            WHERE excluded.cap_limit IS NULL OR ct.used + ct.reserved + excluded.reserved <= excluded.cap_limit
            RETURNING ct.scope, ct.cap, ct.used, ct.reserved
        )
        SELECT coalesce(jsonb_object_agg(ins.scope || '|' || ins.cap, jsonb_build_array(ins.used, ins.reserved)), '{}')
          INTO got FROM ins;
        FOR v_cap IN SELECT e FROM jsonb_array_elements(work) AS t(e) LOOP
            hit := got->((v_cap->>'counter_scope') || '|' || (v_cap->>'counter'));
            IF hit IS NULL THEN
                RAISE EXCEPTION 'cap refused' USING ERRCODE = 'KB001', DETAIL = v_cap::text;
            END IF;
            IF (v_cap->>'is_usd')::boolean AND jsonb_typeof(v_cap->'limit') = 'number' THEN
                left_usd := (v_cap->>'limit')::bigint - (hit->>0)::bigint - (hit->>1)::bigint;
                remaining := least(coalesce(remaining, left_usd), left_usd);
            END IF;
        END LOOP;
        SELECT '[' || coalesce(string_agg(format('[%s, %s, %s, %s, %s]', to_json(w->>'counter_scope'),
                                                 to_json(w->>'counter'), w->>'ws', w->>'amount',
                                                 CASE WHEN (w->>'is_usd')::boolean THEN 'true' ELSE 'false' END),
                                          ', ' ORDER BY n), '') || ']'
          INTO resv FROM jsonb_array_elements(work) WITH ORDINALITY AS t(w, n);
        row_params := row_params || jsonb_build_object('reservation', resv);
        INSERT INTO audit (@AUDIT_COLS@) SELECT @AUDIT_COLS@ FROM jsonb_populate_record(NULL::audit, row_params);
        RETURN jsonb_build_object(
            'state', 'ok',
            'items', (SELECT coalesce(jsonb_agg(jsonb_build_array(w->'counter_scope', w->'counter', w->'ws',
                                                                  w->'amount', w->'is_usd') ORDER BY n), '[]')
                        FROM jsonb_array_elements(work) WITH ORDINALITY AS t(w, n)),
            'remaining', remaining,
            'credential', CASE WHEN k.c_vendor IS NOT NULL THEN jsonb_build_object(
                'name', k.credential, 'vendor', k.c_vendor, 'secret_hex', encode(k.secret_enc, 'hex'),
                'base_url', k.base_url, 'generation', k.credential_gen) END,
            'retry_of', CASE WHEN found_earlier
                             THEN jsonb_build_object('id', earlier_id, 'verdict', earlier_verdict) END);
    EXCEPTION WHEN SQLSTATE 'KB001' THEN
        GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
        v_cap := detail::jsonb;
        SELECT ct.used + ct.reserved INTO v_used FROM counters ct
         WHERE ct.scope = v_cap->>'counter_scope' AND ct.cap = v_cap->>'counter'
           AND ct.window_start = (v_cap->>'ws')::bigint;
        RETURN jsonb_build_object('state', 'ok', 'zeroed', found_earlier,
                                  'cap_hit', v_cap || jsonb_build_object('used', coalesce(v_used, 0)));
    END;
END $$
""".replace("@AUDIT_COLS@", AUDIT_COLS)

HUMAN_USD = r"""
CREATE OR REPLACE FUNCTION keybrake_human_usd(p_micro bigint) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_micro % 1000000 % 10000 = 0
        THEN '$' || regexp_replace((p_micro / 1000000)::text, '(\d)(?=(\d{3})+$)', '\1,', 'g') || '.'
             || lpad(((p_micro % 1000000) / 10000)::text, 2, '0')
        ELSE '$' || (p_micro / 1000000)::text || '.' || rtrim(lpad((p_micro % 1000000)::text, 6, '0'), '0') END
$$
"""

# `store.sql_ledger.count_object` (for a settled row's own count, µUSD `p_held` in the USD
# counters `p_items`, a JSON text [[scope, counter, window_start], …]).
COUNT_OBJECT = r"""
CREATE OR REPLACE FUNCTION keybrake_count_object(p_cred text, p_obj text, p_row text, p_amount bigint,
                                                 p_committed bigint, p_held bigint, p_items text)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    r record;
    counted jsonb := '[]';
    c jsonb;
    excess bigint;
    take bigint;
    old_minor bigint;
    old_cost bigint;
    new_minor bigint;
    new_cost bigint;
    released bigint;
    released_total bigint := 0;
    it jsonb;
BEGIN
    IF p_amount > 0 THEN
        INSERT INTO ledger_counts AS lc (credential, object_id, row_id, amount_minor, cost_usd, items)
        VALUES (p_cred, p_obj, p_row, p_amount, p_held, p_items)
        ON CONFLICT (credential, object_id, row_id) DO UPDATE SET
            amount_minor = excluded.amount_minor, cost_usd = excluded.cost_usd, items = excluded.items;
    ELSE
        DELETE FROM ledger_counts WHERE credential = p_cred AND object_id = p_obj AND row_id = p_row;
    END IF;
    IF p_committed IS NULL THEN
        RETURN;
    END IF;
    FOR r IN SELECT lc.row_id, lc.amount_minor, lc.cost_usd, lc.items FROM ledger_counts lc
              WHERE lc.credential = p_cred AND lc.object_id = p_obj
              ORDER BY CASE WHEN lc.row_id = 'legacy' THEN 2 WHEN lc.row_id = p_row THEN 1 ELSE 0 END, lc.row_id DESC
                FOR UPDATE LOOP
        counted := counted || jsonb_build_array(to_jsonb(r));
    END LOOP;
    SELECT coalesce(sum((x->>'amount_minor')::bigint), 0) - p_committed INTO excess
      FROM jsonb_array_elements(counted) AS t(x);
    FOR c IN SELECT x FROM jsonb_array_elements(counted) WITH ORDINALITY AS t(x, n) ORDER BY n LOOP
        EXIT WHEN excess <= 0;
        old_minor := (c->>'amount_minor')::bigint;
        IF old_minor <= 0 OR (c->>'row_id' <> p_row AND c->>'row_id' <> 'legacy' AND NOT EXISTS (
                SELECT 1 FROM audit au WHERE au.id = c->>'row_id' AND au.reservation IS NULL)) THEN
            CONTINUE;
        END IF;
        take := least(excess, old_minor);
        excess := excess - take;
        old_cost := (c->>'cost_usd')::bigint;
        new_minor := old_minor - take;
        new_cost := floor((old_cost::numeric * new_minor * 2 + old_minor) / (2 * old_minor::numeric));
        released := old_cost - new_cost;
        UPDATE ledger_counts SET amount_minor = new_minor, cost_usd = new_cost
         WHERE credential = p_cred AND object_id = p_obj AND row_id = c->>'row_id';
        IF released > 0 THEN
            FOR it IN SELECT x FROM jsonb_array_elements((c->>'items')::jsonb) AS t(x) LOOP
                UPDATE counters SET used = CASE WHEN used > released THEN used - released ELSE 0 END
                 WHERE scope = it->>0 AND cap = it->>1 AND window_start = (it->>2)::bigint;
            END LOOP;
            UPDATE audit SET cost_usd = CASE WHEN cost_usd > released THEN cost_usd - released ELSE 0 END,
                             reason = keybrake_human_usd(released) || ' released by ' || p_row || ': ' || p_obj
                                      || ' will move less than was counted'
             WHERE id = c->>'row_id';
            released_total := released_total + released;
        END IF;
    END LOOP;
    IF released_total <> 0 THEN
        UPDATE audit SET reason = 'released ' || keybrake_human_usd(released_total) || ' counted earlier for '
                                  || p_obj || ', which will not move'
         WHERE id = p_row;
    END IF;
END $$
"""

# `store.sql_settle._settle_earlier`: a retry's answer settles the earlier `outcome_unknown`
# request it repeats (its kept reservation moves to the real cost). True if this call settled
# it, false if it was no longer outcome_unknown.
SETTLE_KEPT = r"""
CREATE OR REPLACE FUNCTION keybrake_settle_kept(e jsonb, p_by text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    r record;
    it jsonb;
    cost bigint := (e->>'cost_usd')::bigint;
    usd_items text;
BEGIN
    SELECT au.reservation, au.credential INTO r FROM audit au
     WHERE au.id = e->>'id' AND au.verdict IN ('outcome_unknown') AND au.reservation IS NOT NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    FOR it IN SELECT x FROM jsonb_array_elements(r.reservation::jsonb) WITH ORDINALITY AS t(x, n)
               ORDER BY CASE WHEN (x->>0) LIKE 'key:%' THEN 0 ELSE 1 END, (x->>0) COLLATE "C",
                        (x->>1) COLLATE "C", (x->>2)::bigint, n LOOP
        UPDATE counters SET reserved = reserved - (it->>3)::bigint,
                            used = used + CASE WHEN (it->>4)::boolean THEN cost ELSE (it->>3)::bigint END
         WHERE scope = it->>0 AND cap = it->>1 AND window_start = (it->>2)::bigint;
    END LOOP;
    UPDATE audit SET verdict = 'allowed', cost_usd = cost, cost_source = e->>'cost_source', cost_kind = e->>'cost_kind',
                     settled_by = p_by, reservation = NULL,
                     reason = COALESCE('outcome settled by the retry ' || p_by, reason)
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

# The columns `store.sql_settle._SETTLE_AUDIT` sets, frozen here as of this revision.
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
    op.execute(WINDOW_START)
    op.execute(AUDIT_ID_FLOOR)
    op.execute(RESERVE)
    op.execute(HUMAN_USD)
    op.execute(COUNT_OBJECT)
    # It returned void before it told whether it settled anything (a return type is not replaced).
    op.execute("DROP FUNCTION IF EXISTS keybrake_settle_kept(jsonb, text)")
    op.execute(SETTLE_KEPT)
    op.execute(SETTLE)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS keybrake_settle(jsonb)")
    op.execute("DROP FUNCTION IF EXISTS keybrake_settle_kept(jsonb, text)")
    op.execute("DROP FUNCTION IF EXISTS keybrake_count_object(text, text, text, bigint, bigint, bigint, text)")
    op.execute("DROP FUNCTION IF EXISTS keybrake_human_usd(bigint)")
    op.execute("DROP FUNCTION IF EXISTS keybrake_reserve(jsonb)")
    op.execute("DROP FUNCTION IF EXISTS keybrake_audit_id_floor(bigint)")
    op.execute("DROP FUNCTION IF EXISTS keybrake_window_start(text, bigint, text)")
