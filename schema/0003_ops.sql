-- 0003_ops.sql — the operator's interface: views and functions to see what
-- the queue is doing and why, and to steer it.  docs/ops.md shows them in use.
-- These names are a public interface, as stable as the HTTP API.

-- Every job, live or ended, in one shape.
CREATE VIEW sluice.jobs AS
SELECT id, org_id, connector_id, kind, payload, priority, state, run_at,
       attempts, max_attempts, dedupe_key, worker_id, locked_until,
       created_at, started_at, NULL::timestamptz AS finished_at,
       NULL::jsonb AS result, last_error, errors, hold_reason
  FROM sluice.job
UNION ALL
SELECT id, org_id, connector_id, kind, payload, priority, state, run_at,
       attempts, max_attempts, dedupe_key, worker_id, NULL, created_at,
       started_at, finished_at, result, last_error, errors, NULL
  FROM sluice.job_archive;

-- Whether a kind or an org is paused (sluice.pause).
CREATE FUNCTION sluice.is_paused(p_kind text, p_org bigint)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM sluice.pause p
                    WHERE (p.scope = 'kind' AND p.name = p_kind)
                       OR (p.scope = 'org' AND p.name = p_org::text));
$$;

-- Whether a claim could take the job now: waiting, due, not paused.
CREATE FUNCTION sluice.is_runnable(j sluice.job)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT j.state <> 'running' AND j.run_at <= now()
           AND NOT sluice.is_paused(j.kind, j.org_id);
$$;

-- Live jobs counted by state, kind, priority and org.  paused: its kind or
-- org is paused.  runnable: a claim could take it now (waiting, due, not
-- paused); a waiting job that is neither is scheduled for later.
CREATE VIEW sluice.queue_depth AS
SELECT g.state, g.kind, g.priority, g.org_id, p.paused,
       g.state <> 'running' AND g.due AND NOT p.paused AS runnable,
       g.jobs
  FROM (SELECT state, kind, priority, org_id, run_at <= now() AS due, count(*) AS jobs
          FROM sluice.job
         GROUP BY 1, 2, 3, 4, 5) g
  -- Paused is decided per group, not per job: a view over a big backlog
  -- must not probe sluice.pause a hundred thousand times.
  CROSS JOIN LATERAL (SELECT sluice.is_paused(g.kind, g.org_id) AS paused) p;

-- How long the oldest runnable job has waited, by kind and priority.
CREATE VIEW sluice.queue_lag AS
SELECT j.kind, j.priority, count(*) AS runnable,
       min(j.run_at) AS oldest_run_at, now() - min(j.run_at) AS oldest_wait
  FROM sluice.job j
 WHERE sluice.is_runnable(j)
 GROUP BY j.kind, j.priority;

-- Workers with their last heartbeat and what they hold.
CREATE VIEW sluice.workers AS
SELECT w.id, w.host, w.pid, w.version, w.started_at, w.last_heartbeat_at,
       now() - w.last_heartbeat_at AS heartbeat_age,
       CASE WHEN w.stopped_at IS NOT NULL THEN 'stopped'
            WHEN w.last_heartbeat_at < now() - sluice.setting_interval('worker_stale_after')
                 THEN 'lost'
            WHEN w.waiting_until IS NOT NULL THEN 'idle'
            ELSE 'busy' END AS status,
       (SELECT count(*) FROM sluice.job j
         WHERE j.state = 'running' AND j.worker_id = w.id) AS jobs_held,
       w.stopped_at
  FROM sluice.worker w;

-- Running jobs with their worker and lease.
CREATE VIEW sluice.running_jobs AS
SELECT j.id, j.org_id, j.kind, j.priority, j.attempts, j.max_attempts,
       j.worker_id, w.host, w.pid, j.started_at,
       now() - j.started_at AS running_for,
       j.locked_until, j.locked_until - now() AS lease_left
  FROM sluice.job j
  LEFT JOIN sluice.worker w ON w.id = j.worker_id
 WHERE j.state = 'running';

-- Dead jobs with their errors, newest first.
CREATE VIEW sluice.dead_jobs AS
SELECT id, org_id, kind, priority, attempts, finished_at, last_error, errors,
       payload
  FROM sluice.job_archive
 WHERE state = 'dead'
 ORDER BY finished_at DESC;

-- Jobs ended in the last minute and hour, by kind (kind NULL: all kinds).
CREATE VIEW sluice.throughput AS
SELECT kind,
       count(*) FILTER (WHERE state = 'done' AND finished_at > now() - interval '1 minute')
           AS done_last_minute,
       count(*) FILTER (WHERE state = 'dead' AND finished_at > now() - interval '1 minute')
           AS dead_last_minute,
       count(*) FILTER (WHERE state = 'done') AS done_last_hour,
       count(*) FILTER (WHERE state = 'dead') AS dead_last_hour,
       round(count(*) FILTER (WHERE state = 'done'
                                AND finished_at > now() - interval '1 minute') / 60.0, 1)
           AS done_per_second_last_minute
  FROM sluice.job_archive
 WHERE finished_at > now() - interval '1 hour'
 GROUP BY ROLLUP (kind);

-- Live workers: registered, not stopped, heartbeat fresh.
CREATE FUNCTION sluice.live_worker_count()
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT count(*)::integer FROM sluice.worker
     WHERE stopped_at IS NULL
       AND last_heartbeat_at >= now() - sluice.setting_interval('worker_stale_after');
$$;

-- Where the org's waiting jobs stand in the claim order of DESIGN 2 in
-- 0002_queue.sql: for each of its first p_limit runnable jobs, how many
-- runnable jobs a claim takes before it — every one of a higher priority,
-- the ones ahead of it in its own lane, and from each other lane of its
-- priority as many as it has ahead in its own (round-robin).  Paused jobs
-- are not counted, as claims do not take them.
CREATE FUNCTION sluice.claim_positions(p_org bigint, p_limit integer DEFAULT 100)
RETURNS TABLE (job_id bigint, jobs_ahead bigint)
LANGUAGE sql STABLE AS $$
    WITH mine AS MATERIALIZED (
        SELECT j.id, j.priority,
               row_number() OVER (PARTITION BY j.priority ORDER BY j.run_at, j.id) - 1 AS rank
          FROM sluice.job j
         WHERE j.org_id = p_org AND sluice.is_runnable(j)
         ORDER BY j.priority, j.run_at, j.id
         LIMIT p_limit),
    prios AS MATERIALIZED (
        SELECT priority, max(rank) AS max_rank FROM mine GROUP BY priority),
    -- Materialized: each is read once per listed job below.
    higher AS MATERIALIZED (
        SELECT p.priority,
               (SELECT count(*) FROM sluice.job j
                 WHERE j.priority < p.priority AND sluice.is_runnable(j)) AS n
          FROM prios p),
    -- Other orgs' lanes at those priorities, each counted only as far as
    -- round-robin could matter (max_rank jobs).
    others AS MATERIALIZED (
        SELECT l.priority,
               (SELECT count(*) FROM (SELECT 1 FROM sluice.job j
                                       WHERE j.org_id = l.org_id AND j.priority = l.priority
                                         AND sluice.is_runnable(j)
                                       LIMIT p.max_rank) x) AS n
          FROM sluice.job_lane l JOIN prios p ON p.priority = l.priority
         WHERE l.org_id <> p_org AND NOT sluice.is_paused(NULL, l.org_id))
    SELECT m.id,
           m.rank + h.n + coalesce((SELECT sum(least(o.n, m.rank)) FROM others o
                                     WHERE o.priority = m.priority), 0)
      FROM mine m JOIN higher h ON h.priority = m.priority
     ORDER BY m.priority, m.rank;
$$;

-- How many runnable jobs a claim will take before job p_id (see
-- claim_positions); NULL when the job is not waiting to run.
CREATE FUNCTION sluice.jobs_ahead(p_id bigint)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT p.jobs_ahead
      FROM sluice.job j,
           LATERAL sluice.claim_positions(j.org_id, 100000) p
     WHERE j.id = p_id AND p.job_id = p_id;
$$;

-- Completions per second to expect from the workers alive now: the last
-- minute's rate, else (nothing ended in the last minute) live workers over
-- the mean duration of the jobs running now.  NULL when no worker is alive
-- or nothing is known.
CREATE FUNCTION sluice.expected_rate()
RETURNS double precision LANGUAGE sql STABLE AS $$
    WITH live AS (SELECT sluice.live_worker_count() AS n),
    recent AS (
        SELECT count(*) AS done,
               avg(extract(epoch FROM finished_at - started_at)) AS mean_s
          FROM sluice.job_archive
         WHERE finished_at > now() - interval '1 minute' AND started_at IS NOT NULL),
    running AS (
        SELECT avg(extract(epoch FROM now() - started_at)) AS mean_s
          FROM sluice.job WHERE state = 'running')
    SELECT CASE
        WHEN live.n = 0 THEN NULL
        WHEN recent.done > 0 THEN recent.done / 60.0
        ELSE live.n / nullif(greatest(coalesce(recent.mean_s, 0), coalesce(running.mean_s, 0)), 0)
        END
      FROM live, recent, running;
$$;

-- The queue as one org sees it (the shape of seed 001's queue status):
-- runnable jobs in all, the org's own, the claim positions of its first
-- p_limit jobs (1 = next to be claimed), and the estimated wait of the last
-- of those (NULL when no worker is alive or the rate is unknown).
CREATE FUNCTION sluice.queue_status(p_org bigint, p_limit integer DEFAULT 100)
RETURNS TABLE (total_queued bigint, your_requests bigint, positions bigint[],
               estimated_wait_seconds integer)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    v_positions bigint[];
    v_rate      double precision := sluice.expected_rate();
BEGIN
    SELECT coalesce(array_agg(jobs_ahead + 1 ORDER BY jobs_ahead), '{}') INTO v_positions
      FROM sluice.claim_positions(p_org, p_limit);
    RETURN QUERY SELECT
        (SELECT count(*) FROM sluice.job j WHERE sluice.is_runnable(j)),
        (SELECT count(*) FROM sluice.job j WHERE j.org_id = p_org AND sluice.is_runnable(j)),
        v_positions,
        CASE WHEN cardinality(v_positions) = 0 THEN 0
             WHEN v_rate IS NULL OR v_rate = 0 THEN NULL
             ELSE ceil(v_positions[cardinality(v_positions)] / v_rate)::integer END;
END $$;

-- Why is job p_id not running?  One row: the job's state and a sentence that
-- names the reason.
CREATE FUNCTION sluice.why(p_id bigint)
RETURNS TABLE (state text, reason text)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    j        sluice.job;
    a        sluice.job_archive;
    w        sluice.worker;
    v_ahead  bigint;
    v_higher bigint;
    v_pause  sluice.pause;
BEGIN
    SELECT * INTO j FROM sluice.job WHERE id = p_id;
    IF NOT FOUND THEN
        SELECT * INTO a FROM sluice.job_archive WHERE id = p_id;
        IF NOT FOUND THEN
            RETURN QUERY SELECT NULL::text,
                format('no job %s: never existed, or ended and was pruned', p_id);
        ELSIF a.state = 'done' THEN
            RETURN QUERY SELECT a.state,
                format('done at %s after %s attempt(s)', a.finished_at, a.attempts);
        ELSIF a.state = 'dead' AND a.dedupe_key IS NOT NULL AND EXISTS (
                  SELECT 1 FROM sluice.job x
                   WHERE x.org_id = a.org_id AND x.dedupe_key = a.dedupe_key) THEN
            RETURN QUERY SELECT a.state,
                format('dead after %s attempt(s), last error: %s; live job %s holds its '
                       'dedupe key and does the same work', a.attempts, a.last_error,
                       (SELECT x.id FROM sluice.job x
                         WHERE x.org_id = a.org_id AND x.dedupe_key = a.dedupe_key));
        ELSIF a.state = 'dead' THEN
            RETURN QUERY SELECT a.state,
                format('dead after %s attempt(s), last error: %s; retry it with '
                       'SELECT sluice.retry_dead_job(%s)', a.attempts, a.last_error, p_id);
        ELSE
            RETURN QUERY SELECT a.state, format('cancelled at %s', a.finished_at);
        END IF;
        RETURN;
    END IF;

    IF j.state = 'running' THEN
        SELECT * INTO w FROM sluice.worker WHERE id = j.worker_id;
        IF j.locked_until < now() THEN
            RETURN QUERY SELECT j.state, format(
                'claimed by worker %s, whose lease on it ran out at %s (last heartbeat %s); '
                'the next worker to look for expired leases puts it back (within seconds)',
                j.worker_id, j.locked_until, w.last_heartbeat_at);
        ELSIF w.last_heartbeat_at < now() - sluice.setting_interval('worker_stale_after') THEN
            RETURN QUERY SELECT j.state, format(
                'claimed by worker %s, which looks lost (last heartbeat %s); '
                'the job goes back to the queue when its lease ends at %s',
                j.worker_id, w.last_heartbeat_at, j.locked_until);
        ELSE
            RETURN QUERY SELECT j.state, format(
                'running on worker %s (host %s, pid %s) since %s, attempt %s of %s; lease until %s',
                j.worker_id, w.host, w.pid, j.started_at, j.attempts,
                j.max_attempts, j.locked_until);
        END IF;
        RETURN;
    END IF;

    SELECT * INTO v_pause FROM sluice.pause WHERE scope = 'kind' AND name = j.kind;
    IF FOUND THEN
        RETURN QUERY SELECT j.state, format('kind %s is paused since %s%s; '
            'resume it with SELECT sluice.resume_kind(%L)', j.kind, v_pause.paused_at,
            coalesce(' (' || v_pause.reason || ')', ''), j.kind);
        RETURN;
    END IF;
    SELECT * INTO v_pause FROM sluice.pause WHERE scope = 'org' AND name = j.org_id::text;
    IF FOUND THEN
        RETURN QUERY SELECT j.state, format('org %s is paused since %s%s; '
            'resume it with SELECT sluice.resume_org(%s)', j.org_id, v_pause.paused_at,
            coalesce(' (' || v_pause.reason || ')', ''), j.org_id);
        RETURN;
    END IF;

    IF j.run_at > now() THEN
        IF j.hold_reason IS NOT NULL THEN
            RETURN QUERY SELECT j.state, format('held until %s (in %s): %s',
                j.run_at, date_trunc('second', j.run_at - now()), j.hold_reason);
        ELSIF j.state = 'retrying' THEN
            RETURN QUERY SELECT j.state, format(
                'attempt %s of %s failed (%s); next attempt at %s (in %s)',
                j.attempts, j.max_attempts, j.last_error, j.run_at,
                date_trunc('second', j.run_at - now()));
        ELSE
            RETURN QUERY SELECT j.state, format('run_at is in the future: %s (in %s)',
                j.run_at, date_trunc('second', j.run_at - now()));
        END IF;
        RETURN;
    END IF;

    IF sluice.live_worker_count() = 0 THEN
        RETURN QUERY SELECT j.state,
            'runnable, but no worker is alive: start sluice-worker'::text;
        RETURN;
    END IF;

    v_ahead := sluice.jobs_ahead(p_id);
    SELECT count(*) INTO v_higher FROM sluice.job x
     WHERE x.priority < j.priority AND sluice.is_runnable(x);
    RETURN QUERY SELECT j.state, format(
        'runnable and waiting for a worker: %s job(s) will be claimed before it '
        '(%s of higher priority, %s at its priority %s); %s worker(s) alive, '
        '%s job(s) running',
        v_ahead, v_higher, v_ahead - v_higher, j.priority,
        sluice.live_worker_count(),
        (SELECT count(*) FROM sluice.job WHERE state = 'running'));
END $$;

-- Puts a dead job back in the queue with a fresh set of attempts (its error
-- history is kept).  Returns false if p_id is not a dead job, or if a live
-- job holds its dedupe key (that job is the same work, queued again).
CREATE FUNCTION sluice.retry_dead_job(p_id bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    a sluice.job_archive;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(sluice.wake_lock_key());
    DELETE FROM sluice.job_archive WHERE id = p_id AND state = 'dead' RETURNING * INTO a;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF a.dedupe_key IS NOT NULL AND EXISTS (
           SELECT 1 FROM sluice.job WHERE org_id = a.org_id AND dedupe_key = a.dedupe_key) THEN
        RAISE NOTICE 'job % not retried: live job % holds its dedupe key', p_id,
            (SELECT id FROM sluice.job WHERE org_id = a.org_id AND dedupe_key = a.dedupe_key);
        INSERT INTO sluice.job_archive SELECT a.*;
        RETURN false;
    END IF;
    INSERT INTO sluice.job_lane (org_id, priority) VALUES (a.org_id, a.priority)
    ON CONFLICT DO NOTHING;
    INSERT INTO sluice.job (id, org_id, connector_id, kind, payload, priority,
                            state, run_at, attempts, max_attempts, dedupe_key,
                            created_at, last_error, errors)
    VALUES (a.id, a.org_id, a.connector_id, a.kind, a.payload, a.priority,
            CASE WHEN a.errors = '[]' THEN 'queued' ELSE 'retrying' END, clock_timestamp(),
            0, a.max_attempts, a.dedupe_key, a.created_at, a.last_error, a.errors);
    PERFORM sluice.wake_workers(now());
    RETURN true;
END $$;

-- Retries every dead job of a kind and/or org (NULL: any) that died at or
-- after p_since.  Returns how many.
CREATE FUNCTION sluice.retry_dead_jobs(p_kind text DEFAULT NULL, p_org bigint DEFAULT NULL,
                                       p_since timestamptz DEFAULT '-infinity')
RETURNS integer LANGUAGE sql AS $$
    SELECT count(*) FILTER (WHERE sluice.retry_dead_job(id))::integer
      FROM sluice.job_archive
     WHERE state = 'dead' AND finished_at >= p_since
       AND (p_kind IS NULL OR kind = p_kind)
       AND (p_org IS NULL OR org_id = p_org);
$$;

-- Cancels a live job, whatever its state.  A running job's worker finds out
-- at its next heartbeat or when its completion is refused.  Returns false if
-- the job is not live (unknown, or already ended).
CREATE FUNCTION sluice.cancel_job(p_id bigint, p_reason text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_rows sluice.job[];
BEGIN
    WITH d AS (DELETE FROM sluice.job j WHERE j.id = p_id RETURNING j)
    SELECT array_agg(d.j) INTO v_rows FROM d;
    IF v_rows IS NULL THEN
        RETURN false;
    END IF;
    PERFORM sluice.archive_jobs(v_rows, 'cancelled',
        ARRAY[jsonb_build_object('cancelled', coalesce(p_reason, 'cancelled by operator'))]);
    RETURN true;
END $$;

-- Pauses or resumes one kind or org (scope 'kind' or 'org').  Resuming wakes
-- sleeping workers and makes every session drop its claim hints: the paused
-- jobs may sit far behind them (DESIGN 3 in 0002_queue.sql).  Returns
-- whether anything changed.
CREATE FUNCTION sluice.set_paused(p_scope text, p_name text, p_paused boolean,
                                  p_reason text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF p_scope = 'org' THEN
        p_name := p_name::bigint::text;   -- '007' is org 7
    END IF;
    IF p_paused THEN
        INSERT INTO sluice.pause (scope, name, reason) VALUES (p_scope, p_name, p_reason)
        ON CONFLICT (scope, name) DO UPDATE SET reason = excluded.reason;
        RETURN true;
    END IF;
    DELETE FROM sluice.pause WHERE scope = p_scope AND name = p_name;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM sluice.rescan_all();
    PERFORM sluice.wake_workers(now());
    RETURN true;
END $$;

CREATE FUNCTION sluice.pause_kind(p_kind text, p_reason text DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$ SELECT sluice.set_paused('kind', p_kind, true, p_reason) $$;

CREATE FUNCTION sluice.pause_org(p_org bigint, p_reason text DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$ SELECT sluice.set_paused('org', p_org::text, true, p_reason) $$;

CREATE FUNCTION sluice.resume_kind(p_kind text)
RETURNS boolean LANGUAGE sql AS $$ SELECT sluice.set_paused('kind', p_kind, false) $$;

CREATE FUNCTION sluice.resume_org(p_org bigint)
RETURNS boolean LANGUAGE sql AS $$ SELECT sluice.set_paused('org', p_org::text, false) $$;

-- Forgets workers that stopped, or were lost, more than p_older_than ago.
-- Housekeeping calls it; returns how many rows went.
CREATE FUNCTION sluice.forget_workers(p_older_than interval DEFAULT '1 day')
RETURNS integer LANGUAGE sql AS $$
    WITH d AS (
        DELETE FROM sluice.worker w
         WHERE coalesce(w.stopped_at, w.last_heartbeat_at) < now() - p_older_than
           AND NOT EXISTS (SELECT 1 FROM sluice.job j
                            WHERE j.state = 'running' AND j.worker_id = w.id)
        RETURNING 1)
    SELECT count(*)::integer FROM d;
$$;

-- Gauges for GET /metrics, one row per sample; the API renders them in the
-- Prometheus text format.  Labels are already in exposition syntax (kinds
-- cannot hold a quote or backslash: see the CHECK on sluice.job.kind).
-- p_org limits the job figures to one org (the API passes the caller's);
-- NULL, for an operator at psql, counts every org.  Worker figures are
-- shared by all orgs and hold no tenant's data.
CREATE FUNCTION sluice.metrics(p_org bigint DEFAULT NULL)
RETURNS TABLE (name text, help text, type text, labels text, value double precision)
LANGUAGE sql STABLE AS $$
    SELECT 'sluice_jobs', 'Live jobs by state, kind and priority.', 'gauge',
           format('state="%s",kind="%s",priority="%s"',
                  CASE WHEN d.state = 'running' OR d.runnable THEN d.state
                       WHEN d.paused THEN 'paused'
                       ELSE 'scheduled' END, d.kind, d.priority),
           sum(d.jobs)::double precision
      FROM sluice.queue_depth d
     WHERE p_org IS NULL OR d.org_id = p_org
     GROUP BY 4
    UNION ALL
    SELECT 'sluice_oldest_runnable_job_age_seconds',
           'Age of the oldest runnable job, by kind.', 'gauge',
           format('kind="%s"', j.kind),
           extract(epoch FROM now() - min(j.run_at))::double precision
      FROM sluice.job j
     WHERE sluice.is_runnable(j) AND (p_org IS NULL OR j.org_id = p_org)
     GROUP BY j.kind
    UNION ALL
    SELECT 'sluice_jobs_finished_last_minute', 'Jobs ended in the last minute.', 'gauge',
           format('state="%s"', s.state),
           (SELECT count(*) FROM sluice.job_archive a
             WHERE a.state = s.state AND a.finished_at > now() - interval '1 minute'
               AND (p_org IS NULL OR a.org_id = p_org))
      FROM unnest(ARRAY['done', 'dead', 'cancelled']) AS s(state)
    UNION ALL
    SELECT 'sluice_workers', 'Registered workers by status.', 'gauge',
           format('status="%s"', s.status),
           (SELECT count(*) FROM sluice.workers w WHERE w.status = s.status)
      FROM unnest(ARRAY['busy', 'idle', 'lost', 'stopped']) AS s(status);
$$;
