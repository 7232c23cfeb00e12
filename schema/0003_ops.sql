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

-- Live jobs counted by state, kind, priority and org.  runnable says whether
-- run_at has come (a queued job that is not runnable yet is scheduled).
CREATE VIEW sluice.queue_depth AS
SELECT state, kind, priority, org_id,
       state <> 'running' AND run_at <= now() AS runnable,
       count(*) AS jobs
  FROM sluice.job
 GROUP BY 1, 2, 3, 4, 5;

-- How long the oldest runnable job has waited, by kind and priority.
CREATE VIEW sluice.queue_lag AS
SELECT kind, priority, count(*) AS runnable,
       min(run_at) AS oldest_run_at, now() - min(run_at) AS oldest_wait
  FROM sluice.job
 WHERE state <> 'running' AND run_at <= now()
 GROUP BY kind, priority;

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
 WHERE state = 'dead';

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

-- How many runnable jobs a claim will take before job p_id, following the
-- claim order of DESIGN 2 in 0002_queue.sql: every runnable job of a higher
-- priority, the jobs ahead of it in its own lane, and from each other lane
-- of its priority as many jobs as it has ahead in its own lane (round-robin).
-- NULL when the job is not waiting to run.
CREATE FUNCTION sluice.jobs_ahead(p_id bigint)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    j      sluice.job;
    v_rank bigint;
BEGIN
    SELECT * INTO j FROM sluice.job WHERE id = p_id AND state <> 'running';
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT count(*) INTO v_rank FROM sluice.job
     WHERE state <> 'running' AND org_id = j.org_id AND priority = j.priority
       AND run_at <= now() AND (run_at, id) < (j.run_at, j.id);
    RETURN v_rank
         + (SELECT count(*) FROM sluice.job
             WHERE state <> 'running' AND priority < j.priority AND run_at <= now())
         + (SELECT coalesce(sum(least(n, v_rank)), 0)
              FROM (SELECT count(*) AS n FROM sluice.job
                     WHERE state <> 'running' AND priority = j.priority
                       AND org_id <> j.org_id AND run_at <= now()
                     GROUP BY org_id) o);
END $$;

-- Completions per second to expect: the last minute's rate, or failing that
-- live workers over the last hour's mean job duration.  NULL when unknown.
CREATE FUNCTION sluice.expected_rate()
RETURNS double precision LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        nullif((SELECT count(*) FROM sluice.job_archive
                 WHERE finished_at > now() - interval '1 minute'), 0) / 60.0,
        sluice.live_worker_count() /
            nullif((SELECT extract(epoch FROM avg(finished_at - started_at))
                      FROM sluice.job_archive
                     WHERE finished_at > now() - interval '1 hour'
                       AND started_at IS NOT NULL), 0));
$$;

-- The queue as one org sees it (the shape of seed 001's queue status):
-- runnable jobs in all, the org's own, the claim positions of its first
-- p_limit jobs (1 = next to be claimed), and the estimated wait of the last
-- of those.
CREATE FUNCTION sluice.queue_status(p_org bigint, p_limit integer DEFAULT 100)
RETURNS TABLE (total_queued bigint, your_requests bigint, positions bigint[],
               estimated_wait_seconds integer)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    v_positions bigint[];
    v_rate      double precision := sluice.expected_rate();
BEGIN
    SELECT coalesce(array_agg(p ORDER BY p), '{}') INTO v_positions
      FROM (SELECT sluice.jobs_ahead(id) + 1 AS p FROM sluice.job
             WHERE org_id = p_org AND state <> 'running' AND run_at <= now()
             ORDER BY priority, run_at, id
             LIMIT p_limit) x;
    RETURN QUERY SELECT
        (SELECT count(*) FROM sluice.job WHERE state <> 'running' AND run_at <= now()),
        (SELECT count(*) FROM sluice.job
          WHERE org_id = p_org AND state <> 'running' AND run_at <= now()),
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
        IF w.last_heartbeat_at < now() - sluice.setting_interval('worker_stale_after')
           OR j.locked_until < now() THEN
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
    SELECT count(*) INTO v_higher FROM sluice.job
     WHERE state <> 'running' AND priority < j.priority AND run_at <= now();
    RETURN QUERY SELECT j.state, format(
        'runnable and waiting for a worker: %s job(s) will be claimed before it '
        '(%s of higher priority, %s at its priority %s); %s worker(s) alive, '
        '%s job(s) running',
        v_ahead, v_higher, v_ahead - v_higher, j.priority,
        sluice.live_worker_count(),
        (SELECT count(*) FROM sluice.job WHERE state = 'running'));
END $$;

-- Puts a dead job back in the queue with a fresh set of attempts (its error
-- history is kept).  Returns false if p_id is not a dead job.
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
    INSERT INTO sluice.job_lane (org_id, priority) VALUES (a.org_id, a.priority)
    ON CONFLICT DO NOTHING;
    INSERT INTO sluice.job (id, org_id, connector_id, kind, payload, priority,
                            state, run_at, attempts, max_attempts, dedupe_key,
                            created_at, last_error, errors)
    VALUES (a.id, a.org_id, a.connector_id, a.kind, a.payload, a.priority,
            'queued', now(), 0, a.max_attempts, a.dedupe_key, a.created_at,
            a.last_error, a.errors);
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

CREATE FUNCTION sluice.pause_kind(p_kind text, p_reason text DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO sluice.pause (scope, name, reason) VALUES ('kind', p_kind, p_reason)
    ON CONFLICT (scope, name) DO UPDATE SET reason = excluded.reason;
$$;

CREATE FUNCTION sluice.pause_org(p_org bigint, p_reason text DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO sluice.pause (scope, name, reason) VALUES ('org', p_org::text, p_reason)
    ON CONFLICT (scope, name) DO UPDATE SET reason = excluded.reason;
$$;

-- Resuming wakes sleeping workers, and makes every session drop its claim
-- hints: the paused jobs may sit far behind them (DESIGN 3 in 0002_queue.sql).
CREATE FUNCTION sluice.resume_kind(p_kind text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM sluice.pause WHERE scope = 'kind' AND name = p_kind;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM sluice.rescan_all();
    PERFORM sluice.wake_workers(now());
    RETURN true;
END $$;

CREATE FUNCTION sluice.resume_org(p_org bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM sluice.pause WHERE scope = 'org' AND name = p_org::text;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM sluice.rescan_all();
    PERFORM sluice.wake_workers(now());
    RETURN true;
END $$;

-- Gauges for GET /metrics, one row per sample; the API renders them in the
-- Prometheus text format.  Labels are already in exposition syntax.
CREATE FUNCTION sluice.metrics()
RETURNS TABLE (name text, help text, type text, labels text, value double precision)
LANGUAGE sql STABLE AS $$
    SELECT 'sluice_jobs', 'Live jobs by state, kind and priority.', 'gauge',
           format('state="%s",kind="%s",priority="%s"',
                  CASE WHEN d.state = 'running' OR d.runnable THEN d.state
                       ELSE 'scheduled' END, d.kind, d.priority),
           sum(d.jobs)::double precision
      FROM sluice.queue_depth d GROUP BY 4
    UNION ALL
    SELECT 'sluice_oldest_runnable_job_age_seconds',
           'Age of the oldest runnable job, by kind.', 'gauge',
           format('kind="%s"', kind),
           extract(epoch FROM max(oldest_wait))::double precision
      FROM sluice.queue_lag GROUP BY kind
    UNION ALL
    SELECT 'sluice_jobs_finished_last_minute', 'Jobs ended in the last minute.', 'gauge',
           format('state="%s"', s.state),
           (SELECT count(*) FROM sluice.job_archive a
             WHERE a.state = s.state AND a.finished_at > now() - interval '1 minute')
      FROM unnest(ARRAY['done', 'dead', 'cancelled']) AS s(state)
    UNION ALL
    SELECT 'sluice_workers', 'Registered workers by status.', 'gauge',
           format('status="%s"', s.status),
           (SELECT count(*) FROM sluice.workers w WHERE w.status = s.status)
      FROM unnest(ARRAY['busy', 'idle', 'lost', 'stopped']) AS s(status);
$$;
