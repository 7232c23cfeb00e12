-- 0008_fetch_requests.sql — seed 001's fetch requests: similar requests share
-- one outside call, results are kept in PostgreSQL, and an open circuit
-- answers from what was fetched before.
--
-- DESIGN
--
-- 1. Requests and batches.  A request (sluice.connector_request, seed 001's
--    connector_requests) asks for one report of one connector over a date
--    range, with some fields.  It is fetched by a batch (sluice.fetch_batch):
--    the outside calls for one report type over one date range.  A request
--    joins a batch of the same connector and report type whose range overlaps
--    its own, made less than fetch_batch_window ago (5 minutes), that has not
--    started: the batch's range grows to the union, its fields to the union,
--    its priority to the highest.  Otherwise the request makes a batch.  The
--    batch row is the lock: a join locks it and requires state 'queued'; the
--    first page's job moves it to 'running' under the same lock before it
--    calls out, so a request arriving once the call has started never joins.
--    Submissions for one connector and report type also take a transaction
--    advisory lock, so two that arrive together share one batch.
--
-- 2. One job per page.  A batch is fetched by report.fetch jobs, one per
--    page (payload {"batch_id", "page"}), each a gated job of cost 1 (0006):
--    every outside call waits for the rate limit, and for the circuit (0007),
--    like any other.  A page's rows, the batch's cursor (next_page) and the
--    next page's job are written in one transaction (fetch_page_store), so a
--    page is stored exactly once: a job run again after its worker died finds
--    next_page past it and does nothing.  A worker holds one page at a time.
--
-- 3. Results.  Rows are stored once per batch (sluice.fetched_row, with the
--    day each row is about); a request's rows are the batch's rows within
--    its own range, with its own fields (fetch_row_for).  When the last page
--    is stored every request of the batch is completed together:
--    records_fetched, size_bytes (its rows as JSON text), storage_location,
--    execution_time_ms (the batch's first call to its last page stored),
--    cost (the batch's outside calls, shared equally by its requests) and a
--    data_fetched event each.  A page job that ends without success (dead
--    after its attempts, or cancelled) fails the batch and its requests with
--    the job's last error, and emits fetch_failed (a trigger on the archive).
--
-- 4. Priorities.  Seed 001's classes are the queue's priorities: 1 premium
--    manual, 2 manual, 3 scheduled, 4 retry, 5 backfill (priority_class()
--    takes their names).  A batch runs at the highest priority of its
--    requests.  A failed attempt's retry drops to class 4: the kind policy's
--    retry_priority, which report.fetch sets to 4 and any kind may set.
--
-- 5. Stale answers.  While the connector's circuit is not closed, a request
--    that a completed batch covers (its range within the batch's, its
--    fields among the batch's) is answered at once from that batch's rows:
--    status completed, stale, "Data may be stale", no outside call.
--
-- 6. Position and wait (request_place).  A gated job's position is its place
--    in its bucket's order (priority, gate_after, id); its wait is when the
--    bucket's windows let that many more calls go (rate_call_at, counting
--    each call in its slot as the claim does), and no sooner than the
--    bucket's block or the circuit's next trial.  A job without a bucket:
--    its claim position (jobs_ahead, 0003) over the workers' expected rate.
--    Only the calls known now are counted: a report of several pages makes
--    the requests behind it wait a little longer than said.

INSERT INTO sluice.setting (name, value, kind, description) VALUES
 ('fetch_batch_window', '5 minutes', 'interval',
  'How long after a batch''s first request others may join it (seed 001''s batch_window).'),
 ('fetch_retention', '7 days', 'interval',
  'How long the rows of a finished fetch batch are kept in sluice.fetched_row.');

-- A kind's failed attempts may retry at a lower priority (DESIGN 4).
ALTER TABLE sluice.kind_policy
    ADD COLUMN retry_priority smallint CHECK (retry_priority BETWEEN 1 AND 5);

INSERT INTO sluice.kind_policy (kind, timeout, max_attempts, retry_priority) VALUES
 ('report.fetch', '5 minutes', 5, 4);

-- ---- tables ------------------------------------------------------------------

CREATE TABLE sluice.fetch_batch (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id        bigint NOT NULL REFERENCES sluice.org ON DELETE CASCADE,
    connector_id  uuid NOT NULL REFERENCES sluice.connector ON DELETE CASCADE,
    report_type   text NOT NULL,
    range_start   date NOT NULL,
    range_end     date NOT NULL CHECK (range_end >= range_start),
    fields        text[] NOT NULL DEFAULT '{}',   -- '{}': every field
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'completed', 'failed')),
    job_id        bigint,                          -- the page job queued or running
    next_page     integer NOT NULL DEFAULT 1,
    pages_total   integer,
    calls         integer NOT NULL DEFAULT 0,
    rows_stored   bigint NOT NULL DEFAULT 0,
    error         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    rows_pruned_at timestamptz
);
-- Batches a request may join (DESIGN 1), and completed ones that may answer
-- while a circuit is open (DESIGN 5).
CREATE INDEX fetch_batch_open_idx ON sluice.fetch_batch (connector_id, report_type, created_at)
    WHERE state = 'queued';
CREATE INDEX fetch_batch_done_idx ON sluice.fetch_batch (connector_id, report_type, finished_at)
    WHERE state = 'completed' AND rows_pruned_at IS NULL;

CREATE TABLE sluice.connector_request (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id             bigint NOT NULL REFERENCES sluice.org ON DELETE CASCADE,
    connector_id       uuid NOT NULL REFERENCES sluice.connector ON DELETE CASCADE,
    request_type       text NOT NULL,           -- the report type
    params             jsonb NOT NULL,          -- {"date_range": {...}, "fields": [...]}
    range_start        date NOT NULL,
    range_end          date NOT NULL CHECK (range_end >= range_start),
    fields             text[] NOT NULL DEFAULT '{}',
    priority           smallint NOT NULL CHECK (priority BETWEEN 1 AND 5),
    status             text NOT NULL DEFAULT 'queued'
                       CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    -- The batch that fetches it, or for a stale answer the one it is answered from.
    batch_id           uuid NOT NULL REFERENCES sluice.fetch_batch ON DELETE CASCADE,
    stale              boolean NOT NULL DEFAULT false,
    result             jsonb,
    error              text,
    execution_time_ms  integer,
    cost               numeric(10,4),
    created_at         timestamptz NOT NULL DEFAULT now(),
    started_at         timestamptz,
    completed_at       timestamptz
);
CREATE INDEX connector_request_batch_idx ON sluice.connector_request (batch_id);
CREATE INDEX connector_request_org_idx ON sluice.connector_request (org_id, created_at);

CREATE TABLE sluice.fetched_row (
    batch_id  uuid NOT NULL REFERENCES sluice.fetch_batch ON DELETE CASCADE,
    row_no    bigint NOT NULL,
    row_date  date,          -- the row's "date", when it has one; NULL rows belong to every request
    data      jsonb NOT NULL,
    PRIMARY KEY (batch_id, row_no)
);

-- ---- small pieces ------------------------------------------------------------

-- Seed 001's priority classes by name or number (DESIGN 4).  "normal", the
-- seed's example, is a standard manual request.  Raises 22023 naming the
-- field "priority" for anything else.
CREATE FUNCTION sluice.priority_class(p_name text)
RETURNS smallint LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v smallint := CASE lower(coalesce(p_name, 'normal'))
        WHEN 'premium' THEN 1 WHEN '1' THEN 1
        WHEN 'manual' THEN 2 WHEN 'normal' THEN 2 WHEN '2' THEN 2
        WHEN 'scheduled' THEN 3 WHEN '3' THEN 3
        WHEN 'retry' THEN 4 WHEN '4' THEN 4
        WHEN 'backfill' THEN 5 WHEN '5' THEN 5 END;
BEGIN
    IF v IS NULL THEN
        RAISE EXCEPTION 'priority must be premium, manual, normal, scheduled, retry or backfill (or 1 to 5)'
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'priority';
    END IF;
    RETURN v;
END $$;

-- A day written YYYY-MM-DD, or NULL when the text is not one (a row's date
-- need not be: such a row belongs to every request of its batch).
CREATE FUNCTION sluice.day_or_null(p_text text)
RETURNS date LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_text ~ '^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])'
                 AND substr(p_text, 9, 2)::integer
                     <= extract(day FROM make_date(substr(p_text, 1, 4)::integer,
                                                   substr(p_text, 6, 2)::integer, 1)
                                         + interval '1 month - 1 day')
                 AND substr(p_text, 1, 4)::integer > 0
                THEN substr(p_text, 1, 10)::date END;
$$;

-- A row as a request with these fields sees it: "date" and its fields, or
-- all of it when it asked for every field.
CREATE FUNCTION sluice.fetch_row_for(p_fields text[], p_data jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN cardinality(p_fields) = 0 THEN p_data
                ELSE (SELECT coalesce(jsonb_object_agg(k, p_data -> k), '{}')
                        FROM unnest(array_prepend('date', p_fields)) k
                       WHERE p_data ? k) END;
$$;

-- One CSV field (RFC 4180): quoted when it holds a comma, quote, CR or LF,
-- or starts or ends with a space; NULL is empty.
CREATE FUNCTION sluice.csv_field(p_text text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_text IS NULL THEN ''
                WHEN p_text ~ '[",\r\n]' OR p_text ~ '^\s|\s$'
                THEN '"' || replace(p_text, '"', '""') || '"'
                ELSE p_text END;
$$;

-- A JSON value as a CSV cell's text: a string's own text, JSON otherwise.
CREATE FUNCTION sluice.csv_value(p_value jsonb)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE jsonb_typeof(p_value) WHEN 'string' THEN p_value #>> '{}'
                                      WHEN 'null' THEN NULL
                                      ELSE p_value::text END;
$$;

-- Raises a waiting job to a higher priority (lower number), in its lane.
CREATE FUNCTION sluice.raise_job_priority(p_job bigint, p_priority smallint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(sluice.wake_lock_key());
    WITH u AS (
        UPDATE sluice.job SET priority = p_priority
         WHERE id = p_job AND priority > p_priority AND state <> 'running'
        RETURNING org_id, priority)
    INSERT INTO sluice.job_lane (org_id, priority)
    SELECT org_id, priority FROM u ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM sluice.rescan_all();   -- its new lane's claim hints may be past it
    END IF;
END $$;

-- A failed attempt retries at its kind's retry_priority (DESIGN 4): a new
-- entry in errors is what marks a failed attempt going back to the queue.
CREATE FUNCTION sluice.job_retry_priority()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v smallint;
BEGIN
    IF NEW.errors IS DISTINCT FROM OLD.errors THEN
        SELECT retry_priority INTO v FROM sluice.kind_policy WHERE kind = NEW.kind;
        IF v > NEW.priority THEN
            NEW.priority := v;
        END IF;
    END IF;
    RETURN NEW;
END $$;

-- (A failure keeps its attempt counted; a retry_later or release gives it back.)
CREATE TRIGGER job_retry_priority BEFORE UPDATE OF errors ON sluice.job
    FOR EACH ROW WHEN (NEW.state = 'retrying' AND NEW.attempts = OLD.attempts)
    EXECUTE FUNCTION sluice.job_retry_priority();

-- ---- submitting -------------------------------------------------------------

-- A day from the API, or 22023 naming the field.
CREATE FUNCTION sluice.request_day(p_text text, p_field text)
RETURNS date LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v date := CASE WHEN length(p_text) = 10 THEN sluice.day_or_null(p_text) END;
BEGIN
    IF v IS NULL THEN
        RAISE EXCEPTION '% must be a date written YYYY-MM-DD', p_field
            USING ERRCODE = 'invalid_parameter_value', COLUMN = p_field;
    END IF;
    RETURN v;
END $$;

-- A connector's circuit is not closed.
CREATE FUNCTION sluice.circuit_is_open(p_connector uuid)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM sluice.circuit
                    WHERE connector_id = p_connector AND state <> 'closed');
$$;

-- Submits a fetch request of seed 001 (DESIGN 1 and 5) and returns its id,
-- or NULL when the org has no such connector.  Values are checked here, each
-- error raising 22023 with the field it is about.
CREATE FUNCTION sluice.submit_fetch(p_org bigint, p_connector uuid, p_report_type text,
                                    p_start text, p_end text, p_fields text[],
                                    p_priority text DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    c        sluice.connector;
    v_start  date := sluice.request_day(p_start, 'date_range.start');
    v_end    date := sluice.request_day(p_end, 'date_range.end');
    v_prio   smallint := sluice.priority_class(p_priority);
    v_fields text[];
    v_params jsonb;
    b        sluice.fetch_batch;
    v_job    bigint;
    v_id     uuid;
BEGIN
    IF p_report_type IS NULL OR p_report_type !~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$' THEN
        RAISE EXCEPTION 'report_type must be 1 to 100 letters, digits, "_", "." or "-"'
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'report_type';
    END IF;
    IF v_end < v_start OR v_end - v_start > 3660 THEN
        RAISE EXCEPTION 'date_range must end on or after its start, and span at most ten years'
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'date_range';
    END IF;
    IF cardinality(p_fields) > 200 OR EXISTS (
           SELECT 1 FROM unnest(p_fields) f WHERE f IS NULL OR f !~ '^[A-Za-z_][A-Za-z0-9_.]{0,99}$') THEN
        RAISE EXCEPTION 'fields must be at most 200 names of 1 to 100 letters, digits, "_" or "."'
            USING ERRCODE = 'invalid_parameter_value', COLUMN = 'fields';
    END IF;
    v_fields := ARRAY(SELECT DISTINCT f FROM unnest(coalesce(p_fields, '{}')) f ORDER BY f);

    SELECT * INTO c FROM sluice.connector
     WHERE id = p_connector AND org_id = p_org AND deleted_at IS NULL;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    v_params := jsonb_build_object('date_range', jsonb_build_object('start', v_start, 'end', v_end),
                                   'fields', to_jsonb(v_fields));

    -- An open circuit answers from a completed batch that covers the request.
    IF sluice.circuit_is_open(p_connector) THEN
        SELECT * INTO b FROM sluice.fetch_batch
         WHERE connector_id = p_connector AND report_type = p_report_type
           AND state = 'completed' AND rows_pruned_at IS NULL
           AND range_start <= v_start AND range_end >= v_end
           AND (fields = '{}' OR (v_fields <> '{}' AND fields @> v_fields))
         ORDER BY finished_at DESC
         LIMIT 1;
        IF FOUND THEN
            INSERT INTO sluice.connector_request (org_id, connector_id, request_type, params,
                   range_start, range_end, fields, priority, status, batch_id, stale,
                   execution_time_ms, cost, started_at, completed_at)
            VALUES (p_org, p_connector, p_report_type, v_params, v_start, v_end, v_fields,
                    v_prio, 'completed', b.id, true, 0, 0, clock_timestamp(), clock_timestamp())
            RETURNING id INTO v_id;
            UPDATE sluice.connector_request SET result = sluice.request_result(v_id) WHERE id = v_id;
            RETURN v_id;
        END IF;
    END IF;

    PERFORM pg_advisory_xact_lock(hashtextextended(
        format('sluice.fetch_batch %s %s', p_connector, p_report_type), 0));
    SELECT * INTO b FROM sluice.fetch_batch
     WHERE connector_id = p_connector AND report_type = p_report_type AND state = 'queued'
       AND range_start <= v_end AND range_end >= v_start
       AND created_at > clock_timestamp() - sluice.setting_interval('fetch_batch_window')
     ORDER BY created_at
     LIMIT 1
       FOR UPDATE;
    IF FOUND THEN
        UPDATE sluice.fetch_batch
           SET range_start = least(range_start, v_start), range_end = greatest(range_end, v_end),
               fields = CASE WHEN fields = '{}' OR v_fields = '{}' THEN '{}'
                             ELSE ARRAY(SELECT DISTINCT f FROM unnest(fields || v_fields) f
                                         ORDER BY f) END
         WHERE id = b.id;
        PERFORM sluice.raise_job_priority(b.job_id, v_prio);
    ELSE
        INSERT INTO sluice.fetch_batch (org_id, connector_id, report_type, range_start,
                                        range_end, fields)
        VALUES (p_org, p_connector, p_report_type, v_start, v_end, v_fields)
        RETURNING * INTO b;
        v_job := sluice.enqueue_limited(p_org, 'report.fetch',
                     jsonb_build_object('batch_id', b.id, 'page', 1), v_prio, p_connector,
                     c.type, p_report_type, 1);
        UPDATE sluice.fetch_batch SET job_id = v_job WHERE id = b.id;
    END IF;
    INSERT INTO sluice.connector_request (org_id, connector_id, request_type, params,
                                          range_start, range_end, fields, priority, batch_id)
    VALUES (p_org, p_connector, p_report_type, v_params, v_start, v_end, v_fields, v_prio, b.id)
    RETURNING id INTO v_id;
    RETURN v_id;
END $$;

-- ---- fetching: the report.fetch job ----------------------------------------

-- A page job starts (DESIGN 1 and 2): the batch becomes running (no request
-- joins it from now on) and its requests too.  Returns the batch as it is
-- to be fetched, or no row when this job has nothing to do: the batch is
-- not this org's, has ended, or is past this page already.
CREATE FUNCTION sluice.fetch_page_start(p_batch uuid, p_page integer, p_job bigint, p_org bigint)
RETURNS TABLE (connector_id uuid, report_type text, range_start date, range_end date,
               fields text[])
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    b sluice.fetch_batch;
BEGIN
    UPDATE sluice.fetch_batch
       SET state = 'running', started_at = coalesce(started_at, clock_timestamp()), job_id = p_job
     WHERE id = p_batch AND org_id = p_org AND state IN ('queued', 'running')
       AND next_page = p_page
    RETURNING * INTO b;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE sluice.connector_request SET status = 'running', started_at = clock_timestamp()
     WHERE batch_id = p_batch AND status = 'queued';
    RETURN QUERY SELECT b.connector_id, b.report_type, b.range_start, b.range_end, b.fields;
END $$;

-- Where a request's rows are: the table, its batch and its range.
CREATE FUNCTION sluice.request_storage_location(r sluice.connector_request)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT format('postgresql:sluice.fetched_row?batch_id=%s&from=%s&to=%s',
                  r.batch_id, r.range_start, r.range_end);
$$;

-- A request's rows, in order: its batch's rows in its range, with its fields.
CREATE FUNCTION sluice.request_rows(p_request uuid, p_after bigint DEFAULT 0,
                                    p_limit integer DEFAULT NULL)
RETURNS TABLE (row_no bigint, data jsonb)
LANGUAGE sql STABLE AS $$
    SELECT f.row_no, sluice.fetch_row_for(r.fields, f.data)
      FROM sluice.connector_request r
      JOIN sluice.fetched_row f ON f.batch_id = r.batch_id
     WHERE r.id = p_request AND f.row_no > coalesce(p_after, 0)
       AND (f.row_date IS NULL OR f.row_date BETWEEN r.range_start AND r.range_end)
     ORDER BY f.row_no
     LIMIT p_limit;
$$;

-- A completed request's result (seed 001): records_fetched, size_bytes,
-- storage_location, and where the API serves the rows.
CREATE FUNCTION sluice.request_result(p_request uuid)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
               'records_fetched', count(x.row_no),
               'size_bytes', coalesce(sum(octet_length(x.data::text)), 0),
               'storage_location', sluice.request_storage_location(r),
               'rows_url', format('/api/v1/connectors/requests/%s/rows', r.id))
      FROM sluice.connector_request r
      LEFT JOIN LATERAL sluice.request_rows(r.id) x ON true
     WHERE r.id = p_request
     GROUP BY r.id;
$$;

-- The last page is stored: every request of the batch is completed (DESIGN 3).
CREATE FUNCTION sluice.fetch_complete(p_batch uuid)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    b  sluice.fetch_batch;
    n  integer;
    r  record;
BEGIN
    UPDATE sluice.fetch_batch SET state = 'completed', finished_at = clock_timestamp(), job_id = NULL
     WHERE id = p_batch
    RETURNING * INTO b;
    SELECT count(*) INTO n FROM sluice.connector_request
     WHERE batch_id = p_batch AND NOT stale AND status = 'running';
    FOR r IN
        UPDATE sluice.connector_request q
           SET status = 'completed', completed_at = b.finished_at,
               execution_time_ms = least(extract(epoch FROM b.finished_at - b.started_at) * 1000,
                                         2147483647)::integer,
               cost = round(b.calls::numeric / greatest(n, 1), 4),
               result = sluice.request_result(q.id)
         WHERE q.batch_id = p_batch AND NOT q.stale AND q.status = 'running'
        RETURNING q.id, q.org_id, q.connector_id, q.request_type, q.result, q.cost
    LOOP
        PERFORM sluice.emit_event(r.org_id, 'data_fetched', r.connector_id,
            jsonb_build_object('request_id', r.id, 'batch_id', p_batch,
                               'report_type', r.request_type,
                               'records_fetched', r.result -> 'records_fetched',
                               'size_bytes', r.result -> 'size_bytes', 'cost', r.cost));
    END LOOP;
END $$;

-- Stores one page (DESIGN 2): its rows, the cursor, and the next page's job
-- or, after the last page, the results.  p_rows is the page's JSON array of
-- row objects.  Returns 'stored', 'completed', or 'skipped' when the batch
-- is not at this page (a page job run twice).
CREATE FUNCTION sluice.fetch_page_store(p_batch uuid, p_page integer, p_job bigint,
                                        p_pages_total integer, p_rows jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    b     sluice.fetch_batch;
    v_n   bigint;
    v_job bigint;
    v_type text;
BEGIN
    SELECT * INTO b FROM sluice.fetch_batch WHERE id = p_batch FOR UPDATE;
    IF NOT FOUND OR b.state <> 'running' OR b.next_page <> p_page THEN
        RETURN 'skipped';
    END IF;
    IF jsonb_typeof(p_rows) IS DISTINCT FROM 'array'
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(p_rows) e WHERE jsonb_typeof(e) <> 'object') THEN
        RAISE EXCEPTION 'a report page must be a JSON array of objects'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO sluice.fetched_row (batch_id, row_no, row_date, data)
    SELECT p_batch, b.rows_stored + x.o, sluice.day_or_null(x.e ->> 'date'), x.e
      FROM jsonb_array_elements(p_rows) WITH ORDINALITY AS x(e, o);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    UPDATE sluice.fetch_batch
       SET next_page = p_page + 1, pages_total = greatest(p_pages_total, p_page),
           calls = calls + 1, rows_stored = rows_stored + v_n
     WHERE id = p_batch;
    IF p_page < p_pages_total THEN
        SELECT type INTO v_type FROM sluice.connector WHERE id = b.connector_id;
        v_job := sluice.enqueue_limited(b.org_id, 'report.fetch',
                     jsonb_build_object('batch_id', b.id, 'page', p_page + 1),
                     (SELECT min(priority) FROM sluice.connector_request
                       WHERE batch_id = p_batch AND NOT stale),
                     b.connector_id, v_type, b.report_type, 1);
        UPDATE sluice.fetch_batch SET job_id = v_job WHERE id = p_batch;
        RETURN 'stored';
    END IF;
    PERFORM sluice.fetch_complete(p_batch);
    RETURN 'completed';
END $$;

-- A page job ended without success (DESIGN 3): its batch and requests fail
-- with its last error.  Runs for report.fetch rows entering the archive as
-- dead or cancelled.
CREATE FUNCTION sluice.fetch_job_ended()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_batch uuid;
    v_error text;
    r       record;
BEGIN
    IF NEW.payload ->> 'batch_id' !~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        RETURN NULL;
    END IF;
    v_error := coalesce(NEW.last_error, format('the fetch job was %s', NEW.state));
    UPDATE sluice.fetch_batch SET state = 'failed', error = v_error,
                                  finished_at = clock_timestamp(), job_id = NULL
     WHERE id = (NEW.payload ->> 'batch_id')::uuid AND org_id = NEW.org_id
       AND state IN ('queued', 'running') AND job_id = NEW.id
    RETURNING id INTO v_batch;
    IF v_batch IS NULL THEN
        RETURN NULL;
    END IF;
    FOR r IN
        UPDATE sluice.connector_request
           SET status = 'failed', error = v_error, completed_at = clock_timestamp()
         WHERE batch_id = v_batch AND status IN ('queued', 'running') AND NOT stale
        RETURNING id, org_id, connector_id, request_type
    LOOP
        PERFORM sluice.emit_event(r.org_id, 'fetch_failed', r.connector_id,
            jsonb_build_object('request_id', r.id, 'batch_id', v_batch,
                               'report_type', r.request_type, 'error', v_error));
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER job_archive_fetch_ended AFTER INSERT ON sluice.job_archive
    FOR EACH ROW WHEN (NEW.kind = 'report.fetch' AND NEW.state <> 'done')
    EXECUTE FUNCTION sluice.fetch_job_ended();

-- Rows of batches finished longer than fetch_retention ago go; their
-- requests keep their results, and storage_location says the rows expired.
CREATE FUNCTION sluice.prune_fetched_rows(p_limit integer DEFAULT 100)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    WITH old AS (
        SELECT id FROM sluice.fetch_batch
         WHERE finished_at < now() - sluice.setting_interval('fetch_retention')
           AND rows_pruned_at IS NULL
         ORDER BY finished_at
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED),
    gone AS (DELETE FROM sluice.fetched_row f USING old WHERE f.batch_id = old.id)
    UPDATE sluice.fetch_batch b SET rows_pruned_at = now() FROM old WHERE b.id = old.id;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE sluice.connector_request r
       SET result = jsonb_set(r.result, '{storage_location}', '"expired"')
      FROM sluice.fetch_batch b
     WHERE r.batch_id = b.id AND b.rows_pruned_at = now()
       AND r.result ->> 'storage_location' <> 'expired';
    RETURN n;
END $$;

-- ---- position and wait (DESIGN 6) ------------------------------------------

-- When the p_n-th next call of a bucket may go, from p_from on: for each
-- window, every call counted now and every call before the p_n-th (each
-- going as early as it may) holds its place until its slot leaves the
-- window, as claim_gated() counts; the latest of the windows' answers, and
-- no sooner than the bucket's block.
CREATE FUNCTION sluice.rate_call_at(p_bucket bigint, p_n bigint,
                                    p_from timestamptz DEFAULT clock_timestamp())
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
DECLARE
    w       record;
    v_used  timestamptz[];
    v_calls timestamptz[];
    v_at    timestamptz;
    v_when  timestamptz := p_from;
    v_slot  interval;
    m       bigint;
    u       integer;
BEGIN
    IF p_n IS NULL OR p_n < 1 THEN
        RETURN p_from;
    END IF;
    p_n := least(p_n, 100000);
    FOR w IN SELECT rw.seconds, rw.max_calls
               FROM sluice.rate_bucket b JOIN sluice.rate_window rw ON rw.policy_id = b.policy_id
              WHERE b.id = p_bucket
    LOOP
        v_slot := make_interval(secs => w.seconds + sluice.rate_slot_ms(w.seconds) / 1000.0);
        SELECT coalesce(array_agg(s.slot_start ORDER BY s.slot_start), '{}') INTO v_used
          FROM sluice.rate_slot s CROSS JOIN LATERAL generate_series(1, s.used)
         WHERE s.bucket_id = p_bucket AND s.seconds = w.seconds
           AND s.slot_start >= sluice.rate_slot_start(w.seconds,
                                                      p_from - make_interval(secs => w.seconds));
        u := cardinality(v_used);
        v_calls := '{}';
        FOR k IN 1 .. p_n LOOP   -- element assignment: O(1) on PL/pgSQL's expanded arrays
            m := u + k - w.max_calls;   -- the call whose place this one waits for
            IF m < 1 THEN
                v_at := p_from;
            ELSE
                v_at := greatest(p_from, sluice.rate_slot_start(w.seconds,
                            CASE WHEN m <= u THEN v_used[m] ELSE v_calls[m - u] END) + v_slot);
            END IF;
            v_calls[k] := v_at;
        END LOOP;
        v_when := greatest(v_when, v_at);
    END LOOP;
    RETURN greatest(v_when, (SELECT blocked_until FROM sluice.rate_bucket WHERE id = p_bucket));
END $$;

-- Where a waiting job stands and how long it will wait (DESIGN 6): 0 and 0
-- when it runs; NULL and NULL when it waits for a person (a connector hold).
CREATE FUNCTION sluice.job_place(p_job bigint, OUT queue_position bigint,
                                 OUT estimated_wait_seconds integer)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    j       sluice.job;
    v_now   timestamptz := clock_timestamp();
    v_from  timestamptz;
    v_due   timestamptz;
    v_ahead bigint;
    v_cost  bigint;
    v_rate  double precision;
    v_at    timestamptz;
BEGIN
    SELECT * INTO j FROM sluice.job WHERE id = p_job;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF j.state = 'running' THEN
        queue_position := 0;
        estimated_wait_seconds := 0;
        RETURN;
    END IF;
    IF (CASE WHEN j.rate_bucket IS NULL THEN j.run_at ELSE j.gate_after END) = sluice.held_run_at() THEN
        RETURN;
    END IF;
    -- Held by an open circuit: nothing goes before its next trial.
    SELECT greatest(v_now, max(c.half_open_at)) INTO v_from
      FROM sluice.circuit c WHERE c.connector_id = j.connector_id AND c.state = 'open';
    v_from := coalesce(v_from, v_now);
    v_due := CASE WHEN j.rate_bucket IS NULL THEN j.run_at ELSE j.gate_after END;
    v_due := CASE WHEN v_due >= sluice.circuit_held_run_at() THEN v_from
                  ELSE greatest(v_from, v_due) END;
    IF j.rate_bucket IS NOT NULL THEN
        -- Ahead: the bucket's waiting jobs before it in the claim's order,
        -- those a circuit holds only when it is their connector's too.
        SELECT count(*), coalesce(sum(q.rate_cost), 0) INTO v_ahead, v_cost
          FROM sluice.job q
         WHERE q.rate_bucket = j.rate_bucket AND q.state <> 'running'
           AND (q.gate_after < sluice.circuit_held_run_at()
                OR (q.gate_after = sluice.circuit_held_run_at()
                    AND q.connector_id = j.connector_id))
           AND (q.priority, q.gate_after, q.id) < (j.priority, j.gate_after, j.id);
        queue_position := v_ahead + 1;
        v_at := sluice.rate_call_at(j.rate_bucket, v_cost + j.rate_cost, v_due);
    ELSE
        v_ahead := coalesce(sluice.jobs_ahead(p_job), 0);
        queue_position := v_ahead + 1;
        v_rate := sluice.expected_rate();
        IF v_rate IS NULL OR v_rate <= 0 THEN
            RETURN;   -- no worker alive: no wait to promise
        END IF;
        v_at := v_due + make_interval(secs => v_ahead / v_rate);
    END IF;
    estimated_wait_seconds := least(greatest(ceil(extract(epoch FROM v_at - v_now)), 0),
                                    2147483647)::integer;
END $$;

-- ---- answers ----------------------------------------------------------------

-- A request as the API answers it: seed 001's fields of POST /fetch
-- (request_id, status, queue_position, estimated_wait_seconds,
-- batched_with, rate_limit_status) and of GET /requests/{id} (progress,
-- result, execution_time_ms, cost), and what else there is to know.  NULL
-- when the org has no such request.
CREATE FUNCTION sluice.request_doc(p_request uuid, p_org bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'request_id', r.id,
        'status', r.status,
        'connector_id', r.connector_id,
        'report_type', r.request_type,
        'date_range', r.params -> 'date_range',
        'fields', r.params -> 'fields',
        'priority', r.priority,
        'queue_position', CASE WHEN r.status = 'queued' THEN p.queue_position
                               WHEN r.status = 'running' THEN 0 END,
        'estimated_wait_seconds', CASE WHEN r.status = 'queued' THEN p.estimated_wait_seconds
                                       WHEN r.status = 'running' THEN 0 END,
        'batched_with', coalesce((SELECT jsonb_agg(o.id ORDER BY o.created_at, o.id)
                                    FROM sluice.connector_request o
                                   WHERE o.batch_id = r.batch_id AND o.id <> r.id
                                     AND NOT o.stale AND NOT r.stale), '[]'),
        'rate_limit_status', (SELECT jsonb_build_object(
                                  'current', (rl ->> 'limit')::bigint - (rl ->> 'remaining')::bigint,
                                  'limit', rl -> 'limit', 'reset_at', rl -> 'reset_at')
                                FROM sluice.connector_rate_limit(r.connector_id) rl
                               WHERE rl IS NOT NULL),
        'progress', CASE r.status WHEN 'completed' THEN 100 WHEN 'queued' THEN 0
                        ELSE coalesce(100 * (b.next_page - 1) / nullif(b.pages_total, 0), 0) END,
        'result', r.result,
        'execution_time_ms', r.execution_time_ms,
        'cost', r.cost,
        'error', r.error,
        'stale', r.stale,
        'message', CASE WHEN r.stale THEN 'Data may be stale' END,
        'data_as_of', CASE WHEN r.stale THEN to_char(b.finished_at AT TIME ZONE 'UTC',
                                                     'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END,
        'created_at', to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'started_at', to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'completed_at', to_char(r.completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
      FROM sluice.connector_request r
      JOIN sluice.fetch_batch b ON b.id = r.batch_id
      LEFT JOIN LATERAL sluice.job_place(b.job_id) p ON r.status = 'queued'
     WHERE r.id = p_request AND r.org_id = p_org;
$$;

-- The column names of a request's CSV: "date" and its fields, or when it
-- asked for every field the keys of its batch's first row ("date" first).
CREATE FUNCTION sluice.request_columns(p_request uuid)
RETURNS text[] LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN cardinality(r.fields) > 0 THEN array_prepend('date', r.fields)
                ELSE ARRAY(SELECT k FROM jsonb_object_keys(
                                        (SELECT f.data FROM sluice.fetched_row f
                                          WHERE f.batch_id = r.batch_id
                                          ORDER BY f.row_no LIMIT 1)) k
                            ORDER BY k <> 'date', k) END
      FROM sluice.connector_request r
     WHERE r.id = p_request;
$$;

-- ---- views ------------------------------------------------------------------

-- Every request, with its batch: what an operator looks at first.
CREATE VIEW sluice.fetch_requests AS
SELECT r.id, r.org_id, r.connector_id, r.request_type, r.range_start, r.range_end,
       r.priority, r.status, r.stale, r.batch_id, b.state AS batch_state,
       b.range_start AS batch_start, b.range_end AS batch_end, b.job_id,
       b.next_page - 1 AS pages_done, b.pages_total, b.calls,
       r.result ->> 'records_fetched' AS records_fetched, r.error,
       r.created_at, r.started_at, r.completed_at
  FROM sluice.connector_request r
  JOIN sluice.fetch_batch b ON b.id = r.batch_id;
