-- 0006_rate_limits.sql — provider rate limits enforced in the claim itself.
--
-- DESIGN
--
-- 1. Policies and buckets.  A rate-limit policy (sluice.rate_policy) belongs to
--    a provider, optionally narrowed to one org, one connector or one endpoint,
--    and has one or more windows (sluice.rate_window: at most N calls per S
--    seconds; a policy may have per-second, per-minute, per-hour and per-day
--    windows at once).  `per` says how the policy's quota is shared: one
--    bucket for the whole provider, one per org (an org's own OAuth app and
--    quota), or one per connector (an account's quota).  A job's bucket is
--    the bucket of the most specific policy that matches it (rate_bucket_for):
--    a connector's own policy beats an org's, which beats the provider's; an
--    endpoint's beats the provider-wide one.
--
-- 2. Never claim-then-reject.  A job that makes a rate-limited call names its
--    bucket and cost (job.rate_bucket, job.rate_cost; enqueue_limited()).
--    Such a gated job is never in a lane: a row trigger keeps its run_at at
--    sluice.held_run_at() and puts the time it may run in gate_after, so the
--    ordinary claim never sees it however many wait.  claim_jobs() first looks
--    at buckets due for a look (next_check_at <= now, an index range), locks
--    the bucket row, and takes the next gated job of that bucket only if
--    every window has room, taking the tokens in the same transaction.  A
--    full bucket gets next_check_at = when its oldest counted use leaves the
--    window, and no claim looks at it until then; workers sleep until the
--    earliest next_check_at (next_wakeup) or a NOTIFY.  10,000 jobs behind an
--    exhausted bucket cost nothing until it reopens.
--
-- 3. Exact windows.  Uses are counted in slots of window/60, at least
--    100 ms (1 s for a per-minute window, 1 min for a per-hour one), aligned
--    to the epoch, and a window counts every slot it overlaps, including the
--    one it only partly covers: the check is conservative by at most one
--    slot (1/60 of the window).  A gated job is claimed at most one per claim
--    and runs first in its batch, so its call leaves within milliseconds of
--    taking its token, inside the slot: in whatever fixed windows aligned to
--    a slot boundary the provider counts, it never sees more than the limit.
--
-- 4. Shared 429s.  A provider's 429 (or its own rate-limit headers) blocks the
--    whole bucket until the time it gave, for every worker (rate_limit_hit()):
--    blocked_until and next_check_at move, the job goes back to the gate
--    without spending an attempt, and a rate_limit_hit event is emitted.

-- ---- policies --------------------------------------------------------------

CREATE TABLE sluice.rate_policy (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider      text NOT NULL REFERENCES sluice.provider,
    org_id        bigint REFERENCES sluice.org ON DELETE CASCADE,
    connector_id  uuid REFERENCES sluice.connector ON DELETE CASCADE,
    endpoint      text CHECK (endpoint ~ '^[a-z][a-z0-9_.-]{0,63}$'),
    per           text NOT NULL CHECK (per IN ('provider', 'org', 'connector')),
    note          text,
    UNIQUE NULLS NOT DISTINCT (provider, org_id, connector_id, endpoint)
);

CREATE TABLE sluice.rate_window (
    policy_id     integer NOT NULL REFERENCES sluice.rate_policy ON DELETE CASCADE,
    seconds       integer NOT NULL CHECK (seconds BETWEEN 1 AND 86400 * 31),
    max_calls     integer NOT NULL CHECK (max_calls > 0),
    PRIMARY KEY (policy_id, seconds)
);

-- Seed 001's limits, and documented defaults for the others (operators change
-- them in SQL: UPDATE sluice.rate_window, or a more specific policy).
WITH p (provider, per, note, windows) AS (VALUES
  ('dv360', 'org', 'seed 001: 50/min and 10,000/day', '{{60,50},{86400,10000}}'::int[]),
  ('ttd', 'connector', 'seed 001: 100/min', '{{60,100}}'),
  ('meta', 'org', 'seed 001: 200/hour', '{{3600,200}}'),
  ('google_ads', 'org', 'seed 001: 15,000/day', '{{86400,15000}}'),
  ('sheets', 'org', 'seed 001: 100/min', '{{60,100}}'),
  ('woocommerce', 'connector', 'default: a shared WordPress host serves about 2 calls/s', '{{60,120}}'),
  ('paypal', 'connector', 'default: PayPal publishes no figure; 10/s stays clear of its 429s', '{{1,10},{60,300}}'),
  ('salesforce', 'connector', 'default: an org''s daily API allowance (Enterprise: 100,000/day)', '{{86400,100000}}'),
  ('sfmc', 'connector', 'default: 2,500 calls/min per tenant', '{{60,2500}}'),
  ('jira', 'connector', 'default: Atlassian Cloud''s cost-based limits, about 100/min per app and user', '{{60,100}}'),
  ('servicenow', 'connector', 'default: an instance''s usual REST rate-limit rule, 3,000/hour per user', '{{3600,3000}}')
),
ins AS (
  INSERT INTO sluice.rate_policy (provider, per, note)
  SELECT provider, per, note FROM p
  RETURNING id, provider)
INSERT INTO sluice.rate_window (policy_id, seconds, max_calls)
SELECT ins.id, p.windows[i][1], p.windows[i][2]
  FROM ins JOIN p USING (provider)
 CROSS JOIN LATERAL generate_subscripts(p.windows, 1) AS i;

-- ---- buckets and their use --------------------------------------------------

CREATE TABLE sluice.rate_bucket (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    policy_id      integer NOT NULL REFERENCES sluice.rate_policy ON DELETE CASCADE,
    org_id         bigint,          -- with per = 'org'
    connector_id   uuid,            -- with per = 'connector'
    -- When a claim should next look at this bucket: now-ish while jobs wait
    -- and it has room; when it reopens while full or blocked; infinity while
    -- no job waits.  The claim's index (DESIGN 2).
    next_check_at  timestamptz NOT NULL DEFAULT 'infinity',
    blocked_until  timestamptz,
    block_reason   text,
    UNIQUE NULLS NOT DISTINCT (policy_id, org_id, connector_id)
);
CREATE INDEX rate_bucket_due_idx ON sluice.rate_bucket (next_check_at);

-- Calls counted per bucket, window and slot (DESIGN 3).
CREATE TABLE sluice.rate_slot (
    bucket_id   bigint NOT NULL REFERENCES sluice.rate_bucket ON DELETE CASCADE,
    seconds     integer NOT NULL,
    slot_start  timestamptz NOT NULL,
    used        integer NOT NULL,
    PRIMARY KEY (bucket_id, seconds, slot_start)
);

ALTER TABLE sluice.job ADD COLUMN rate_bucket bigint,
                       ADD COLUMN rate_cost integer CHECK (rate_cost BETWEEN 1 AND 1000000),
                       ADD COLUMN gate_after timestamptz;
-- archive_jobs() of 0002 names the columns of the sluice.job rows it is
-- given; with three more, its list must say so (the archive keeps none of
-- them: an ended job waits for no bucket).
CREATE OR REPLACE FUNCTION sluice.archive_jobs(p_rows sluice.job[], p_state text,
                                               p_results jsonb[] DEFAULT NULL,
                                               p_errors text[] DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO sluice.job_archive (id, org_id, connector_id, kind, payload,
        priority, state, run_at, attempts, max_attempts, dedupe_key,
        worker_id, created_at, started_at, finished_at, result, last_error,
        errors)
    SELECT r.id, r.org_id, r.connector_id, r.kind, r.payload, r.priority,
           p_state, CASE WHEN r.rate_bucket IS NULL THEN r.run_at
                         ELSE coalesce(nullif(r.gate_after, sluice.held_run_at()), r.run_at) END,
           r.attempts, r.max_attempts, r.dedupe_key,
           r.worker_id, r.created_at, r.started_at, clock_timestamp(),
           p_results[r.ord],
           coalesce(left(p_errors[r.ord], 2000), r.last_error),
           CASE WHEN p_errors[r.ord] IS NULL THEN r.errors
                ELSE r.errors || sluice.attempt_error(r.attempts, r.worker_id,
                                                      p_errors[r.ord]) END
      FROM unnest(p_rows) WITH ORDINALITY AS r(id, org_id, connector_id, kind,
               payload, priority, state, run_at, attempts, max_attempts,
               dedupe_key, claim_token, worker_id, locked_until, started_at,
               created_at, hold_reason, last_error, errors,
               rate_bucket, rate_cost, gate_after, ord);
$$;

-- Gated jobs in the order a bucket hands them out.
CREATE INDEX job_gate_idx ON sluice.job (rate_bucket, priority, gate_after, id)
    WHERE rate_bucket IS NOT NULL AND state <> 'running';

-- A window's slot length in milliseconds: 1/60 of it, at least 100 ms.
CREATE FUNCTION sluice.rate_slot_ms(p_window integer)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$ SELECT greatest(p_window::bigint * 1000 / 60, 100) $$;

-- The start of the slot holding p_at (slots are aligned to the epoch).
CREATE FUNCTION sluice.rate_slot_start(p_window integer, p_at timestamptz)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT to_timestamp(floor(extract(epoch FROM p_at) * 1000 / sluice.rate_slot_ms(p_window))
                        * sluice.rate_slot_ms(p_window) / 1000.0);
$$;

-- Each window of a bucket at p_at: calls counted, room left, and when the
-- oldest counted slot leaves the window (reset_at).
CREATE FUNCTION sluice.rate_bucket_windows(p_bucket bigint, p_at timestamptz DEFAULT clock_timestamp())
RETURNS TABLE (seconds integer, max_calls integer, used bigint, remaining bigint,
               reset_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT w.seconds, w.max_calls, coalesce(u.used, 0),
           greatest(w.max_calls - coalesce(u.used, 0), 0),
           coalesce(u.oldest + make_interval(secs => w.seconds
                                                       + sluice.rate_slot_ms(w.seconds) / 1000.0),
                    p_at)
      FROM sluice.rate_bucket b
      JOIN sluice.rate_window w ON w.policy_id = b.policy_id
      LEFT JOIN LATERAL (
          SELECT sum(s.used) AS used, min(s.slot_start) AS oldest
            FROM sluice.rate_slot s
           WHERE s.bucket_id = b.id AND s.seconds = w.seconds
             AND s.slot_start >= sluice.rate_slot_start(w.seconds,
                                     p_at - make_interval(secs => w.seconds))) u ON true
     WHERE b.id = p_bucket;
$$;

-- The most specific policy for a call (DESIGN 1), or NULL.
CREATE FUNCTION sluice.rate_policy_for(p_org bigint, p_connector uuid, p_provider text,
                                       p_endpoint text DEFAULT NULL)
RETURNS sluice.rate_policy LANGUAGE sql STABLE AS $$
    SELECT r.* FROM sluice.rate_policy r
     WHERE r.provider = lower(p_provider)
       AND (r.org_id IS NULL OR r.org_id = p_org)
       AND (r.connector_id IS NULL OR r.connector_id = p_connector)
       AND (r.endpoint IS NULL OR r.endpoint = p_endpoint)
     ORDER BY r.connector_id IS NOT NULL DESC, r.org_id IS NOT NULL DESC,
              r.endpoint IS NOT NULL DESC
     LIMIT 1;
$$;

-- The bucket of the most specific policy for a call, made on first use.
-- NULL when no policy covers the provider.
CREATE FUNCTION sluice.rate_bucket_for(p_org bigint, p_connector uuid, p_provider text,
                                       p_endpoint text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    p  sluice.rate_policy := sluice.rate_policy_for(p_org, p_connector, p_provider, p_endpoint);
    v_org  bigint := CASE WHEN p.per = 'org' THEN p_org END;
    v_conn uuid := CASE WHEN p.per = 'connector' THEN p_connector END;
    v_id   bigint;
BEGIN
    IF p.id IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO sluice.rate_bucket (policy_id, org_id, connector_id)
    VALUES (p.id, v_org, v_conn)
    ON CONFLICT (policy_id, org_id, connector_id) DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        SELECT id INTO v_id FROM sluice.rate_bucket
         WHERE policy_id = p.id AND org_id IS NOT DISTINCT FROM v_org
           AND connector_id IS NOT DISTINCT FROM v_conn;
    END IF;
    RETURN v_id;
END $$;

-- ---- gated jobs --------------------------------------------------------------

-- Tells the bucket a job waits from p_at: it is looked at then at the latest.
CREATE FUNCTION sluice.rate_bucket_wants(p_bucket bigint, p_at timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- Written only when it moves earlier: producers do not queue on the row.
    UPDATE sluice.rate_bucket
       SET next_check_at = greatest(p_at, coalesce(blocked_until, p_at))
     WHERE id = p_bucket AND next_check_at > greatest(p_at, coalesce(blocked_until, p_at));
    IF FOUND THEN
        PERFORM sluice.wake_workers(p_at);
    END IF;
END $$;

-- Keeps a gated job out of the lanes whenever it waits (DESIGN 2): whatever
-- time an enqueue, a retry, a backoff, a release or the reaper gives it
-- becomes gate_after, and its bucket is told.  (A claimed gated job runs with
-- its real run_at, so that its history shows it; every way back from running
-- sets run_at again, and so comes through here.)
CREATE FUNCTION sluice.gate_job()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.gate_after := NEW.run_at;
    NEW.run_at := sluice.held_run_at();
    PERFORM sluice.rate_bucket_wants(NEW.rate_bucket, NEW.gate_after);
    RETURN NEW;
END $$;

CREATE TRIGGER job_gate_insert BEFORE INSERT ON sluice.job
    FOR EACH ROW WHEN (NEW.rate_bucket IS NOT NULL AND NEW.run_at <> '9999-01-01 00:00:00+00')
    EXECUTE FUNCTION sluice.gate_job();
CREATE TRIGGER job_gate_update BEFORE UPDATE OF run_at, rate_bucket ON sluice.job
    FOR EACH ROW WHEN (NEW.rate_bucket IS NOT NULL AND NEW.state <> 'running'
                       AND NEW.run_at <> '9999-01-01 00:00:00+00')
    EXECUTE FUNCTION sluice.gate_job();


-- Enqueues a job that makes a call under the provider's rate limit: its
-- bucket is the most specific policy's (rate_bucket_for), its cost the
-- calls it makes.  Without a policy the job is an ordinary one.
CREATE FUNCTION sluice.enqueue_limited(p_org bigint, p_kind text, p_payload jsonb,
                                       p_priority integer, p_connector uuid,
                                       p_provider text, p_endpoint text DEFAULT NULL,
                                       p_cost integer DEFAULT 1,
                                       p_run_at timestamptz DEFAULT NULL,
                                       p_dedupe_key text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_bucket bigint := sluice.rate_bucket_for(p_org, p_connector, p_provider, p_endpoint);
    v_id     bigint;
    v_dedup  boolean;
BEGIN
    SELECT e.job_id, e.deduplicated INTO v_id, v_dedup
      FROM sluice.enqueue(p_org, p_kind, p_payload, p_priority, p_run_at, NULL,
                          p_dedupe_key, p_connector) e;
    IF v_bucket IS NOT NULL AND NOT v_dedup THEN
        UPDATE sluice.job SET rate_bucket = v_bucket, rate_cost = coalesce(p_cost, 1),
                              run_at = run_at   -- the trigger moves it to the gate
         WHERE id = v_id;
    END IF;
    RETURN v_id;
END $$;

-- Counts p_cost calls now in every window of the bucket.
CREATE FUNCTION sluice.rate_take(p_bucket bigint, p_cost integer, p_at timestamptz)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO sluice.rate_slot AS s (bucket_id, seconds, slot_start, used)
    SELECT b.id, w.seconds, sluice.rate_slot_start(w.seconds, p_at), p_cost
      FROM sluice.rate_bucket b JOIN sluice.rate_window w ON w.policy_id = b.policy_id
     WHERE b.id = p_bucket
    ON CONFLICT (bucket_id, seconds, slot_start) DO UPDATE SET used = s.used + excluded.used;
$$;

-- Claims at most one gated job whose bucket has room, taking its tokens
-- (DESIGN 2).  Buckets due for a look are taken in order, each locked
-- (SKIP LOCKED: another claim is deciding it), and each left with the
-- right next_check_at.  Returns the job's id, or NULL.
CREATE FUNCTION sluice.claim_gated(p_paused_kinds text[])
RETURNS bigint
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_now     timestamptz := clock_timestamp();
    b         sluice.rate_bucket;
    v_job     bigint;
    v_cost    integer;
    v_full    timestamptz;
    v_next    timestamptz;
BEGIN
    FOR b IN SELECT * FROM sluice.rate_bucket
              WHERE next_check_at <= v_now
              ORDER BY next_check_at
              LIMIT 20
                FOR UPDATE SKIP LOCKED
    LOOP
        IF b.blocked_until > v_now THEN
            UPDATE sluice.rate_bucket SET next_check_at = b.blocked_until WHERE id = b.id;
            CONTINUE;
        END IF;
        SELECT j.id, j.rate_cost INTO v_job, v_cost
          FROM sluice.job j
         WHERE j.rate_bucket = b.id AND j.state <> 'running' AND j.gate_after <= v_now
           AND j.kind <> ALL (p_paused_kinds)
           AND NOT EXISTS (SELECT 1 FROM sluice.pause p
                            WHERE p.scope = 'org' AND p.name = j.org_id::text)
         ORDER BY j.priority, j.gate_after, j.id
         LIMIT 1
           FOR UPDATE SKIP LOCKED;
        IF v_job IS NULL THEN
            -- Nothing to hand out: look again when the next job is due.  Jobs
            -- due but paused or locked by another claim: in a second.
            SELECT min(j.gate_after) INTO v_next FROM sluice.job j
             WHERE j.rate_bucket = b.id AND j.state <> 'running';
            UPDATE sluice.rate_bucket
               SET next_check_at = CASE WHEN v_next IS NULL THEN 'infinity'
                                        WHEN v_next <= v_now THEN v_now + interval '1 second'
                                        ELSE v_next END
             WHERE id = b.id;
            CONTINUE;
        END IF;
        -- Room in every window?  If not, look again when the tightest reopens.
        SELECT max(w.reset_at) INTO v_full
          FROM sluice.rate_bucket_windows(b.id, v_now) w
         WHERE w.remaining < v_cost;
        IF v_full IS NOT NULL THEN
            UPDATE sluice.rate_bucket SET next_check_at = greatest(v_full, v_now + interval '10 ms')
             WHERE id = b.id;
            v_job := NULL;
            CONTINUE;
        END IF;
        PERFORM sluice.rate_take(b.id, v_cost, v_now);
        RETURN v_job;   -- next_check_at stays due: the next claim looks again
    END LOOP;
    RETURN NULL;
END $$;

-- Lets held work that has come due go, before a claim looks: nothing here
-- (a rate bucket is looked at by claim_gated itself); 0007 adds circuits
-- turning half-open.  One place, like next_held_check().
CREATE FUNCTION sluice.promote_held_work()
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
END $$;

-- The claim (DESIGN 2 of 0002 and of this file): held work come due first,
-- then at most one gated job whose bucket has room, then lane jobs for the
-- rest.  The gated job comes first in the answer, so its worker runs it
-- first.
ALTER FUNCTION sluice.claim_jobs(text, integer) RENAME TO claim_lane_jobs;

CREATE FUNCTION sluice.claim_jobs(p_worker text, p_max integer DEFAULT 1)
RETURNS SETOF sluice.claimed_job
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_gated  bigint;
    v_paused text[];
    v_now    timestamptz;
BEGIN
    IF coalesce(p_max, 1) < 1 THEN
        RETURN;
    END IF;
    PERFORM sluice.promote_held_work();
    v_now := clock_timestamp();   -- after it: what it let go is due now
    IF EXISTS (SELECT 1 FROM sluice.rate_bucket WHERE next_check_at <= v_now) THEN
        SELECT coalesce(array_agg(name), '{}') INTO v_paused FROM sluice.pause WHERE scope = 'kind';
        v_gated := sluice.claim_gated(v_paused);
    END IF;
    IF v_gated IS NOT NULL THEN
        RETURN QUERY
        WITH claimed AS (
            UPDATE sluice.job j
               SET state = 'running', attempts = j.attempts + 1, run_at = j.gate_after,
                   claim_token = gen_random_uuid(), worker_id = p_worker,
                   locked_until = v_now + sluice.setting_interval('lease'),
                   started_at = v_now, hold_reason = NULL
             WHERE j.id = v_gated
            RETURNING j.*)
        SELECT c.id, c.org_id, c.connector_id, c.kind, c.payload, c.priority, c.attempts,
               c.max_attempts, c.claim_token, c.locked_until,
               (extract(epoch FROM coalesce(kp.timeout, sluice.setting_interval('default_timeout')))
                * 1000)::bigint,
               c.created_at, c.run_at
          FROM claimed c LEFT JOIN sluice.kind_policy kp ON kp.kind = c.kind;
        p_max := p_max - 1;
    END IF;
    IF p_max > 0 THEN
        RETURN QUERY SELECT * FROM sluice.claim_lane_jobs(p_worker, p_max);
    END IF;
END $$;

-- When the earliest piece of held work is due for a look: here, the
-- earliest bucket that will have room (0007 adds circuits).
CREATE FUNCTION sluice.next_held_check()
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT min(b.next_check_at) FROM sluice.rate_bucket b;
$$;

-- A worker sleeps no later than the next held check (0002's next_wakeup()
-- with one more term).
CREATE OR REPLACE FUNCTION sluice.next_wakeup()
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT least(
        (SELECT min(f.run_at)
           FROM sluice.job_lane l
           CROSS JOIN LATERAL (
               SELECT j.run_at FROM sluice.job j
                WHERE j.state <> 'running' AND j.org_id = l.org_id
                  AND j.priority = l.priority AND j.run_at > clock_timestamp()
                ORDER BY j.run_at, j.id LIMIT 1) f),
        (SELECT min(j.locked_until) FROM sluice.job j
          WHERE j.state = 'running'
            AND j.locked_until >= coalesce(nullif(current_setting('sluice.reap_from', true), ''),
                                           '-infinity')::timestamptz),
        sluice.next_held_check());
$$;

-- ---- connectors that need a person ------------------------------------------

-- Holds a connector's waiting jobs until it is connected again (DESIGN 2 of
-- 0004_connectors.sql): run_at (and for a gated job gate_after) moves to
-- held_run_at(), hold_reason says why.
CREATE FUNCTION sluice.hold_connector_jobs(p_connector uuid, p_reason text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    UPDATE sluice.job SET run_at = sluice.held_run_at(), hold_reason = left(p_reason, 500),
                          gate_after = CASE WHEN rate_bucket IS NOT NULL
                                            THEN sluice.held_run_at() END
     WHERE connector_id = p_connector AND state <> 'running';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Makes a connector's held jobs runnable now and wakes sleeping workers:
-- those hold_connector_jobs() held, and those a worker postponed because it
-- found the connector waiting (their hold_reason says so, in the same
-- words).  A gated job goes back to its bucket (the trigger turns its new
-- run_at into gate_after and tells the bucket).
CREATE FUNCTION sluice.release_connector_jobs(p_connector uuid)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(sluice.wake_lock_key());
    WITH u AS (
        UPDATE sluice.job SET run_at = clock_timestamp(), hold_reason = NULL
         WHERE connector_id = p_connector AND state <> 'running'
           AND (CASE WHEN rate_bucket IS NULL THEN run_at ELSE gate_after END
                    = sluice.held_run_at()
                OR hold_reason LIKE format('connector %s is %%', p_connector))
        RETURNING org_id, priority),
    lanes AS (INSERT INTO sluice.job_lane (org_id, priority)
              SELECT DISTINCT org_id, priority FROM u ON CONFLICT DO NOTHING)
    SELECT count(*) INTO n FROM u;
    IF n > 0 THEN
        PERFORM sluice.wake_workers(clock_timestamp());
    END IF;
    RETURN n;
END $$;

-- ---- 429s --------------------------------------------------------------------

-- A provider said "slow down" to a gated job (DESIGN 4): blocks its bucket
-- for every worker until p_until and emits rate_limit_hit.  Returns whether
-- the job had a bucket.
CREATE FUNCTION sluice.rate_limit_hit(p_job bigint, p_until timestamptz, p_reason text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    j sluice.job;
BEGIN
    SELECT * INTO j FROM sluice.job WHERE id = p_job;
    IF j.rate_bucket IS NULL THEN
        RETURN false;
    END IF;
    UPDATE sluice.rate_bucket
       SET blocked_until = greatest(coalesce(blocked_until, p_until), p_until),
           block_reason = left(p_reason, 500),
           next_check_at = greatest(coalesce(blocked_until, p_until), p_until)
     WHERE id = j.rate_bucket;
    PERFORM sluice.emit_event(j.org_id, 'rate_limit_hit', j.connector_id,
        jsonb_build_object('job_id', j.id, 'bucket_id', j.rate_bucket,
                           'blocked_until', p_until, 'reason', p_reason));
    RETURN true;
END $$;

-- Old slots count for nothing: housekeeping deletes them.
CREATE FUNCTION sluice.prune_rate_slots()
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM sluice.rate_slot
     WHERE slot_start < now() - make_interval(secs => seconds + sluice.rate_slot_ms(seconds) / 1000.0);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- ---- views -----------------------------------------------------------------

-- Every bucket's windows: limit, used, remaining, reset_at, blocked_until.
CREATE VIEW sluice.rate_limits AS
SELECT b.id AS bucket_id, p.provider, p.per, b.org_id, b.connector_id, p.endpoint,
       w.seconds AS window_seconds, w.max_calls AS "limit", w.used, w.remaining,
       w.reset_at, b.blocked_until, b.block_reason,
       (SELECT count(*) FROM sluice.job j
         WHERE j.rate_bucket = b.id AND j.state <> 'running') AS waiting,
       b.next_check_at
  FROM sluice.rate_bucket b
  JOIN sluice.rate_policy p ON p.id = b.policy_id
 CROSS JOIN LATERAL sluice.rate_bucket_windows(b.id) w;

-- A connector's rate-limit state in seed 001's shape, {limit, remaining,
-- reset_at}: the window of its bucket with the least room left (the one that
-- will stop it first).  A bucket not made yet has used nothing.  NULL when no
-- policy covers its provider.
CREATE FUNCTION sluice.connector_rate_limit(p_connector uuid)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('limit', w.max_calls, 'remaining', w.remaining,
                              'reset_at', to_char(w.reset_at AT TIME ZONE 'UTC',
                                                  'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
      FROM sluice.connector c
     CROSS JOIN LATERAL sluice.rate_policy_for(c.org_id, c.id, c.type) p
     CROSS JOIN LATERAL (
         SELECT ww.max_calls, coalesce(u.remaining, ww.max_calls) AS remaining,
                coalesce(u.reset_at, now()) AS reset_at
           FROM sluice.rate_window ww
           LEFT JOIN sluice.rate_bucket b
                  ON b.policy_id = p.id
                 AND b.org_id IS NOT DISTINCT FROM CASE WHEN p.per = 'org' THEN c.org_id END
                 AND b.connector_id IS NOT DISTINCT FROM CASE WHEN p.per = 'connector' THEN c.id END
           LEFT JOIN LATERAL sluice.rate_bucket_windows(b.id) u ON u.seconds = ww.seconds
          WHERE ww.policy_id = p.id
          ORDER BY coalesce(u.remaining, ww.max_calls)::numeric / ww.max_calls, ww.seconds DESC
          LIMIT 1) w
     WHERE c.id = p_connector AND p.id IS NOT NULL;
$$;

-- Seed 001's "rate_limits" of GET /api/v1/connectors/queue and /api/v1/queue:
-- one entry per provider of the org's connectors, keyed by the provider's
-- name ("DV360"), with the least room any of its connectors has.
CREATE FUNCTION sluice.org_rate_limits(p_org bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_object_agg(name, rl), '{}')
      FROM (SELECT DISTINCT ON (pr.name) pr.name, rl
              FROM sluice.connector c
              JOIN sluice.provider pr ON pr.type = c.type
             CROSS JOIN LATERAL sluice.connector_rate_limit(c.id) rl
             WHERE c.org_id = p_org AND c.deleted_at IS NULL AND rl IS NOT NULL
             ORDER BY pr.name, (rl ->> 'remaining')::numeric / (rl ->> 'limit')::numeric) x;
$$;
