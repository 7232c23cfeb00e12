-- 0002_queue.sql — the job queue: tables, the wake-up protocol, claim, settle,
-- leases, retries and retention.
--
-- DESIGN
--
-- 1. Where jobs live.  sluice.job holds only live jobs: queued, retrying and
--    running.  A job that ends (done, dead, cancelled) is deleted from it and
--    inserted into sluice.job_archive in the same statement, so the table that
--    claims read stays as small as the live backlog, whatever the history
--    holds.  The archive is pruned in batches after the retention period.
--    sluice.jobs (a view) shows both as one.
--
-- 2. Lanes and fairness.  Every queued job belongs to a lane, (org_id,
--    priority), listed in the tiny sluice.job_lane table.  A claim walks the
--    priorities from 1 (highest) to 5 and, within a priority, deals the
--    wanted number of jobs round-robin across that priority's lanes, starting
--    at a random lane.  Within a lane jobs run in (run_at, id) order.  So one
--    org's 100,000 backlog jobs cost another org's job at the same priority at
--    most one claim cycle, and a job of higher priority always goes first.
--
-- 3. Claiming.  sluice.claim_jobs() reads each lane through the partial index
--    job_ready_idx (org_id, priority, run_at, id) WHERE state <> 'running',
--    locks rows with FOR UPDATE SKIP LOCKED, and marks them running with one
--    claim token per call, a lease (locked_until) and attempts + 1.
--
--    A session remembers, per lane, the (run_at, id) where its last claim
--    ended (session setting sluice.claim_hints), and starts the next scan
--    there.  Without that, every claim would step over the index entries of
--    all jobs already processed that VACUUM cannot remove yet — which, while
--    some session holds an old snapshot open, is every job processed since
--    that snapshot was taken, and the claim cost would grow without bound.
--    Jobs can appear behind a hint: a producer's transaction commits a
--    moment after a later job's, or a claim rolls back.  So a session also
--    looks claim_rescan_window behind its hints every claim_rescan_interval,
--    and whenever a hinted scan comes up short.  A job further behind (its
--    producer's transaction stayed open longer than the window; a kind or
--    org resumed) is found when every session drops its hints: resume_kind()
--    and resume_org() do that at once, and housekeeping once a minute
--    (sluice.rescan_all()).  The reaper keeps a hint of the same kind.
--
-- 4. Settling.  Complete, fail, retry-later, release and cancel all go through
--    sluice.settle_jobs(), which takes the claim token: a worker whose lease
--    expired and whose job was claimed again elsewhere holds a stale token,
--    and its write is refused (the function reports it; the worker logs it).
--    Fail retries with exponential backoff and jitter until max_attempts, then
--    the job is dead with every attempt's error kept.  Retry-later and release
--    give the attempt back.
--
--    The functions on this hot path are planned for each call's actual
--    arguments (plan_cache_mode = force_custom_plan): a plan cached while the
--    table was nearly empty (just after a TRUNCATE, or before the first
--    ANALYZE) would otherwise keep scanning it whole as it grows.
--
-- 5. Leases.  A running job's lease is extended by sluice.heartbeat().  When
--    it runs out (the worker died or hung), sluice.reap_expired_leases() puts
--    the job back, the attempt counted, or makes it dead if that was the last
--    one.  Idle workers set their wake-up time from sluice.next_wakeup(),
--    which includes the earliest lease expiry, so a lost job is back within
--    moments of its lease ending.
--
-- 6. Waking workers without a NOTIFY per job.  NOTIFY serialises committing
--    transactions, so producers send one only when a worker is asleep and
--    would otherwise miss the job: a worker about to sleep records
--    waiting_until (when it will wake by itself) in sluice.worker, and
--    sluice.wake_workers(run_at) notifies only if some worker's waiting_until
--    is after the new job's run_at — in practice, only for jobs runnable now
--    and only while a worker sleeps.  A busy system sends none.
--
--    The race (a producer checks before the worker's flag is visible, and
--    commits after the worker's last look at the queue) is closed with one
--    advisory lock: wake_workers() holds it shared until its transaction
--    ends; sluice.worker_idle() sets the flag and try-locks it exclusively.
--    If that succeeds, every producer either committed before (its job is
--    visible to the worker's final claim) or will see the flag.  If it
--    fails, a producer is mid-transaction and the worker looks again shortly
--    instead of sleeping.

CREATE TABLE sluice.job (
    id            bigint PRIMARY KEY,
    org_id        bigint NOT NULL,
    connector_id  uuid,
    kind          text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9_.:-]{0,63}$'),
    payload       jsonb NOT NULL DEFAULT '{}',
    priority      smallint NOT NULL DEFAULT 3 CHECK (priority BETWEEN 1 AND 5),
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'retrying', 'running')),
    run_at        timestamptz NOT NULL,
    attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts  integer NOT NULL CHECK (max_attempts BETWEEN 1 AND 1000),
    dedupe_key    text CHECK (length(dedupe_key) BETWEEN 1 AND 200),
    claim_token   uuid,
    worker_id     text,
    locked_until  timestamptz,
    started_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    hold_reason   text,
    last_error    text,
    errors        jsonb NOT NULL DEFAULT '[]',
    CHECK ((state = 'running') = (claim_token IS NOT NULL AND locked_until IS NOT NULL))
) WITH (fillfactor = 70);
-- No foreign key to sluice.org: a key check takes a KEY SHARE lock on the org
-- row, and many producers of one org would then queue on MultiXact traffic.
-- enqueue_jobs() checks the org instead.

CREATE SEQUENCE sluice.job_id_seq OWNED BY sluice.job.id;
ALTER TABLE sluice.job ALTER COLUMN id SET DEFAULT nextval('sluice.job_id_seq');

-- The claim index (see DESIGN 3).  Running jobs are not in it.
CREATE INDEX job_ready_idx ON sluice.job (org_id, priority, run_at, id)
    WHERE state <> 'running';
-- Leases, for the reaper and next_wakeup().
CREATE INDEX job_lease_idx ON sluice.job (locked_until) WHERE state = 'running';
-- One live job per (org, dedupe key).  Ended jobs are in the archive, so a
-- key frees up as soon as its job ends.
CREATE UNIQUE INDEX job_dedupe_idx ON sluice.job (org_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
CREATE INDEX job_connector_idx ON sluice.job (connector_id)
    WHERE connector_id IS NOT NULL;

CREATE TABLE sluice.job_lane (
    org_id    bigint NOT NULL,
    priority  smallint NOT NULL,
    PRIMARY KEY (org_id, priority)
);

CREATE TABLE sluice.job_archive (
    id            bigint PRIMARY KEY,
    org_id        bigint NOT NULL,
    connector_id  uuid,
    kind          text NOT NULL,
    payload       jsonb NOT NULL,
    priority      smallint NOT NULL,
    state         text NOT NULL CHECK (state IN ('done', 'dead', 'cancelled')),
    run_at        timestamptz NOT NULL,
    attempts      integer NOT NULL,
    max_attempts  integer NOT NULL,
    dedupe_key    text,
    worker_id     text,
    created_at    timestamptz NOT NULL,
    started_at    timestamptz,
    finished_at   timestamptz NOT NULL,
    result        jsonb,
    last_error    text,
    errors        jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX job_archive_finished_idx ON sluice.job_archive (finished_at);
CREATE INDEX job_archive_dead_idx ON sluice.job_archive (finished_at)
    WHERE state = 'dead';
CREATE INDEX job_archive_dedupe_idx ON sluice.job_archive (org_id, dedupe_key)
    WHERE dedupe_key IS NOT NULL;

-- Per-kind policy an operator may set: how long one attempt may run, and the
-- default number of attempts.  Kinds without a row use the settings.
CREATE TABLE sluice.kind_policy (
    kind          text PRIMARY KEY,
    timeout       interval CHECK (timeout > interval '0'),
    max_attempts  integer CHECK (max_attempts BETWEEN 1 AND 1000)
);

-- Paused kinds and orgs: their jobs stay queued and are not claimed.
CREATE TABLE sluice.pause (
    scope      text NOT NULL CHECK (scope IN ('kind', 'org')),
    name       text NOT NULL,
    reason     text,
    paused_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, name)
);

-- Worker processes.  A worker registers at start, heartbeats, and marks
-- itself stopped at exit; one that vanishes is seen by its stale heartbeat.
CREATE TABLE sluice.worker (
    id                 text PRIMARY KEY,
    host               text NOT NULL,
    pid                integer NOT NULL,
    version            text,
    started_at         timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at         timestamptz,
    waiting_until      timestamptz
) WITH (fillfactor = 50);

INSERT INTO sluice.setting (name, value, kind, description) VALUES
 ('lease', '30 seconds', 'interval',
  'How long a claim holds a job without a heartbeat before another worker may take it.'),
 ('retention', '7 days', 'interval',
  'How long done, dead and cancelled jobs stay in sluice.job_archive.'),
 ('backoff_base', '2 seconds', 'interval',
  'Delay before the first retry of a failed job; doubles on each further attempt.'),
 ('backoff_max', '1 hour', 'interval',
  'Upper bound of the retry delay, before jitter (±25 %).'),
 ('default_max_attempts', '5', 'integer',
  'Attempts a job gets when neither the enqueue nor its kind policy says.'),
 ('default_timeout', '5 minutes', 'interval',
  'How long one attempt may run when its kind policy does not say.'),
 ('claim_rescan_interval', '5 seconds', 'interval',
  'How often a session also looks a window behind each of its claim hints (DESIGN 3).'),
 ('claim_rescan_window', '2 seconds', 'interval',
  'How far behind a claim hint a session looks for jobs that appeared late (DESIGN 3).'),
 ('worker_stale_after', '2 minutes', 'interval',
  'A worker whose last heartbeat is older than this is reported as lost.'),
 ('prune_batch', '10000', 'integer',
  'Archived jobs deleted per prune_finished() call.');

INSERT INTO sluice.kind_policy (kind, timeout, max_attempts) VALUES
 ('noop', '10 seconds', NULL),
 ('sleep', '10 minutes', NULL),
 ('fail', '10 seconds', NULL);

-- The advisory lock of DESIGN 6.  One constant, named once.
CREATE FUNCTION sluice.wake_lock_key()
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$ SELECT 7306587213449515::bigint $$;

-- Tells sleeping workers about work that becomes runnable at p_run_at, if any
-- of them would otherwise sleep past it.  Call in the transaction that makes
-- the job runnable, after the job row is written.
CREATE FUNCTION sluice.wake_workers(p_run_at timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(sluice.wake_lock_key());
    IF EXISTS (SELECT 1 FROM sluice.worker
                WHERE waiting_until > p_run_at AND stopped_at IS NULL) THEN
        PERFORM pg_notify('sluice_jobs', '');
    END IF;
END $$;

-- Enqueue: the one set-based insert that enqueue() and enqueue_many() share.
-- Arrays run in parallel, one element per job; NULL elements take defaults.
-- Returns one row per input element, in input order: the job's id and whether
-- an existing live job with the same dedupe key was returned instead.
CREATE FUNCTION sluice.enqueue_jobs(
    p_org           bigint,
    p_kinds         text[],
    p_payloads      jsonb[]        DEFAULT NULL,
    p_priorities    integer[]      DEFAULT NULL,
    p_run_ats       timestamptz[]  DEFAULT NULL,
    p_max_attempts  integer[]      DEFAULT NULL,
    p_dedupe_keys   text[]         DEFAULT NULL,
    p_connectors    uuid[]         DEFAULT NULL)
RETURNS TABLE (ord integer, job_id bigint, deduplicated boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    -- Not now(): a job's place in its lane is when it was enqueued, not when
    -- its transaction began (a long transaction would queue it late).
    v_now       timestamptz := clock_timestamp();
    v_default   integer := sluice.setting_int('default_max_attempts');
    v_ids       bigint[];
    v_keys      text[];
    v_inserted  bigint[];
    v_first_run timestamptz;
    v_any_keys  boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM sluice.org WHERE id = p_org) THEN
        RAISE EXCEPTION 'org % does not exist', p_org
            USING ERRCODE = 'foreign_key_violation';
    END IF;

    -- Held to commit: keeps drop_empty_lanes() from dropping the lane this
    -- job goes into, and is part of the wake-up protocol (DESIGN 6).
    PERFORM pg_advisory_xact_lock_shared(sluice.wake_lock_key());

    -- Ids are drawn before the insert so that each input element knows its
    -- own id, and an element whose id did not land was deduplicated.
    -- run_at is "not before": a time in the past means now, which keeps each
    -- lane's order close to enqueue order (DESIGN 3).
    -- nextval() runs over rows already sorted by ord, so ids follow input
    -- order (and so does each lane, as ties on run_at go by id).
    WITH input AS (
        SELECT x.*, nextval('sluice.job_id_seq') AS id
          FROM (SELECT i.ord, i.kind,
                       coalesce(i.payload, '{}') AS payload,
                       coalesce(i.priority, 3)::smallint AS priority,
                       greatest(coalesce(i.run_at, v_now), v_now) AS run_at,
                       coalesce(i.max_attempts, kp.max_attempts, v_default) AS max_attempts,
                       i.dedupe_key, i.connector_id
                  FROM unnest(p_kinds, p_payloads, p_priorities, p_run_ats,
                              p_max_attempts, p_dedupe_keys, p_connectors)
                       WITH ORDINALITY AS i(kind, payload, priority, run_at,
                                            max_attempts, dedupe_key, connector_id, ord)
                  LEFT JOIN sluice.kind_policy kp ON kp.kind = i.kind
                 ORDER BY i.ord) x),
    lanes AS (
        INSERT INTO sluice.job_lane (org_id, priority)
        SELECT DISTINCT p_org, priority FROM input
        ON CONFLICT DO NOTHING),
    -- Two inserts: ON CONFLICT makes every row a speculative insertion (an
    -- extra WAL record each), so only rows with a dedupe key pay for it.
    plain AS (
        INSERT INTO sluice.job (id, org_id, connector_id, kind, payload,
                                priority, run_at, max_attempts)
        SELECT id, p_org, connector_id, kind, payload, priority, run_at,
               max_attempts
          FROM input WHERE dedupe_key IS NULL ORDER BY ord),
    keyed AS (
        INSERT INTO sluice.job (id, org_id, connector_id, kind, payload,
                                priority, run_at, max_attempts, dedupe_key)
        SELECT id, p_org, connector_id, kind, payload, priority, run_at,
               max_attempts, dedupe_key
          FROM input WHERE dedupe_key IS NOT NULL ORDER BY ord
        ON CONFLICT (org_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
        RETURNING id)
    SELECT array_agg(i.id ORDER BY i.ord), array_agg(i.dedupe_key ORDER BY i.ord),
           (SELECT array_agg(id) FROM keyed), min(i.run_at),
           bool_or(i.dedupe_key IS NOT NULL)
      INTO v_ids, v_keys, v_inserted, v_first_run, v_any_keys
      FROM input i;

    IF v_first_run IS NOT NULL THEN
        PERFORM sluice.wake_workers(v_first_run);
    END IF;

    IF NOT v_any_keys THEN
        RETURN QUERY
            SELECT o.ord::integer, o.id, false
              FROM unnest(v_ids) WITH ORDINALITY AS o(id, ord);
        RETURN;
    END IF;

    -- An element whose id did not land lost to a live job holding its dedupe
    -- key (possibly an earlier element of this call, or a job that ended a
    -- moment ago and is in the archive by now).
    RETURN QUERY
        SELECT o.ord::integer,
               CASE WHEN o.key IS NULL OR n.id IS NOT NULL THEN o.id
                    ELSE coalesce(
                        (SELECT d.id FROM sluice.job d
                          WHERE d.org_id = p_org AND d.dedupe_key = o.key),
                        (SELECT a.id FROM sluice.job_archive a
                          WHERE a.org_id = p_org AND a.dedupe_key = o.key
                          ORDER BY a.finished_at DESC LIMIT 1)) END,
               o.key IS NOT NULL AND n.id IS NULL
          FROM unnest(v_ids, v_keys) WITH ORDINALITY AS o(id, key, ord)
          LEFT JOIN unnest(v_inserted) AS n(id) ON n.id = o.id
         ORDER BY o.ord;
END $$;

-- Enqueue one job.  Returns its id, or the id of the live job holding the
-- same dedupe key.
--
-- The same steps as enqueue_jobs(), written out for one row: this is every
-- producer's hot path, and going through arrays and CTEs for a single job
-- halves what 8 producers can enqueue.  Keep the two in step.
CREATE FUNCTION sluice.enqueue(
    p_org           bigint,
    p_kind          text,
    p_payload       jsonb       DEFAULT '{}',
    p_priority      integer     DEFAULT 3,
    p_run_at        timestamptz DEFAULT NULL,
    p_max_attempts  integer     DEFAULT NULL,
    p_dedupe_key    text        DEFAULT NULL,
    p_connector     uuid        DEFAULT NULL,
    OUT job_id      bigint,
    OUT deduplicated boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now      timestamptz := clock_timestamp();
    v_run_at   timestamptz := greatest(coalesce(p_run_at, v_now), v_now);
    v_priority smallint := coalesce(p_priority, 3);
    v_max_attempts integer := p_max_attempts;
    v_id       bigint;
BEGIN
    IF v_max_attempts IS NULL THEN
        -- The setting read in place: a nested function call costs a tenth of
        -- this function; setting_int() only names a missing row.
        v_max_attempts := coalesce(
            (SELECT max_attempts FROM sluice.kind_policy WHERE kind = p_kind),
            (SELECT value::integer FROM sluice.setting WHERE name = 'default_max_attempts'),
            sluice.setting_int('default_max_attempts'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM sluice.org WHERE id = p_org) THEN
        RAISE EXCEPTION 'org % does not exist', p_org
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    PERFORM pg_advisory_xact_lock_shared(sluice.wake_lock_key());
    INSERT INTO sluice.job_lane (org_id, priority) VALUES (p_org, v_priority)
    ON CONFLICT DO NOTHING;

    IF p_dedupe_key IS NULL THEN
        INSERT INTO sluice.job (org_id, connector_id, kind, payload, priority, run_at,
                                max_attempts)
        VALUES (p_org, p_connector, p_kind, coalesce(p_payload, '{}'), v_priority, v_run_at,
v_max_attempts)
        RETURNING id INTO v_id;
    ELSE
        INSERT INTO sluice.job (org_id, connector_id, kind, payload, priority, run_at,
                                max_attempts, dedupe_key)
        VALUES (p_org, p_connector, p_kind, coalesce(p_payload, '{}'), v_priority, v_run_at,
v_max_attempts,
                p_dedupe_key)
        ON CONFLICT (org_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
        RETURNING id INTO v_id;
        IF v_id IS NULL THEN
            job_id := coalesce(
                (SELECT d.id FROM sluice.job d
                  WHERE d.org_id = p_org AND d.dedupe_key = p_dedupe_key),
                (SELECT a.id FROM sluice.job_archive a
                  WHERE a.org_id = p_org AND a.dedupe_key = p_dedupe_key
                  ORDER BY a.finished_at DESC LIMIT 1));
            deduplicated := true;
            RETURN;
        END IF;
    END IF;
    -- wake_workers(v_run_at), inline: the lock above is already held.
    IF EXISTS (SELECT 1 FROM sluice.worker
                WHERE waiting_until > v_run_at AND stopped_at IS NULL) THEN
        PERFORM pg_notify('sluice_jobs', '');
    END IF;
    job_id := v_id;
    deduplicated := false;
END $$;

-- Enqueue many jobs given as a JSON array of objects with the fields kind,
-- payload, priority, run_at, max_attempts, dedupe_key, connector_id.
CREATE FUNCTION sluice.enqueue_many(p_org bigint, p_jobs jsonb)
RETURNS TABLE (ord integer, job_id bigint, deduplicated boolean)
LANGUAGE sql AS $$
    SELECT e.*
      FROM (SELECT array_agg(kind ORDER BY o) AS kinds,
                   array_agg(payload ORDER BY o) AS payloads,
                   array_agg(priority ORDER BY o) AS priorities,
                   array_agg(run_at ORDER BY o) AS run_ats,
                   array_agg(max_attempts ORDER BY o) AS max_attempts,
                   array_agg(dedupe_key ORDER BY o) AS dedupe_keys,
                   array_agg(connector_id ORDER BY o) AS connectors
              FROM jsonb_array_elements(p_jobs) WITH ORDINALITY AS a(elem, o),
                   jsonb_to_record(a.elem) AS r(kind text, payload jsonb,
                        priority integer, run_at timestamptz,
                        max_attempts integer, dedupe_key text,
                        connector_id uuid)) x,
           sluice.enqueue_jobs(p_org, x.kinds, x.payloads, x.priorities,
                               x.run_ats, x.max_attempts, x.dedupe_keys,
                               x.connectors) e
     WHERE x.kinds IS NOT NULL;
$$;

-- What a claim hands a worker.
CREATE TYPE sluice.claimed_job AS (
    id            bigint,
    org_id        bigint,
    connector_id  uuid,
    kind          text,
    payload       jsonb,
    priority      smallint,
    attempts      integer,
    max_attempts  integer,
    claim_token   uuid,
    locked_until  timestamptz,
    timeout_ms    bigint,
    created_at    timestamptz,
    run_at        timestamptz
);

-- Session hints (DESIGN 3) are dropped by every session whenever this
-- sequence moves: resuming a kind or org moves it, and so does housekeeping
-- every minute, which bounds how long a job can sit unseen behind a hint.
-- A sequence, because reading it costs no MVCC version.
CREATE SEQUENCE sluice.claim_epoch;
-- Called once so that last_value moves on every later nextval().
SELECT nextval('sluice.claim_epoch');

CREATE FUNCTION sluice.rescan_all()
RETURNS void LANGUAGE sql AS $$ SELECT nextval('sluice.claim_epoch') $$;

-- Whether this session's hints are still good; if not, forgets them.
CREATE FUNCTION sluice.hints_current()
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_epoch text := (SELECT last_value FROM sluice.claim_epoch)::text;
BEGIN
    IF current_setting('sluice.claim_epoch', true) IS NOT DISTINCT FROM v_epoch THEN
        RETURN true;
    END IF;
    PERFORM set_config('sluice.claim_epoch', v_epoch, false);
    PERFORM set_config('sluice.claim_hints', '', false);
    PERFORM set_config('sluice.reap_from', '', false);
    RETURN false;
END $$;

-- Locks up to p_limit runnable jobs of one lane with (run_at, id) in
-- (p_after, p_upto], oldest first, skipping rows other sessions hold.
--
-- Always planned for its actual arguments: with the limit and bounds unknown
-- the planner picks a bitmap scan and a sort, which reads the whole backlog
-- to return its first few rows.  An ordered walk of job_ready_idx that stops
-- at the limit is the plan this function exists for.
CREATE FUNCTION sluice.lock_lane(p_org bigint, p_priority smallint,
                                 p_after_at timestamptz, p_after_id bigint,
                                 p_upto_at timestamptz, p_upto_id bigint,
                                 p_paused_kinds text[], p_limit integer)
RETURNS TABLE (id bigint, run_at timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    RETURN QUERY
        SELECT j.id, j.run_at FROM sluice.job j
         WHERE j.state <> 'running'
           AND j.org_id = p_org AND j.priority = p_priority
           AND (j.run_at, j.id) > (p_after_at, p_after_id)
           AND (j.run_at, j.id) <= (p_upto_at, p_upto_id)
           AND j.kind <> ALL (p_paused_kinds)
         ORDER BY j.run_at, j.id
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED;
END $$;

-- Claims up to p_max runnable jobs for worker p_worker (DESIGN 2 and 3).
CREATE FUNCTION sluice.claim_jobs(p_worker text, p_max integer DEFAULT 1)
RETURNS SETOF sluice.claimed_job
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_now          timestamptz := clock_timestamp();
    v_left         integer := least(greatest(coalesce(p_max, 1), 0), 1000);
    v_ids          bigint[] := '{}';
    v_paused_kinds text[];
    v_hints        jsonb := '{}';
    v_taken        jsonb := '{}';
    v_window       interval := sluice.setting_interval('claim_rescan_window');
    v_look_behind  boolean;
    v_prio         smallint;
    v_orgs         bigint[];
    v_active       bigint[];
    v_next         bigint[];
    v_org          bigint;
    v_quota        integer;
    v_want         integer;
    v_key          text;
    v_from_at      timestamptz;
    v_from_id      bigint;
    v_hinted       boolean;
    v_got          bigint[];
    v_got_at       timestamptz[];
    v_n            integer;
    v_lease_until  timestamptz;
    v_timeout      interval;
    v_token        uuid;
BEGIN
    IF v_left = 0 THEN
        RETURN;
    END IF;

    SELECT coalesce(array_agg(name), '{}') INTO v_paused_kinds
      FROM sluice.pause WHERE scope = 'kind';

    IF sluice.hints_current() THEN
        v_hints := coalesce(nullif(current_setting('sluice.claim_hints', true), ''), '{}')::jsonb;
    END IF;
    -- Every claim_rescan_interval, also look a window behind each hint first.
    v_look_behind := coalesce(nullif(current_setting('sluice.claim_rescanned_at', true), '')
                                  ::timestamptz, '-infinity')
                     < v_now - sluice.setting_interval('claim_rescan_interval');
    IF v_look_behind THEN
        PERFORM set_config('sluice.claim_rescanned_at', v_now::text, false);
    END IF;

    FOR v_prio, v_orgs IN
        SELECT l.priority, array_agg(l.org_id ORDER BY random())
          FROM sluice.job_lane l
         WHERE NOT EXISTS (SELECT 1 FROM sluice.pause p
                            WHERE p.scope = 'org' AND p.name = l.org_id::text)
         GROUP BY l.priority
         ORDER BY l.priority
    LOOP
        v_active := v_orgs;
        WHILE v_left > 0 AND cardinality(v_active) > 0 LOOP
            v_quota := ceil(v_left::numeric / cardinality(v_active));
            v_next := '{}';
            FOREACH v_org IN ARRAY v_active LOOP
                EXIT WHEN v_left = 0;
                v_key := v_org || ':' || v_prio;
                v_want := least(v_quota, v_left);
                v_n := 0;
                -- Where to start in this lane: after what this claim already
                -- took from it (one's own locks are not skipped, so never
                -- read those again), else at the session's hint, else at
                -- the start of the lane.
                v_hinted := false;
                v_from_at := '-infinity';
                v_from_id := 0;
                IF v_taken ? v_key THEN
                    v_from_at := (v_taken -> v_key ->> 0)::timestamptz;
                    v_from_id := (v_taken -> v_key ->> 1)::bigint;
                ELSIF v_hints ? v_key THEN
                    v_from_at := (v_hints -> v_key ->> 0)::timestamptz;
                    v_from_id := (v_hints -> v_key ->> 1)::bigint;
                    v_hinted := true;
                END IF;

                -- Jobs that appeared behind the hint within the window:
                -- first, as they are the older ones.
                IF v_hinted AND v_look_behind THEN
                    SELECT array_agg(r.id) INTO v_got
                      FROM sluice.lock_lane(v_org, v_prio, v_from_at - v_window, 0,
                                            v_from_at, v_from_id, v_paused_kinds, v_want) r;
                    v_n := coalesce(cardinality(v_got), 0);
                    v_ids := v_ids || coalesce(v_got, '{}');
                END IF;

                IF v_n < v_want THEN
                    SELECT array_agg(r.id ORDER BY r.run_at, r.id),
                           array_agg(r.run_at ORDER BY r.run_at, r.id)
                      INTO v_got, v_got_at
                      FROM sluice.lock_lane(v_org, v_prio, v_from_at, v_from_id,
                                            v_now, 9223372036854775807, v_paused_kinds,
                                            v_want - v_n) r;
                    IF v_got IS NOT NULL THEN
                        v_hints := jsonb_set(v_hints, ARRAY[v_key], jsonb_build_array(
                            v_got_at[cardinality(v_got)], v_got[cardinality(v_got)]));
                        v_taken := jsonb_set(v_taken, ARRAY[v_key],
                                             v_hints -> v_key);
                        v_ids := v_ids || v_got;
                        v_n := v_n + cardinality(v_got);
                    END IF;
                END IF;

                -- Short from a hint: the lane may hold older jobs behind it.
                IF v_n < v_want AND v_hinted AND NOT v_look_behind THEN
                    SELECT array_agg(r.id) INTO v_got
                      FROM sluice.lock_lane(v_org, v_prio, v_from_at - v_window, 0,
                                            v_from_at, v_from_id, v_paused_kinds,
                                            v_want - v_n) r;
                    IF v_got IS NOT NULL THEN
                        v_ids := v_ids || v_got;
                        v_n := v_n + cardinality(v_got);
                        IF NOT v_taken ? v_key THEN
                            -- Later passes of this claim start past the hint.
                            v_taken := jsonb_set(v_taken, ARRAY[v_key],
                                                 jsonb_build_array(v_from_at, v_from_id));
                        END IF;
                    END IF;
                END IF;

                v_left := v_left - v_n;
                -- A lane that gave all it was asked for may have more.
                IF v_n = v_quota THEN
                    v_next := v_next || v_org;
                END IF;
            END LOOP;
            v_active := v_next;
        END LOOP;
        EXIT WHEN v_left = 0;
    END LOOP;

    PERFORM set_config('sluice.claim_hints', v_hints::text, false);

    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;

    -- Busy now; and a worker kept busy by short jobs shows it is alive here
    -- (at most one write every 5 seconds).
    UPDATE sluice.worker SET waiting_until = NULL, last_heartbeat_at = now()
     WHERE id = p_worker
       AND (waiting_until IS NOT NULL OR last_heartbeat_at < now() - interval '5 seconds');

    v_lease_until := v_now + sluice.setting_interval('lease');
    v_timeout := sluice.setting_interval('default_timeout');
    v_token := gen_random_uuid();
    RETURN QUERY
    WITH claimed AS (
        UPDATE sluice.job j
           SET state = 'running',
               attempts = j.attempts + 1,
               claim_token = v_token,
               worker_id = p_worker,
               locked_until = v_lease_until,
               started_at = v_now,
               hold_reason = NULL
         WHERE j.id = ANY (v_ids)
        RETURNING j.id, j.org_id, j.connector_id, j.kind, j.payload, j.priority,
                  j.attempts, j.max_attempts, j.run_at, j.created_at)
    SELECT c.id, c.org_id, c.connector_id, c.kind, c.payload, c.priority,
           c.attempts, c.max_attempts, v_token, v_lease_until,
           (extract(epoch FROM coalesce(kp.timeout, v_timeout)) * 1000)::bigint,
           c.created_at, c.run_at
      FROM claimed c
      LEFT JOIN sluice.kind_policy kp ON kp.kind = c.kind
     ORDER BY c.priority, c.run_at, c.id;
END $$;

-- The delay before retry number p_attempt + 1: exponential from backoff_base,
-- capped at backoff_max, with ±25 % jitter so that jobs that failed together
-- do not come back together.
CREATE FUNCTION sluice.retry_delay(p_attempt integer)
RETURNS interval LANGUAGE sql VOLATILE AS $$
    SELECT least(sluice.setting_interval('backoff_base')
                     * power(2, least(greatest(p_attempt, 1) - 1, 40)),
                 sluice.setting_interval('backoff_max'))
           * (0.75 + random() * 0.5);
$$;

-- One attempt's error, as kept in job.errors.
CREATE FUNCTION sluice.attempt_error(p_attempt integer, p_worker text, p_error text)
RETURNS jsonb LANGUAGE sql VOLATILE AS $$
    SELECT jsonb_build_object('attempt', p_attempt, 'at', clock_timestamp(),
                              'worker', p_worker, 'error', left(p_error, 2000));
$$;

-- Moves ended jobs to the archive.  p_rows are the rows just deleted from
-- sluice.job.  Parallel to them, optionally: p_results (each job's result)
-- and p_errors (an error that ended the job, added to its attempt errors).
CREATE FUNCTION sluice.archive_jobs(p_rows sluice.job[], p_state text,
                                    p_results jsonb[] DEFAULT NULL,
                                    p_errors text[] DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO sluice.job_archive (id, org_id, connector_id, kind, payload,
        priority, state, run_at, attempts, max_attempts, dedupe_key,
        worker_id, created_at, started_at, finished_at, result, last_error,
        errors)
    SELECT r.id, r.org_id, r.connector_id, r.kind, r.payload, r.priority,
           p_state, r.run_at, r.attempts, r.max_attempts, r.dedupe_key,
           r.worker_id, r.created_at, r.started_at, clock_timestamp(),
           p_results[r.ord],
           coalesce(left(p_errors[r.ord], 2000), r.last_error),
           CASE WHEN p_errors[r.ord] IS NULL THEN r.errors
                ELSE r.errors || sluice.attempt_error(r.attempts, r.worker_id,
                                                      p_errors[r.ord]) END
      FROM unnest(p_rows) WITH ORDINALITY AS r(id, org_id, connector_id, kind,
               payload, priority, state, run_at, attempts, max_attempts,
               dedupe_key, claim_token, worker_id, locked_until, started_at,
               created_at, hold_reason, last_error, errors, ord);
$$;

-- Settles claimed jobs (DESIGN 4).  Parallel arrays, one element per job:
--   outcome 'done'         detail = the result (any JSON, may be null)
--   outcome 'fail'         detail = {"error": text, "permanent": bool}
--   outcome 'retry_later'  detail = {"delay_ms": n, "reason": text}; no attempt spent
--   outcome 'release'      as retry_later with no delay (a worker giving back
--                          jobs it claimed but did not start)
--   outcome 'cancel'       detail = {"reason": text}
-- A write whose (id, claim token) no longer matches a running job is refused:
-- accepted = false, state = what the job is now (or NULL if unknown).
CREATE FUNCTION sluice.settle_jobs(p_ids bigint[], p_tokens uuid[],
                                   p_outcomes text[], p_details jsonb[])
RETURNS TABLE (job_id bigint, accepted boolean, state text)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
    v_rows      sluice.job[];
    v_results   jsonb[];
    v_settled   bigint[] := '{}';
    v_first_run timestamptz;
BEGIN
    IF cardinality(p_ids) IS DISTINCT FROM cardinality(p_tokens)
       OR cardinality(p_ids) IS DISTINCT FROM cardinality(p_outcomes)
       OR cardinality(p_ids) IS DISTINCT FROM cardinality(p_details) THEN
        RAISE EXCEPTION 'settle_jobs: arrays differ in length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_outcomes) o
                WHERE o IS NULL OR o NOT IN ('done', 'fail', 'retry_later',
                                             'release', 'cancel')) THEN
        RAISE EXCEPTION 'settle_jobs: unknown outcome'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- A matching claim token means the job is running (the CHECK on
    -- sluice.job), so the statements below do not also say state = 'running':
    -- that would let the planner walk job_lease_idx, every running job, for
    -- each settled one when its statistics are stale — it did, at 5,000
    -- jobs/s.  Each job is found by its primary key.

    -- done: the hot path, one statement.
    IF 'done' = ANY (p_outcomes) THEN
        WITH i AS (SELECT * FROM unnest(p_ids, p_tokens, p_outcomes, p_details)
                             AS i(id, token, outcome, detail)
                    WHERE outcome = 'done'),
        d AS (DELETE FROM sluice.job j USING i
               WHERE j.id = i.id AND j.claim_token = i.token
              RETURNING j.*, i.detail),
        a AS (INSERT INTO sluice.job_archive (id, org_id, connector_id, kind,
                  payload, priority, state, run_at, attempts, max_attempts,
                  dedupe_key, worker_id, created_at, started_at, finished_at,
                  result, last_error, errors)
              SELECT id, org_id, connector_id, kind, payload, priority, 'done',
                     run_at, attempts, max_attempts, dedupe_key, worker_id,
                     created_at, started_at, clock_timestamp(), detail,
                     last_error, errors
                FROM d
              RETURNING id)
        SELECT v_settled || coalesce(array_agg(a.id), '{}') INTO v_settled FROM a;
    END IF;
    IF NOT (p_outcomes && ARRAY['fail', 'retry_later', 'release', 'cancel']) THEN
        RETURN QUERY
            SELECT i.id, s.id IS NOT NULL,
                   CASE WHEN s.id IS NOT NULL THEN 'done' ELSE
                        (SELECT coalesce(j.state, a.state) FROM (SELECT 1) x
                           LEFT JOIN sluice.job j ON j.id = i.id
                           LEFT JOIN sluice.job_archive a ON a.id = i.id) END
              FROM unnest(p_ids) WITH ORDINALITY AS i(id, ord)
              LEFT JOIN unnest(v_settled) AS s(id) ON s.id = i.id
             ORDER BY i.ord;
        RETURN;
    END IF;

    -- fail, last attempt or permanent: dead.
    WITH i AS (SELECT * FROM unnest(p_ids, p_tokens, p_outcomes, p_details)
                         AS i(id, token, outcome, detail)
                WHERE outcome = 'fail'),
    d AS (DELETE FROM sluice.job j USING i
           WHERE j.id = i.id AND j.claim_token = i.token
             AND (j.attempts >= j.max_attempts
                  OR coalesce((i.detail ->> 'permanent')::boolean, false))
          RETURNING j, i.detail)
    SELECT array_agg(d.j), array_agg(d.detail) INTO v_rows, v_results FROM d;
    IF v_rows IS NOT NULL THEN
        PERFORM sluice.archive_jobs(v_rows, 'dead', NULL,
            ARRAY(SELECT d ->> 'error' FROM unnest(v_results) d));
        v_settled := v_settled || ARRAY(SELECT (r).id FROM unnest(v_rows) r);
    END IF;

    -- The rest put jobs back in their lanes: hold the lane lock (see
    -- drop_empty_lanes) from here to commit.
    IF EXISTS (SELECT 1 FROM unnest(p_outcomes) o
                WHERE o IN ('fail', 'retry_later', 'release')) THEN
        PERFORM pg_advisory_xact_lock_shared(sluice.wake_lock_key());
    END IF;

    -- Back to the queue: a failure with attempts left, after a backoff; a
    -- retry_later or release, when asked, with the attempt given back.  (The
    -- failures that were the last attempt are gone already: dead above.)
    WITH i AS (SELECT * FROM unnest(p_ids, p_tokens, p_outcomes, p_details)
                         AS i(id, token, outcome, detail)
                WHERE outcome IN ('fail', 'retry_later', 'release')),
    u AS (UPDATE sluice.job j
             SET state = CASE WHEN i.outcome = 'fail' OR j.errors <> '[]' THEN 'retrying'
                              ELSE 'queued' END,
                 attempts = CASE WHEN i.outcome = 'fail' THEN j.attempts ELSE j.attempts - 1 END,
                 run_at = CASE i.outcome
                     WHEN 'fail' THEN clock_timestamp() + sluice.retry_delay(j.attempts)
                     WHEN 'retry_later' THEN clock_timestamp() + make_interval(secs =>
                         least(greatest(coalesce((i.detail ->> 'delay_ms')::numeric, 0), 0),
                               86400000) / 1000.0)
                     ELSE j.run_at END,   -- a released job keeps its place in line
                 last_error = CASE WHEN i.outcome = 'fail' THEN left(i.detail ->> 'error', 2000)
                                   ELSE j.last_error END,
                 errors = CASE WHEN i.outcome = 'fail'
                               THEN j.errors || sluice.attempt_error(j.attempts, j.worker_id,
                                                                     i.detail ->> 'error')
                               ELSE j.errors END,
                 hold_reason = CASE i.outcome WHEN 'retry_later'
                                   THEN left(i.detail ->> 'reason', 500) END,
                 claim_token = NULL, worker_id = NULL, locked_until = NULL
            FROM i
           WHERE j.id = i.id AND j.claim_token = i.token
          RETURNING j.id, j.run_at, j.org_id, j.priority),
    lanes AS (INSERT INTO sluice.job_lane (org_id, priority)
              SELECT DISTINCT org_id, priority FROM u ON CONFLICT DO NOTHING)
    SELECT v_settled || coalesce(array_agg(u.id), '{}'), min(u.run_at)
      INTO v_settled, v_first_run FROM u;

    -- cancel, by the worker holding the job.
    WITH i AS (SELECT * FROM unnest(p_ids, p_tokens, p_outcomes, p_details)
                         AS i(id, token, outcome, detail)
                WHERE outcome = 'cancel'),
    d AS (DELETE FROM sluice.job j USING i
           WHERE j.id = i.id AND j.claim_token = i.token
          RETURNING j, jsonb_build_object('cancelled', i.detail ->> 'reason') AS detail)
    SELECT array_agg(d.j), array_agg(d.detail) INTO v_rows, v_results FROM d;
    IF v_rows IS NOT NULL THEN
        PERFORM sluice.archive_jobs(v_rows, 'cancelled', v_results);
        v_settled := v_settled || ARRAY(SELECT (r).id FROM unnest(v_rows) r);
    END IF;

    -- A released job went back to its old place, which may be behind other
    -- sessions' claim hints (DESIGN 3): have them look again.
    IF 'release' = ANY (p_outcomes) THEN
        PERFORM sluice.rescan_all();
    END IF;
    IF v_first_run IS NOT NULL THEN
        PERFORM sluice.wake_workers(least(v_first_run, clock_timestamp()));
    END IF;

    RETURN QUERY
        SELECT i.id, s.id IS NOT NULL,
               coalesce(j.state, a.state)
          FROM unnest(p_ids) WITH ORDINALITY AS i(id, ord)
          LEFT JOIN unnest(v_settled) AS s(id) ON s.id = i.id
          LEFT JOIN sluice.job j ON j.id = i.id
          LEFT JOIN sluice.job_archive a ON j.id IS NULL AND a.id = i.id
         ORDER BY i.ord;
END $$;

-- Single-job forms of settle_jobs(), for people and programs that hold one
-- job.  Each returns whether the write was accepted.
CREATE FUNCTION sluice.complete_job(p_id bigint, p_token uuid, p_result jsonb DEFAULT NULL)
RETURNS boolean LANGUAGE sql AS $$
    SELECT accepted FROM sluice.settle_jobs(ARRAY[p_id], ARRAY[p_token],
                                            ARRAY['done'], ARRAY[p_result]);
$$;

CREATE FUNCTION sluice.fail_job(p_id bigint, p_token uuid, p_error text,
                                p_permanent boolean DEFAULT false)
RETURNS boolean LANGUAGE sql AS $$
    SELECT accepted FROM sluice.settle_jobs(ARRAY[p_id], ARRAY[p_token], ARRAY['fail'],
        ARRAY[jsonb_build_object('error', p_error, 'permanent', p_permanent)]);
$$;

CREATE FUNCTION sluice.retry_job_later(p_id bigint, p_token uuid, p_delay interval,
                                       p_reason text DEFAULT NULL)
RETURNS boolean LANGUAGE sql AS $$
    SELECT accepted FROM sluice.settle_jobs(ARRAY[p_id], ARRAY[p_token],
        ARRAY['retry_later'],
        ARRAY[jsonb_build_object('delay_ms', extract(epoch FROM p_delay) * 1000,
                                 'reason', p_reason)]);
$$;

-- Extends the leases of the jobs a worker holds and records its heartbeat.
-- Returns the jobs of the list it still holds, with their new lease; a job
-- missing from the answer was cancelled or claimed by another worker, and the
-- caller should stop working on it.
CREATE FUNCTION sluice.heartbeat(p_worker text, p_ids bigint[] DEFAULT '{}',
                                 p_tokens uuid[] DEFAULT '{}')
RETURNS TABLE (job_id bigint, locked_until timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
    v_until timestamptz := clock_timestamp() + sluice.setting_interval('lease');
BEGIN
    UPDATE sluice.worker SET last_heartbeat_at = now(), stopped_at = NULL
     WHERE id = p_worker;
    RETURN QUERY
        UPDATE sluice.job j
           SET locked_until = v_until
          FROM unnest(p_ids, p_tokens) AS h(id, token)
         WHERE j.id = h.id AND j.claim_token = h.token
        RETURNING j.id, j.locked_until;
END $$;

-- Puts back jobs whose lease ran out (DESIGN 5).  The attempt counts: it was
-- spent when the job was claimed.  Returns how many jobs it handled.
--
-- A lease is always set to a time in the future, so whatever expired before
-- this session's previous sweep was handled by it: the sweep starts there
-- (session setting sluice.reap_from) instead of stepping over every old
-- lease's index entry again.  Hints reset with sluice.rescan_all().
CREATE FUNCTION sluice.reap_expired_leases(p_limit integer DEFAULT 1000)
RETURNS integer LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_now       timestamptz := clock_timestamp();
    v_from      timestamptz := '-infinity';
    v_ids       bigint[];
    v_rows      sluice.job[];
    v_n         integer := 0;
    v_first_run timestamptz;
BEGIN
    IF sluice.hints_current() THEN
        v_from := coalesce(nullif(current_setting('sluice.reap_from', true), ''),
                           '-infinity')::timestamptz;
    END IF;
    PERFORM pg_advisory_xact_lock_shared(sluice.wake_lock_key());
    SELECT array_agg(id) INTO v_ids
      FROM (SELECT id FROM sluice.job
             WHERE state = 'running' AND locked_until >= v_from AND locked_until < v_now
             ORDER BY locked_until LIMIT p_limit
               FOR UPDATE SKIP LOCKED) x;
    IF coalesce(cardinality(v_ids), 0) < p_limit THEN
        -- Everything that expired before v_now is handled (a second of margin).
        PERFORM set_config('sluice.reap_from', (v_now - interval '1 second')::text, false);
    END IF;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;

    -- Last attempt: dead.
    WITH d AS (
        DELETE FROM sluice.job j
         WHERE j.id = ANY (v_ids) AND j.attempts >= j.max_attempts
        RETURNING j)
    SELECT array_agg(d.j) INTO v_rows FROM d;
    IF v_rows IS NOT NULL THEN
        PERFORM sluice.archive_jobs(v_rows, 'dead', NULL,
            ARRAY(SELECT 'lease expired on worker ' || (r).worker_id
                    FROM unnest(v_rows) r));
        v_n := cardinality(v_rows);
    END IF;

    WITH u AS (
        UPDATE sluice.job j
           SET state = 'retrying', run_at = clock_timestamp(),
               last_error = 'lease expired on worker ' || j.worker_id,
               errors = j.errors || sluice.attempt_error(j.attempts, j.worker_id,
                            'lease expired on worker ' || j.worker_id),
               claim_token = NULL, worker_id = NULL, locked_until = NULL
         WHERE j.id = ANY (v_ids) AND j.attempts < j.max_attempts
        RETURNING j.id, j.run_at, j.org_id, j.priority),
    lanes AS (INSERT INTO sluice.job_lane (org_id, priority)
              SELECT DISTINCT org_id, priority FROM u ON CONFLICT DO NOTHING)
    SELECT v_n + count(*), min(u.run_at) INTO v_n, v_first_run FROM u;

    IF v_first_run IS NOT NULL THEN
        PERFORM sluice.wake_workers(v_first_run);
    END IF;
    RETURN v_n;
END $$;

-- When something next needs a worker: the earliest future run_at of a queued
-- job, or the earliest lease expiry (after this session's last sweep, see
-- reap_expired_leases).  NULL when nothing is pending.
CREATE FUNCTION sluice.next_wakeup()
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
                                           '-infinity')::timestamptz));
$$;

-- Registers a worker process (idempotent: a restarted worker with the same id
-- simply re-registers).
CREATE FUNCTION sluice.worker_register(p_worker text, p_host text, p_pid integer,
                                       p_version text DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO sluice.worker (id, host, pid, version)
    VALUES (p_worker, p_host, p_pid, p_version)
    ON CONFLICT (id) DO UPDATE
       SET host = excluded.host, pid = excluded.pid, version = excluded.version,
           started_at = now(), last_heartbeat_at = now(), stopped_at = NULL,
           waiting_until = NULL;
$$;

CREATE FUNCTION sluice.worker_stop(p_worker text)
RETURNS void LANGUAGE sql AS $$
    UPDATE sluice.worker SET stopped_at = now(), waiting_until = NULL
     WHERE id = p_worker;
$$;

-- A worker about to sleep (DESIGN 5 and 6).  First puts back jobs whose
-- lease ran out (an idle worker wakes for the earliest lease expiry, so this
-- is where lost jobs come back).  Then records when the worker will wake by
-- itself (the next wake-up, but no later than p_max_sleep from now) and
-- whether it may sleep: false means a producer is mid-transaction, so the
-- worker should look at the queue again shortly instead.  After a true
-- answer the worker must claim once more before it sleeps.
CREATE FUNCTION sluice.worker_idle(p_worker text, p_max_sleep interval)
RETURNS TABLE (wake_at timestamptz, may_sleep boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_wake timestamptz;
BEGIN
    PERFORM sluice.reap_expired_leases();
    v_wake := least(sluice.next_wakeup(), clock_timestamp() + p_max_sleep);
    UPDATE sluice.worker
       SET waiting_until = v_wake, last_heartbeat_at = now(), stopped_at = NULL
     WHERE id = p_worker;
    RETURN QUERY SELECT v_wake, pg_try_advisory_xact_lock(sluice.wake_lock_key());
END $$;

-- Deletes one batch of archived jobs older than the retention period.
-- Returns how many it deleted; call again while that equals the batch size.
CREATE FUNCTION sluice.prune_finished(p_batch integer DEFAULT NULL)
RETURNS integer LANGUAGE sql AS $$
    WITH d AS (
        DELETE FROM sluice.job_archive
         WHERE id IN (SELECT id FROM sluice.job_archive
                       WHERE finished_at < (SELECT now() - sluice.setting_interval('retention'))
                       ORDER BY finished_at
                       LIMIT coalesce(p_batch, sluice.setting_int('prune_batch'))
                       FOR UPDATE SKIP LOCKED)
        RETURNING 1)
    SELECT count(*)::integer FROM d;
$$;

-- Housekeeping any worker may run at any time; concurrent calls are
-- harmless.  Drops lanes that hold no queued job (only while no producer is
-- mid-transaction: a producer may be adding a job to the lane) and returns
-- the number of lanes dropped.
CREATE FUNCTION sluice.drop_empty_lanes()
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_n integer := 0;
BEGIN
    IF pg_try_advisory_xact_lock(sluice.wake_lock_key()) THEN
        WITH d AS (
            DELETE FROM sluice.job_lane l
             WHERE NOT EXISTS (SELECT 1 FROM sluice.job j
                                WHERE j.state <> 'running' AND j.org_id = l.org_id
                                  AND j.priority = l.priority)
            RETURNING 1)
        SELECT count(*) INTO v_n FROM d;
    END IF;
    RETURN v_n;
END $$;
