-- 0007_circuits.sql — circuit breakers per connector, shared by every worker.
--
-- DESIGN
--
-- 1. One circuit per connector (and so per provider and account), a row in
--    sluice.circuit made on the first failure it hears of.  Closed: jobs
--    run; failures counts consecutive transient failures of the outside
--    system (5xx, timeouts, connection errors: the worker's call to
--    circuit_record() after each connector job), and a success resets it.
--    At failure_threshold it opens.  Open: nothing of the connector runs
--    until half_open_at = opened_at + recovery_timeout.  Half-open: one
--    trial job at a time; success_threshold successful trials close it, a
--    failed trial opens it again.  Thresholds are per provider in
--    sluice.circuit_policy (seeded 5 / 30 s / 2 for every provider, seed
--    001; operators change rows; a provider without a row gets those).
--
-- 2. Never claim-then-reject.  When a circuit opens, the connector's
--    waiting jobs move to circuit_held_run_at() (9998-01-01): run_at for a
--    lane job, gate_after for a gated one (rate_bucket IS NOT NULL; its run_at
--    stays at held_run_at(), so the gate trigger leaves it alone), with a
--    hold_reason that says until when.  No claim sees them.  A row trigger
--    keeps every job of the connector that becomes waiting while the circuit
--    is not closed (an enqueue, a retry's backoff, a reap, a release, the
--    jobs that were running when it opened) at that time too, except the
--    trial.  Connector holds (held_run_at(), 0006) are left as they are.
--
--    They do not wait until half_open_at itself: then all of them would be
--    due at that instant, and only a claim that happened to promote the
--    circuit first would keep "one trial at a time".  Instead the circuit's
--    next_check_at is half_open_at.  claim_jobs() first looks at circuits due
--    (an index range on next_check_at, like rate buckets'), turns each
--    half-open and makes exactly one held job due now: the trial
--    (circuit.trial_job; the trigger lets it through, and a gated trial goes
--    back to its bucket).  next_wakeup() includes the earliest
--    next_check_at, so sleeping workers wake for it.  A trial's success makes
--    the next held job the trial, until success_threshold; then the circuit
--    closes and releases the rest (run_at now; gated ones back to their
--    bucket).  A trial's failure opens it again and holds the trial with
--    the rest.  Half-open with no job waiting, the next job that becomes
--    waiting is the trial.  While half-open, next_check_at stays
--    recovery_timeout ahead: should the trial vanish without a verdict
--    (cancelled, or ended by a 4xx), the next look picks another.
--
-- 3. Evidence.  Only outcomes that bear on the outside system's health
--    count: a success, or an SL_EHTTP / SL_ETIMEOUT error with
--    SL_RETRY_BACKOFF.  4xx, authorisation and rate-limit errors neither
--    count nor reset.  Outcomes of jobs that were running when the circuit
--    opened are ignored while it is open or half-open: only the trial's
--    count then.  Each opening emits circuit_opened (emit_event) with
--    provider, connector, failures and half_open_at.
--
-- 4. The circuit row is the lock: circuit_record() and the promotion lock
--    it (FOR UPDATE; claims skip a locked one), so concurrent workers count
--    every outcome once and a circuit turns half-open once.  A job enqueued
--    in the instant a circuit opens (its transaction read the circuit
--    before the opening committed) is not held and may make one call.

-- ---- policy ------------------------------------------------------------------

CREATE TABLE sluice.circuit_policy (
    provider           text PRIMARY KEY REFERENCES sluice.provider ON DELETE CASCADE,
    failure_threshold  integer NOT NULL CHECK (failure_threshold BETWEEN 1 AND 1000000),
    recovery_timeout   interval NOT NULL CHECK (recovery_timeout > interval '0'),
    success_threshold  integer NOT NULL CHECK (success_threshold BETWEEN 1 AND 1000000),
    note               text
);

INSERT INTO sluice.circuit_policy (provider, failure_threshold, recovery_timeout,
                                   success_threshold, note)
SELECT type, 5, interval '30 seconds', 2, 'seed 001: 5 failures, 30 s, 2 successes'
  FROM sluice.provider;

-- A provider's thresholds; seed 001's for a provider without a row.
CREATE FUNCTION sluice.circuit_policy_for(p_provider text,
                                          OUT failure_threshold integer,
                                          OUT recovery_timeout interval,
                                          OUT success_threshold integer)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(max(p.failure_threshold), 5),
           coalesce(max(p.recovery_timeout), interval '30 seconds'),
           coalesce(max(p.success_threshold), 2)
      FROM sluice.circuit_policy p WHERE p.provider = p_provider;
$$;

-- ---- circuits ------------------------------------------------------------------

CREATE TABLE sluice.circuit (
    connector_id   uuid PRIMARY KEY REFERENCES sluice.connector ON DELETE CASCADE,
    org_id         bigint NOT NULL,
    provider       text NOT NULL,
    state          text NOT NULL DEFAULT 'closed'
                   CHECK (state IN ('closed', 'open', 'half_open')),
    failures       integer NOT NULL DEFAULT 0,    -- consecutive
    successes      integer NOT NULL DEFAULT 0,    -- trials passed while half-open
    opened_at      timestamptz,
    half_open_at   timestamptz,
    trial_job      bigint,
    -- When a claim should next look at it (DESIGN 2): half_open_at while
    -- open, a watchdog while half-open, infinity while closed.
    next_check_at  timestamptz NOT NULL DEFAULT 'infinity',
    changed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX circuit_due_idx ON sluice.circuit (next_check_at);

-- Where a circuit's held jobs wait (DESIGN 2): never due, and not
-- held_run_at(), so that releasing a connector's holds leaves them alone.
CREATE FUNCTION sluice.circuit_held_run_at()
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$ SELECT '9998-01-01 00:00:00+00'::timestamptz $$;

-- Keeps a connector's jobs out of the queue while its circuit is not closed
-- (DESIGN 2), the trial aside.  Named to fire before the gate triggers of
-- 0006, which then move a gated job's held time into gate_after.
CREATE FUNCTION sluice.circuit_hold_job()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    c sluice.circuit;
BEGIN
    SELECT * INTO c FROM sluice.circuit
     WHERE connector_id = NEW.connector_id AND state <> 'closed';
    IF NOT FOUND OR c.trial_job = NEW.id THEN
        RETURN NEW;
    END IF;
    IF c.state = 'half_open' AND c.trial_job IS NULL THEN
        UPDATE sluice.circuit SET trial_job = NEW.id
         WHERE connector_id = c.connector_id AND trial_job IS NULL;
        IF FOUND THEN
            RETURN NEW;
        END IF;
    END IF;
    NEW.run_at := sluice.circuit_held_run_at();
    NEW.hold_reason := format('circuit %s since %s; next trial at %s', c.state,
                              c.opened_at, c.half_open_at);
    RETURN NEW;
END $$;

CREATE TRIGGER job_circuit_insert BEFORE INSERT ON sluice.job
    FOR EACH ROW WHEN (NEW.connector_id IS NOT NULL AND NEW.state <> 'running'
                       AND NEW.run_at <> '9999-01-01 00:00:00+00'
                       AND NEW.run_at <> '9998-01-01 00:00:00+00')
    EXECUTE FUNCTION sluice.circuit_hold_job();
CREATE TRIGGER job_circuit_update BEFORE UPDATE OF run_at ON sluice.job
    FOR EACH ROW WHEN (NEW.connector_id IS NOT NULL AND NEW.state <> 'running'
                       AND NEW.run_at <> '9999-01-01 00:00:00+00'
                       AND NEW.run_at <> '9998-01-01 00:00:00+00')
    EXECUTE FUNCTION sluice.circuit_hold_job();

-- Holds a connector's waiting jobs at circuit_held_run_at() (DESIGN 2).
-- Jobs a connector hold keeps (held_run_at()) stay as they are.
CREATE FUNCTION sluice.circuit_hold_jobs(p_connector uuid, p_reason text)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    UPDATE sluice.job
       SET run_at = CASE WHEN rate_bucket IS NULL THEN sluice.circuit_held_run_at()
                         ELSE run_at END,
           gate_after = CASE WHEN rate_bucket IS NOT NULL THEN sluice.circuit_held_run_at()
                             ELSE gate_after END,
           hold_reason = left(p_reason, 500)
     WHERE connector_id = p_connector AND state <> 'running'
       AND (CASE WHEN rate_bucket IS NULL THEN run_at ELSE gate_after END)
           NOT IN (sluice.held_run_at(), sluice.circuit_held_run_at());
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- Makes held jobs of a connector due now: one (the next trial, p_one) or all.
-- Returns the ids.  A gated job goes back to its bucket (the gate trigger).
CREATE FUNCTION sluice.circuit_release_jobs(p_connector uuid, p_one boolean)
RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[];
BEGIN
    PERFORM pg_advisory_xact_lock_shared(sluice.wake_lock_key());
    SELECT array_agg(id) INTO v_ids FROM (
        SELECT j.id FROM sluice.job j
         WHERE j.connector_id = p_connector AND j.state <> 'running'
           AND (CASE WHEN j.rate_bucket IS NULL THEN j.run_at ELSE j.gate_after END)
               = sluice.circuit_held_run_at()
         ORDER BY j.priority, j.id
         LIMIT CASE WHEN p_one THEN 1 END
           FOR UPDATE SKIP LOCKED) s;
    IF v_ids IS NULL THEN
        RETURN '{}';
    END IF;
    IF p_one THEN
        UPDATE sluice.circuit SET trial_job = v_ids[1] WHERE connector_id = p_connector;
    END IF;
    WITH u AS (
        UPDATE sluice.job SET run_at = clock_timestamp(), hold_reason = NULL
         WHERE id = ANY (v_ids)
        RETURNING org_id, priority)
    INSERT INTO sluice.job_lane (org_id, priority)
    SELECT DISTINCT org_id, priority FROM u ON CONFLICT DO NOTHING;
    PERFORM sluice.wake_workers(clock_timestamp());
    RETURN v_ids;
END $$;

-- Opens a locked circuit (DESIGN 1): holds the connector's waiting jobs,
-- wakes workers for half_open_at, and emits circuit_opened last.
CREATE FUNCTION sluice.circuit_open(c sluice.circuit, p_failures integer,
                                    p_recovery interval)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_now  timestamptz := clock_timestamp();
    v_half timestamptz := v_now + p_recovery;
BEGIN
    UPDATE sluice.circuit
       SET state = 'open', failures = p_failures, successes = 0, opened_at = v_now,
           half_open_at = v_half, trial_job = NULL, next_check_at = v_half,
           changed_at = v_now
     WHERE connector_id = c.connector_id;
    PERFORM sluice.circuit_hold_jobs(c.connector_id,
        format('circuit open since %s; next trial at %s', v_now, v_half));
    PERFORM sluice.wake_workers(v_half);
    PERFORM sluice.emit_event(c.org_id, 'circuit_opened', c.connector_id,
        jsonb_build_object('provider', c.provider, 'connector_id', c.connector_id,
                           'failures', p_failures, 'opened_at', v_now,
                           'half_open_at', v_half));
END $$;

-- Records the outcome of a connector's job (DESIGN 1 and 3): p_ok true for
-- a success, false for a transient failure of the outside system.  Returns
-- the circuit's state afterwards ('closed' for a connector without one), or
-- NULL when there is no such connector.
CREATE FUNCTION sluice.circuit_record(p_connector uuid, p_job bigint, p_ok boolean)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    c    sluice.circuit;
    pol  record;
BEGIN
    -- A success of a healthy connector writes nothing.
    SELECT * INTO c FROM sluice.circuit WHERE connector_id = p_connector;
    IF p_ok AND (NOT FOUND OR (c.state = 'closed' AND c.failures = 0)) THEN
        RETURN 'closed';
    END IF;
    IF NOT FOUND THEN
        INSERT INTO sluice.circuit (connector_id, org_id, provider)
        SELECT id, org_id, type FROM sluice.connector WHERE id = p_connector
        ON CONFLICT (connector_id) DO NOTHING;
    END IF;
    SELECT * INTO c FROM sluice.circuit WHERE connector_id = p_connector FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    pol := sluice.circuit_policy_for(c.provider);
    IF c.state = 'closed' THEN
        IF p_ok THEN
            UPDATE sluice.circuit SET failures = 0 WHERE connector_id = p_connector;
        ELSIF c.failures + 1 >= pol.failure_threshold THEN
            PERFORM sluice.circuit_open(c, c.failures + 1, pol.recovery_timeout);
            RETURN 'open';
        ELSE
            UPDATE sluice.circuit SET failures = failures + 1 WHERE connector_id = p_connector;
        END IF;
    ELSIF c.state = 'half_open' AND c.trial_job = p_job THEN
        IF NOT p_ok THEN
            PERFORM sluice.circuit_open(c, c.failures + 1, pol.recovery_timeout);
            RETURN 'open';
        ELSIF c.successes + 1 >= pol.success_threshold THEN
            UPDATE sluice.circuit
               SET state = 'closed', failures = 0, successes = 0, opened_at = NULL,
                   half_open_at = NULL, trial_job = NULL, next_check_at = 'infinity',
                   changed_at = clock_timestamp()
             WHERE connector_id = p_connector;
            PERFORM sluice.circuit_release_jobs(p_connector, false);
            RETURN 'closed';
        ELSE
            UPDATE sluice.circuit SET successes = successes + 1, trial_job = NULL
             WHERE connector_id = p_connector;
            PERFORM sluice.circuit_release_jobs(p_connector, true);
            RETURN 'half_open';
        END IF;
    END IF;
    RETURN c.state;
END $$;

-- Turns due open circuits half-open with one trial, and replaces a trial
-- that vanished (DESIGN 2).  Locked circuits are another claim's to decide.
-- Returns how many circuits it looked at.
CREATE FUNCTION sluice.promote_circuits()
RETURNS integer
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    c     sluice.circuit;
    n     integer := 0;
BEGIN
    FOR c IN SELECT * FROM sluice.circuit
              WHERE next_check_at <= v_now
              ORDER BY next_check_at
              LIMIT 20
                FOR UPDATE SKIP LOCKED
    LOOP
        n := n + 1;
        IF c.state = 'closed' THEN
            UPDATE sluice.circuit SET next_check_at = 'infinity' WHERE connector_id = c.connector_id;
            CONTINUE;
        END IF;
        UPDATE sluice.circuit
           SET state = 'half_open',
               changed_at = CASE WHEN state = 'open' THEN v_now ELSE changed_at END,
               trial_job = CASE WHEN EXISTS (SELECT 1 FROM sluice.job j WHERE j.id = c.trial_job)
                                THEN trial_job END,
               next_check_at = v_now + (sluice.circuit_policy_for(c.provider)).recovery_timeout
         WHERE connector_id = c.connector_id
        RETURNING * INTO c;
        IF c.trial_job IS NULL THEN
            PERFORM sluice.circuit_release_jobs(c.connector_id, true);
        END IF;
    END LOOP;
    RETURN n;
END $$;

-- Every claim first turns the circuits that are due half-open (DESIGN 2):
-- claim_jobs() of 0006 asks this.
CREATE OR REPLACE FUNCTION sluice.promote_held_work()
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM sluice.circuit WHERE next_check_at <= clock_timestamp()) THEN
        PERFORM sluice.promote_circuits();
    END IF;
END $$;

-- A worker sleeps no later than the earliest circuit due for a look
-- (next_wakeup() of 0006 asks this).
CREATE OR REPLACE FUNCTION sluice.next_held_check()
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT least((SELECT min(b.next_check_at) FROM sluice.rate_bucket b),
                 (SELECT min(c.next_check_at) FROM sluice.circuit c));
$$;

-- ---- view ----------------------------------------------------------------------

-- Every circuit: its state, counts, times, thresholds and waiting jobs.
CREATE VIEW sluice.circuits AS
SELECT c.provider, c.connector_id, c.org_id, c.state, c.failures, c.successes,
       c.opened_at, c.half_open_at, c.trial_job,
       (SELECT count(*) FROM sluice.job j
         WHERE j.connector_id = c.connector_id AND j.state <> 'running') AS waiting,
       p.failure_threshold, p.recovery_timeout, p.success_threshold,
       c.next_check_at, c.changed_at
  FROM sluice.circuit c
 CROSS JOIN LATERAL sluice.circuit_policy_for(c.provider) p;
