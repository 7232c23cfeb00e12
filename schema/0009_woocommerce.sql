-- 0009_woocommerce.sql — seed 002: a shop's products and orders synced into
-- the platform's own model, through mapping rules that are data.
--
-- DESIGN
--
-- 1. Seed 002's tables on Sluice's.  external_connector is sluice.connector
--    (type woocommerce, config.base_url; status and last_test_at are its
--    columns); external_credential is sluice.credential (consumer_key and
--    consumer_secret sealed by adapters/credential.c, never here in clear).
--    external_sync_config, external_sync_run, external_mapping_rule,
--    external_reference, external_product and external_order are the seed's,
--    with the org, and what a resumable, idempotent sync needs besides.
--
-- 2. The platform's model.  app_user, app_product, app_order and
--    app_order_item are the minimal internal model the mapped records land in
--    (users are the platform's: orders find theirs by billing e-mail).
--
-- 3. A run is a chain of jobs, one outside call each.  A run
--    (external_sync_run) reads products (and each variable product's
--    variations), then orders.  Its cursor says which call comes next; a
--    woocommerce.sync job (payload {"run_id"}) makes that one call and hands
--    the page to woo_sync_store(), which in one transaction stores the
--    records, maps them, writes the internal rows, moves the cursor and
--    queues the job for the next call (or finishes the run).  So a worker
--    holds one page; a worker killed mid-run leaves the cursor at the last
--    page stored, and the job, reaped, starts from there: no gap, no
--    duplicate (a page job run twice finds the cursor past its page and
--    stores nothing).  Each call is a gated job of cost 1 (0006): the shop's
--    rate limit and circuit (0007) apply to syncs like to any call.  One live
--    run per connector (a unique index), and one job per run at a time, so
--    two syncs of a connector never run at once.
--
-- 4. Full, then delta.  The first run of an entity reads everything (ordered
--    by id, a stable order for page-by-page reading).  Each run records the
--    shop's clock at its first page of an entity (the Date header); the next
--    run asks only for records modified after that, less delta_overlap (10
--    minutes), so records changed while a run was reading are read again by
--    the next.  Re-reading is harmless (5).
--
-- 5. Idempotency.  external_reference maps (source, entity_type,
--    external_id) to the internal id, with the seed's unique index; source is
--    "woocommerce:<connector id>", so two shops' ids never meet.  A record
--    whose mapping equals the one stored is counted unchanged and writes no
--    internal row; otherwise the internal row is created or updated.  A
--    product's SKU is a reference too (entity_type product_sku), for line
--    items that name a SKU.
--
-- 6. Mapping (map_record).  Rules are rows of external_mapping_rule: the
--    default template (connector_id NULL) and a connector's own, which
--    replace the template's rule for the same target field; a connector's
--    mappings_json (the admin API's) is written through to its rows.  A rule
--    reads source_field (a dotted path; "a[].b" collects b of each element
--    of array a; "$config.key" reads the connector's config), applies the
--    transforms of transform_json in order (enum, currency, decimal,
--    integer, date, equals, first_match, sum, default, constant, reference,
--    user), and writes target_field (dotted; "items[].x" maps the source
--    array element by element).  A required field that ends up missing, or
--    a transform that cannot apply, fails the record, naming the field; the
--    record is kept as failed with its error, the run goes on and counts it.

-- ---- the platform's model (DESIGN 2) ------------------------------------------

CREATE TABLE sluice.app_user (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id      bigint NOT NULL REFERENCES sluice.org ON DELETE CASCADE,
    email       text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    name        text,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX app_user_email_idx ON sluice.app_user (org_id, lower(email));

CREATE TABLE sluice.app_product (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id          bigint NOT NULL REFERENCES sluice.org ON DELETE CASCADE,
    parent_id       uuid REFERENCES sluice.app_product ON DELETE SET NULL,  -- a variation's product
    name            text NOT NULL,
    sku             text,
    price           numeric(18,4) NOT NULL,
    currency        char(3) NOT NULL,
    in_stock        boolean,
    stock_quantity  integer,
    description     text,
    images          jsonb NOT NULL DEFAULT '[]',
    product_type    text,
    metal           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX app_product_org_idx ON sluice.app_product (org_id);

CREATE TABLE sluice.app_order (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id        bigint NOT NULL REFERENCES sluice.org ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES sluice.app_user,
    type          text NOT NULL CHECK (type IN ('BUY', 'SELL')),
    status        text NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'COMPLETED', 'CANCELLED')),
    currency      char(3) NOT NULL,
    subtotal      numeric(18,4),
    taxes         numeric(18,4),
    total_amount  numeric(18,4) NOT NULL,
    placed_at     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX app_order_org_idx ON sluice.app_order (org_id);

CREATE TABLE sluice.app_order_item (
    order_id    uuid NOT NULL REFERENCES sluice.app_order ON DELETE CASCADE,
    line_no     integer NOT NULL,
    product_id  uuid NOT NULL REFERENCES sluice.app_product,
    quantity    integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, line_no)
);

-- ---- seed 002's tables (DESIGN 1) --------------------------------------------

CREATE TABLE sluice.external_sync_config (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    connector_id   uuid NOT NULL UNIQUE REFERENCES sluice.connector ON DELETE CASCADE,
    sync_products  boolean NOT NULL DEFAULT true,
    sync_orders    boolean NOT NULL DEFAULT true,
    mappings_json  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(mappings_json) = 'object'),
    sync_interval  interval NOT NULL DEFAULT '1 day' CHECK (sync_interval >= interval '1 minute'),
    delta_overlap  interval NOT NULL DEFAULT '10 minutes' CHECK (delta_overlap >= interval '0'),
    page_size      integer NOT NULL DEFAULT 100 CHECK (page_size BETWEEN 1 AND 100),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sluice.external_sync_run (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id         bigint NOT NULL REFERENCES sluice.org ON DELETE CASCADE,
    connector_id   uuid NOT NULL REFERENCES sluice.connector ON DELETE CASCADE,
    status         text NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'running', 'success', 'partial', 'failed')),
    trigger        text NOT NULL CHECK (trigger IN ('manual', 'scheduled')),
    sync_products  boolean NOT NULL,
    sync_orders    boolean NOT NULL,
    due_at         timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    stats_json     jsonb NOT NULL DEFAULT '{}',
    errors_json    jsonb NOT NULL DEFAULT '[]',   -- failed records and the run's error, at most 200
    error          text,
    cursor         jsonb NOT NULL DEFAULT '{}',   -- the next call (DESIGN 3)
    job_id         bigint,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX external_sync_run_live_idx ON sluice.external_sync_run (connector_id)
    WHERE status IN ('queued', 'running');
CREATE INDEX external_sync_run_connector_idx ON sluice.external_sync_run (connector_id, created_at DESC);

-- The shop's clock at the last run's first page of an entity (DESIGN 4).
CREATE TABLE sluice.external_sync_state (
    connector_id  uuid NOT NULL REFERENCES sluice.connector ON DELETE CASCADE,
    entity_type   text NOT NULL CHECK (entity_type IN ('product', 'order')),
    watermark     timestamptz NOT NULL,
    run_id        uuid,
    PRIMARY KEY (connector_id, entity_type)
);

CREATE TABLE sluice.external_mapping_rule (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    connector_id    uuid REFERENCES sluice.connector ON DELETE CASCADE,  -- NULL: the default template
    entity_type     text NOT NULL CHECK (entity_type IN ('product', 'order')),
    source_field    text NOT NULL CHECK (length(source_field) <= 200),
    target_field    text NOT NULL CHECK (target_field ~ '^[A-Za-z][A-Za-z0-9_]*(\[\])?(\.[A-Za-z][A-Za-z0-9_]*(\[\])?)*$'),
    transform_json  jsonb NOT NULL DEFAULT '{}'
                    CHECK (jsonb_typeof(transform_json) IN ('object', 'array')),
    required        boolean NOT NULL DEFAULT false,
    position        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (connector_id, entity_type, target_field)
);

CREATE TABLE sluice.external_reference (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    source       text NOT NULL,
    entity_type  text NOT NULL,
    external_id  text NOT NULL,
    internal_id  uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX external_reference_unique
    ON sluice.external_reference (source, entity_type, external_id);

CREATE TABLE sluice.external_product (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id               bigint NOT NULL REFERENCES sluice.org ON DELETE CASCADE,
    connector_id         uuid NOT NULL REFERENCES sluice.connector ON DELETE CASCADE,
    external_id          text NOT NULL,
    parent_external_id   text,                -- a variation's product
    raw_payload_json     jsonb NOT NULL,
    mapped_payload_json  jsonb,
    status               text NOT NULL CHECK (status IN ('pending', 'mapped', 'failed')),
    error                text,
    internal_id          uuid,
    modified_at          timestamptz,
    run_id               uuid,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (connector_id, external_id)
);
CREATE INDEX external_product_connector_idx ON sluice.external_product (connector_id);

CREATE TABLE sluice.external_order (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id               bigint NOT NULL REFERENCES sluice.org ON DELETE CASCADE,
    connector_id         uuid NOT NULL REFERENCES sluice.connector ON DELETE CASCADE,
    external_id          text NOT NULL,
    raw_payload_json     jsonb NOT NULL,
    mapped_payload_json  jsonb,
    status               text NOT NULL CHECK (status IN ('pending', 'mapped', 'failed')),
    error                text,
    internal_id          uuid,
    modified_at          timestamptz,
    run_id               uuid,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (connector_id, external_id)
);
CREATE INDEX external_order_connector_idx ON sluice.external_order (connector_id);

INSERT INTO sluice.kind_policy (kind, timeout, max_attempts) VALUES
 ('woocommerce.sync', '2 minutes', 8);

-- ---- the mapping engine (DESIGN 6) -------------------------------------------

-- Raises a mapping error: caught per record by map_record.
CREATE FUNCTION sluice.mapping_fail(p_field text, p_message text)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%: %', p_field, p_message USING ERRCODE = 'SLMAP';
END $$;

-- The value at a dotted path of doc ("billing.email"); "a[].b" collects b of
-- every element of array a (an array, NULLs left out).  "$config.key" reads
-- ctx.config.  NULL when absent.
CREATE FUNCTION sluice.mapping_get(p_doc jsonb, p_path text, p_ctx jsonb)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_head text;
    v_rest text;
    v_arr  jsonb;
BEGIN
    IF p_path IS NULL OR p_path = '' THEN
        RETURN NULL;
    END IF;
    IF p_path LIKE '$config.%' THEN
        RETURN sluice.mapping_get(p_ctx -> 'config', substr(p_path, 9), NULL);
    END IF;
    v_head := split_part(p_path, '.', 1);
    v_rest := substr(p_path, length(v_head) + 2);
    IF v_head LIKE '%[]' THEN
        v_arr := p_doc -> left(v_head, -2);
        IF jsonb_typeof(v_arr) IS DISTINCT FROM 'array' THEN
            RETURN NULL;
        END IF;
        IF v_rest = '' THEN
            RETURN v_arr;
        END IF;
        RETURN (SELECT coalesce(jsonb_agg(x ORDER BY o), '[]')
                  FROM jsonb_array_elements(v_arr) WITH ORDINALITY AS e(el, o),
                       LATERAL sluice.mapping_get(e.el, v_rest, NULL) x
                 WHERE x IS NOT NULL AND x <> 'null');
    END IF;
    IF jsonb_typeof(p_doc) IS DISTINCT FROM 'object' THEN
        RETURN NULL;
    END IF;
    IF v_rest = '' THEN
        RETURN nullif(p_doc -> v_head, 'null');
    END IF;
    RETURN sluice.mapping_get(p_doc -> v_head, v_rest, NULL);
END $$;

-- doc with value at the dotted path, making the objects on the way.
CREATE FUNCTION sluice.mapping_put(p_doc jsonb, p_path text[], p_value jsonb)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF cardinality(p_path) = 1 THEN
        RETURN p_doc || jsonb_build_object(p_path[1], p_value);
    END IF;
    RETURN p_doc || jsonb_build_object(p_path[1],
        sluice.mapping_put(CASE WHEN jsonb_typeof(p_doc -> p_path[1]) = 'object'
                                THEN p_doc -> p_path[1] ELSE '{}' END,
                           p_path[2:], p_value));
END $$;

-- A decimal from a price string or number ("19.99", 19.99); "" is none.
CREATE FUNCTION sluice.mapping_decimal(p_value jsonb, p_field text)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    t text := btrim(p_value #>> '{}');
BEGIN
    IF p_value IS NULL OR t = '' THEN
        RETURN NULL;
    END IF;
    IF jsonb_typeof(p_value) NOT IN ('string', 'number') OR t !~ '^[-+]?[0-9]{1,15}(\.[0-9]{1,8})?$' THEN
        RETURN sluice.mapping_fail(p_field, format('not a decimal number: %s', left(t, 40)));
    END IF;
    RETURN to_jsonb(t::numeric);
END $$;

-- A timestamp to UTC: WooCommerce's *_gmt values have no zone and are UTC.
CREATE FUNCTION sluice.mapping_date(p_value jsonb, p_field text)
RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    t text := p_value #>> '{}';
BEGIN
    IF p_value IS NULL OR t = '' THEN
        RETURN NULL;
    END IF;
    IF t !~ '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$' THEN
        RETURN sluice.mapping_fail(p_field, format('not a date: %s', left(t, 40)));
    END IF;
    IF t !~ '(Z|[+-]\d{2}(:?\d{2})?)$' THEN
        t := t || 'Z';
    END IF;
    BEGIN
        RETURN to_jsonb(to_char(t::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'));
    EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
        RETURN sluice.mapping_fail(p_field, format('not a date: %s', left(t, 40)));
    END;
END $$;

-- One transform (DESIGN 6) of value v for target field p_field; p_doc is
-- the record (or array element) the rule reads, for transforms that look
-- at other fields.
CREATE FUNCTION sluice.mapping_transform(v jsonb, t jsonb, p_field text, p_doc jsonb, p_ctx jsonb)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    k     text;
    x     jsonb;
    v_id  uuid;
    s     text;
BEGIN
    CASE t ->> 'type'
    WHEN 'enum' THEN
        IF v IS NULL THEN RETURN t -> 'default'; END IF;
        x := t -> 'map' -> lower(v #>> '{}');
        IF x IS NULL THEN
            x := t -> 'default';
        END IF;
        IF x IS NULL THEN
            RETURN sluice.mapping_fail(p_field, format('no mapping for %s', left(v #>> '{}', 60)));
        END IF;
        RETURN x;
    WHEN 'currency' THEN
        IF v IS NULL THEN RETURN NULL; END IF;
        s := upper(btrim(v #>> '{}'));
        IF s !~ '^[A-Z]{3}$' THEN
            RETURN sluice.mapping_fail(p_field, format('not an ISO 4217 currency code: %s', left(s, 20)));
        END IF;
        RETURN to_jsonb(s);
    WHEN 'decimal' THEN
        RETURN sluice.mapping_decimal(v, p_field);
    WHEN 'integer' THEN
        IF v IS NULL OR v #>> '{}' = '' THEN RETURN NULL; END IF;
        IF (v #>> '{}') !~ '^[-+]?[0-9]{1,9}$' THEN
            RETURN sluice.mapping_fail(p_field, format('not an integer: %s', left(v #>> '{}', 40)));
        END IF;
        RETURN to_jsonb((v #>> '{}')::integer);
    WHEN 'date' THEN
        RETURN sluice.mapping_date(v, p_field);
    WHEN 'equals' THEN
        RETURN to_jsonb(coalesce(v #>> '{}' = t ->> 'value', false));
    WHEN 'first_match' THEN
        -- The first value (of an array, or the one) containing a key of map.
        FOR s IN SELECT lower(e) FROM jsonb_array_elements_text(
                     CASE jsonb_typeof(v) WHEN 'array' THEN v WHEN 'string' THEN jsonb_build_array(v)
                                          ELSE '[]' END) e LOOP
            FOR k, x IN SELECT * FROM jsonb_each(t -> 'map') LOOP
                IF position(lower(k) IN s) > 0 THEN
                    RETURN x;
                END IF;
            END LOOP;
        END LOOP;
        RETURN t -> 'default';
    WHEN 'sum' THEN
        IF jsonb_typeof(v) IS DISTINCT FROM 'array' THEN RETURN NULL; END IF;
        RETURN to_jsonb(coalesce((SELECT sum((sluice.mapping_decimal(e, p_field) #>> '{}')::numeric)
                                    FROM jsonb_array_elements(v) e), 0));
    WHEN 'default' THEN
        RETURN coalesce(v, t -> 'value');
    WHEN 'constant' THEN
        RETURN t -> 'value';
    WHEN 'reference' THEN
        -- The internal id behind the value, else behind each fallback field
        -- of the same record, else behind its SKU (DESIGN 5).
        s := NULL;
        FOR x IN SELECT v UNION ALL
                 SELECT sluice.mapping_get(p_doc, f, p_ctx)
                   FROM jsonb_array_elements_text(coalesce(t -> 'fallback', '[]')) f LOOP
            IF x IS NOT NULL AND x #>> '{}' NOT IN ('', '0') THEN
                SELECT internal_id INTO v_id FROM sluice.external_reference
                 WHERE source = p_ctx ->> 'source' AND entity_type = t ->> 'entity'
                   AND external_id = x #>> '{}';
                IF v_id IS NOT NULL THEN
                    RETURN to_jsonb(v_id);
                END IF;
                s := concat_ws(' or ', s, 'id ' || left(x #>> '{}', 40));
            END IF;
        END LOOP;
        k := sluice.mapping_get(p_doc, t ->> 'sku', p_ctx) #>> '{}';
        IF k <> '' THEN
            SELECT internal_id INTO v_id FROM sluice.external_reference
             WHERE source = p_ctx ->> 'source' AND entity_type = (t ->> 'entity') || '_sku'
               AND external_id = k;
            IF v_id IS NOT NULL THEN
                RETURN to_jsonb(v_id);
            END IF;
            s := concat_ws(' or ', s, 'SKU ' || left(k, 60));
        END IF;
        RETURN sluice.mapping_fail(p_field, format('no %s with %s', t ->> 'entity',
                                   coalesce(s, 'no id or SKU')));
    WHEN 'user' THEN
        IF v IS NULL THEN RETURN NULL; END IF;
        SELECT id INTO v_id FROM sluice.app_user
         WHERE org_id = (p_ctx ->> 'org_id')::bigint AND lower(email) = lower(btrim(v #>> '{}'));
        IF v_id IS NULL THEN
            RETURN sluice.mapping_fail(p_field, format('no user with e-mail %s', left(v #>> '{}', 120)));
        END IF;
        RETURN to_jsonb(v_id);
    ELSE
        RETURN sluice.mapping_fail(p_field, format('unknown transform %s', t ->> 'type'));
    END CASE;
END $$;

-- Applies rules (a JSON array of {source_field, target_field,
-- transform_json, required}) to doc (DESIGN 6).  Raises SLMAP naming the
-- first field that fails.
CREATE FUNCTION sluice.mapping_apply(p_rules jsonb, p_doc jsonb, p_ctx jsonb, p_prefix text DEFAULT '')
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    r        jsonb;
    g        record;
    v        jsonb;
    t        jsonb;
    v_out    jsonb := '{}';
    v_items  jsonb;
    v_field  text;
    i        integer;
BEGIN
    -- Plain rules, in order.
    FOR r IN SELECT e FROM jsonb_array_elements(p_rules) e
              WHERE e ->> 'target_field' NOT LIKE '%[]%' LOOP
        v_field := p_prefix || (r ->> 'target_field');
        v := sluice.mapping_get(p_doc, r ->> 'source_field', p_ctx);
        FOR t IN SELECT e FROM jsonb_array_elements(
                     CASE jsonb_typeof(r -> 'transform_json') WHEN 'array' THEN r -> 'transform_json'
                          ELSE jsonb_build_array(r -> 'transform_json') END) e
                  WHERE e <> '{}' LOOP
            v := sluice.mapping_transform(v, t, v_field, p_doc, p_ctx);
        END LOOP;
        IF v IS NULL OR v = 'null' OR v = '""' THEN
            IF (r ->> 'required')::boolean THEN
                PERFORM sluice.mapping_fail(v_field, format('required field missing (from %s)',
                                            coalesce(nullif(r ->> 'source_field', ''), 'no source')));
            END IF;
            CONTINUE;
        END IF;
        v_out := sluice.mapping_put(v_out, string_to_array(r ->> 'target_field', '.'), v);
    END LOOP;
    -- Array rules, by (source array, target array): each element mapped by
    -- the rules' remainders.
    FOR g IN SELECT split_part(e ->> 'source_field', '[]', 1) AS src,
                    split_part(e ->> 'target_field', '[]', 1) AS tgt,
                    bool_or((e ->> 'required')::boolean) AS required,
                    jsonb_agg(jsonb_build_object(
                        'source_field', substr(e ->> 'source_field',
                                               length(split_part(e ->> 'source_field', '[]', 1)) + 4),
                        'target_field', substr(e ->> 'target_field',
                                               length(split_part(e ->> 'target_field', '[]', 1)) + 4),
                        'transform_json', e -> 'transform_json',
                        'required', e -> 'required') ORDER BY o) AS rules
               FROM jsonb_array_elements(p_rules) WITH ORDINALITY AS x(e, o)
              WHERE e ->> 'target_field' LIKE '%[]%'
              GROUP BY 1, 2 LOOP
        v := sluice.mapping_get(p_doc, g.src, p_ctx);
        v_items := '[]';
        IF jsonb_typeof(v) = 'array' THEN
            FOR i IN 0 .. jsonb_array_length(v) - 1 LOOP
                v_items := v_items || jsonb_build_array(sluice.mapping_apply(
                               g.rules, v -> i, p_ctx, format('%s%s[%s].', p_prefix, g.tgt, i)));
            END LOOP;
        END IF;
        IF jsonb_array_length(v_items) = 0 AND g.required THEN
            PERFORM sluice.mapping_fail(p_prefix || g.tgt, format('required field missing (from %s)', g.src));
        END IF;
        v_out := sluice.mapping_put(v_out, string_to_array(g.tgt, '.'), v_items);
    END LOOP;
    RETURN v_out;
END $$;

-- The rules in force for a connector's entity: the template's, each
-- replaced by the connector's own for the same target field (DESIGN 6).
CREATE FUNCTION sluice.mapping_rules(p_connector uuid, p_entity text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object('source_field', r.source_field,
                                                 'target_field', r.target_field,
                                                 'transform_json', r.transform_json,
                                                 'required', r.required)
                              ORDER BY r.position, r.target_field), '[]')
      FROM (SELECT DISTINCT ON (target_field) *
              FROM sluice.external_mapping_rule
             WHERE entity_type = p_entity AND (connector_id IS NULL OR connector_id = p_connector)
             ORDER BY target_field, connector_id NULLS LAST) r;
$$;

-- Maps one record: (mapped, NULL) or (NULL, the error naming its field).
CREATE FUNCTION sluice.map_record(p_rules jsonb, p_doc jsonb, p_ctx jsonb,
                                  OUT mapped jsonb, OUT error text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    mapped := sluice.mapping_apply(p_rules, p_doc, p_ctx);
EXCEPTION WHEN SQLSTATE 'SLMAP' THEN
    mapped := NULL;
    error := left(SQLERRM, 1000);
END $$;

-- A connector's mappings_json, written through to its rule rows (DESIGN 6):
-- {"product": [{"source_field", "target_field", "transform_json",
-- "required"}, ...], "order": [...]}.  Bad rules raise 22023 naming
-- mappingsJson.
CREATE FUNCTION sluice.write_mappings()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r  jsonb;
    k  text;
    n  integer := 0;
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.mappings_json = OLD.mappings_json THEN
        RETURN NEW;
    END IF;
    DELETE FROM sluice.external_mapping_rule WHERE connector_id = NEW.connector_id;
    FOR k IN SELECT jsonb_object_keys(NEW.mappings_json) LOOP
        IF k NOT IN ('product', 'order') OR jsonb_typeof(NEW.mappings_json -> k) <> 'array' THEN
            RAISE EXCEPTION 'mappingsJson has "product" and "order", each a list of rules'
                USING ERRCODE = 'invalid_parameter_value', COLUMN = 'mappingsJson';
        END IF;
        FOR r IN SELECT e FROM jsonb_array_elements(NEW.mappings_json -> k) e LOOP
            n := n + 1;
            IF jsonb_typeof(r) IS DISTINCT FROM 'object'
               OR jsonb_typeof(r -> 'target_field') IS DISTINCT FROM 'string'
               OR jsonb_typeof(coalesce(r -> 'source_field', '""')) IS DISTINCT FROM 'string'
               OR jsonb_typeof(coalesce(r -> 'transform_json', '{}')) NOT IN ('object', 'array')
               OR ((r ->> 'target_field') LIKE '%[]%')
                  IS DISTINCT FROM (coalesce(r ->> 'source_field', '') LIKE '%[]%') THEN
                RAISE EXCEPTION 'mappingsJson.% rule % needs target_field, source_field (both with [] '
                                'or neither), transform_json (object or list), required', k, n
                    USING ERRCODE = 'invalid_parameter_value', COLUMN = 'mappingsJson';
            END IF;
            BEGIN
                INSERT INTO sluice.external_mapping_rule (connector_id, entity_type, source_field,
                       target_field, transform_json, required, position)
                VALUES (NEW.connector_id, k, coalesce(r ->> 'source_field', ''), r ->> 'target_field',
                        coalesce(r -> 'transform_json', '{}'),
                        coalesce((r ->> 'required')::boolean, false), 1000 + n);
            EXCEPTION WHEN check_violation OR unique_violation OR invalid_text_representation THEN
                RAISE EXCEPTION 'mappingsJson.% rule %: target_field % is not a field path, or is given twice',
                                k, n, left(r ->> 'target_field', 100)
                    USING ERRCODE = 'invalid_parameter_value', COLUMN = 'mappingsJson';
            END;
        END LOOP;
    END LOOP;
    RETURN NEW;
END $$;

CREATE TRIGGER external_sync_config_mappings AFTER INSERT OR UPDATE OF mappings_json
    ON sluice.external_sync_config FOR EACH ROW EXECUTE FUNCTION sluice.write_mappings();

-- The default template (seed 002's "Mapping Rules").
INSERT INTO sluice.external_mapping_rule (connector_id, entity_type, source_field, target_field,
                                          transform_json, required, position) VALUES
 (NULL, 'product', 'name', 'name', '{}', true, 1),
 (NULL, 'product', 'sku', 'sku', '{}', false, 2),
 (NULL, 'product', 'price', 'price', '{"type": "decimal"}', true, 3),
 (NULL, 'product', '$config.currency', 'currency',
  '[{"type": "default", "value": "EUR"}, {"type": "currency"}]', true, 4),
 (NULL, 'product', 'stock_status', 'inStock', '{"type": "equals", "value": "instock"}', false, 5),
 (NULL, 'product', 'stock_quantity', 'stockQuantity', '{"type": "integer"}', false, 6),
 (NULL, 'product', 'description', 'description', '{}', false, 7),
 (NULL, 'product', 'images[].src', 'images', '{}', false, 8),
 (NULL, 'product', 'categories[].name', 'productType',
  '{"type": "first_match", "map": {"coin": "COIN", "bar": "BAR", "round": "ROUND"}, "default": "OTHER"}',
  false, 9),
 (NULL, 'product', 'categories[].name', 'metal',
  '{"type": "first_match", "map": {"gold": "GOLD", "silver": "SILVER", "platinum": "PLATINUM", "palladium": "PALLADIUM"}}',
  false, 10),
 (NULL, 'order', 'billing.email', 'userId', '{"type": "user"}', true, 1),
 (NULL, 'order', '', 'type', '{"type": "constant", "value": "BUY"}', true, 2),
 (NULL, 'order', 'status', 'status',
  '{"type": "enum", "map": {"pending": "PENDING", "on-hold": "PENDING", "processing": "CONFIRMED", "completed": "COMPLETED", "cancelled": "CANCELLED", "failed": "CANCELLED", "refunded": "CANCELLED", "checkout-draft": "PENDING"}}',
  true, 3),
 (NULL, 'order', 'currency', 'currency', '{"type": "currency"}', true, 4),
 (NULL, 'order', 'line_items[].variation_id', 'items[].productId',
  '{"type": "reference", "entity": "product", "fallback": ["product_id"], "sku": "sku"}', true, 5),
 (NULL, 'order', 'line_items[].quantity', 'items[].quantity', '{"type": "integer"}', true, 6),
 (NULL, 'order', 'line_items[].subtotal', 'pricing.subtotal', '{"type": "sum"}', false, 7),
 (NULL, 'order', 'total_tax', 'pricing.taxes', '{"type": "decimal"}', false, 8),
 (NULL, 'order', 'total', 'pricing.totalAmount', '{"type": "decimal"}', true, 9),
 (NULL, 'order', 'date_created_gmt', 'placedAt', '{"type": "date"}', false, 10);

-- ---- writing internal rows (DESIGN 5) ------------------------------------------

-- A WooCommerce *_gmt time ("2024-05-01T10:00:00", UTC), or NULL when it is
-- not one (never an error: it only orders records).
CREATE FUNCTION sluice.woo_time(p_text text)
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN sluice.day_or_null(left(p_text, 10)) IS NOT NULL
                 AND p_text ~ '^.{10}T([01]\d|2[0-3]):[0-5]\d:[0-5]\d$'
                THEN (p_text || 'Z')::timestamptz END;
$$;

CREATE FUNCTION sluice.woo_source(p_connector uuid)
RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'woocommerce:' || p_connector $$;

-- The internal id of (source, entity, external id), or NULL.
CREATE FUNCTION sluice.reference_of(p_source text, p_entity text, p_external_id text)
RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT internal_id FROM sluice.external_reference
     WHERE source = p_source AND entity_type = p_entity AND external_id = p_external_id;
$$;

CREATE FUNCTION sluice.reference_put(p_source text, p_entity text, p_external_id text, p_internal uuid)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO sluice.external_reference (source, entity_type, external_id, internal_id)
    VALUES (p_source, p_entity, p_external_id, p_internal)
    ON CONFLICT (source, entity_type, external_id)
    DO UPDATE SET internal_id = excluded.internal_id, updated_at = now()
     WHERE external_reference.internal_id IS DISTINCT FROM excluded.internal_id;
$$;

-- Creates or updates the internal product of a mapped record; returns
-- (id, created).
CREATE FUNCTION sluice.woo_put_product(p_org bigint, p_source text, p_external_id text,
                                       p_parent_external_id text, m jsonb,
                                       OUT id uuid, OUT created boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_parent uuid := CASE WHEN p_parent_external_id IS NOT NULL
                          THEN sluice.reference_of(p_source, 'product', p_parent_external_id) END;
BEGIN
    id := sluice.reference_of(p_source, 'product', p_external_id);
    created := id IS NULL;
    IF created THEN
        INSERT INTO sluice.app_product (org_id, parent_id, name, sku, price, currency, in_stock,
               stock_quantity, description, images, product_type, metal)
        VALUES (p_org, v_parent, m ->> 'name', m ->> 'sku', (m ->> 'price')::numeric, m ->> 'currency',
                (m ->> 'inStock')::boolean, (m ->> 'stockQuantity')::integer, m ->> 'description',
                coalesce(m -> 'images', '[]'), m ->> 'productType', m ->> 'metal')
        RETURNING app_product.id INTO id;
        PERFORM sluice.reference_put(p_source, 'product', p_external_id, id);
    ELSE
        UPDATE sluice.app_product p
           SET parent_id = v_parent, name = m ->> 'name', sku = m ->> 'sku',
               price = (m ->> 'price')::numeric, currency = m ->> 'currency',
               in_stock = (m ->> 'inStock')::boolean, stock_quantity = (m ->> 'stockQuantity')::integer,
               description = m ->> 'description', images = coalesce(m -> 'images', '[]'),
               product_type = m ->> 'productType', metal = m ->> 'metal', updated_at = now()
         WHERE p.id = woo_put_product.id;
    END IF;
    IF coalesce(m ->> 'sku', '') <> '' THEN
        PERFORM sluice.reference_put(p_source, 'product_sku', m ->> 'sku', id);
    END IF;
END $$;

-- Creates or updates the internal order (and its items) of a mapped record.
CREATE FUNCTION sluice.woo_put_order(p_org bigint, p_source text, p_external_id text, m jsonb,
                                     OUT id uuid, OUT created boolean)
LANGUAGE plpgsql AS $$
BEGIN
    id := sluice.reference_of(p_source, 'order', p_external_id);
    created := id IS NULL;
    IF created THEN
        INSERT INTO sluice.app_order (org_id, user_id, type, status, currency, subtotal, taxes,
                                      total_amount, placed_at)
        VALUES (p_org, (m ->> 'userId')::uuid, m ->> 'type', m ->> 'status', m ->> 'currency',
                (m #>> '{pricing,subtotal}')::numeric, (m #>> '{pricing,taxes}')::numeric,
                (m #>> '{pricing,totalAmount}')::numeric, (m ->> 'placedAt')::timestamptz)
        RETURNING app_order.id INTO id;
        PERFORM sluice.reference_put(p_source, 'order', p_external_id, id);
    ELSE
        UPDATE sluice.app_order o
           SET user_id = (m ->> 'userId')::uuid, type = m ->> 'type', status = m ->> 'status',
               currency = m ->> 'currency', subtotal = (m #>> '{pricing,subtotal}')::numeric,
               taxes = (m #>> '{pricing,taxes}')::numeric,
               total_amount = (m #>> '{pricing,totalAmount}')::numeric,
               placed_at = (m ->> 'placedAt')::timestamptz, updated_at = now()
         WHERE o.id = woo_put_order.id;
        DELETE FROM sluice.app_order_item WHERE order_id = id;
    END IF;
    INSERT INTO sluice.app_order_item (order_id, line_no, product_id, quantity)
    SELECT id, i.o, (i.e ->> 'productId')::uuid, (i.e ->> 'quantity')::integer
      FROM jsonb_array_elements(m -> 'items') WITH ORDINALITY AS i(e, o);
END $$;

-- Stores, maps and writes one record (DESIGN 5 and 6); returns its outcome:
-- 'created', 'updated', 'unchanged' or 'failed', and the error.
CREATE FUNCTION sluice.woo_put_record(p_run sluice.external_sync_run, p_entity text, p_rules jsonb,
                                      p_ctx jsonb, p_raw jsonb, p_parent jsonb,
                                      OUT outcome text, OUT error text)
LANGUAGE plpgsql AS $$
DECLARE
    v_ext    text := p_raw ->> 'id';
    v_parent text := p_parent ->> 'id';
    v_source text := p_ctx ->> 'source';
    v_old    record;
    m        record;
    v_id     uuid;
    v_new    boolean;
    v_mod    timestamptz;
BEGIN
    IF v_ext IS NULL OR v_ext !~ '^[0-9]{1,19}$' THEN
        outcome := 'failed';
        error := 'a record without a numeric id';
        RETURN;
    END IF;
    v_mod := sluice.woo_time(p_raw ->> 'date_modified_gmt');
    -- A variation is mapped with its product's fields under its own.
    SELECT * INTO m FROM sluice.map_record(p_rules, coalesce(p_parent, '{}') || p_raw, p_ctx);
    IF p_entity = 'product' THEN
        SELECT mapped_payload_json AS mapped, status, internal_id INTO v_old
          FROM sluice.external_product WHERE connector_id = p_run.connector_id AND external_id = v_ext;
    ELSE
        SELECT mapped_payload_json AS mapped, status, internal_id INTO v_old
          FROM sluice.external_order WHERE connector_id = p_run.connector_id AND external_id = v_ext;
    END IF;
    IF m.error IS NOT NULL THEN
        outcome := 'failed';
        error := m.error;
    ELSIF v_old.status = 'mapped' AND v_old.mapped = m.mapped THEN
        outcome := 'unchanged';
        v_id := v_old.internal_id;
    ELSE
        BEGIN
            IF p_entity = 'product' THEN
                SELECT * INTO v_id, v_new FROM sluice.woo_put_product(p_run.org_id, v_source, v_ext, v_parent, m.mapped);
            ELSE
                SELECT * INTO v_id, v_new FROM sluice.woo_put_order(p_run.org_id, v_source, v_ext, m.mapped);
            END IF;
            outcome := CASE WHEN v_new THEN 'created' ELSE 'updated' END;
        EXCEPTION WHEN check_violation OR not_null_violation OR foreign_key_violation
                       OR numeric_value_out_of_range OR string_data_right_truncation
                       OR invalid_text_representation THEN
            outcome := 'failed';
            error := format('the mapped %s does not fit the platform''s model: %s', p_entity, SQLERRM);
        END;
    END IF;
    IF p_entity = 'product' THEN
        INSERT INTO sluice.external_product AS x (org_id, connector_id, external_id, parent_external_id,
               raw_payload_json, mapped_payload_json, status, error, internal_id, modified_at, run_id)
        VALUES (p_run.org_id, p_run.connector_id, v_ext, v_parent, p_raw, m.mapped,
                CASE WHEN outcome = 'failed' THEN 'failed' ELSE 'mapped' END, error, v_id, v_mod, p_run.id)
        ON CONFLICT (connector_id, external_id) DO UPDATE
           SET parent_external_id = excluded.parent_external_id, raw_payload_json = excluded.raw_payload_json,
               mapped_payload_json = excluded.mapped_payload_json, status = excluded.status,
               error = excluded.error, internal_id = coalesce(excluded.internal_id, x.internal_id),
               modified_at = excluded.modified_at, run_id = excluded.run_id, updated_at = now();
    ELSE
        INSERT INTO sluice.external_order AS x (org_id, connector_id, external_id, raw_payload_json,
               mapped_payload_json, status, error, internal_id, modified_at, run_id)
        VALUES (p_run.org_id, p_run.connector_id, v_ext, p_raw, m.mapped,
                CASE WHEN outcome = 'failed' THEN 'failed' ELSE 'mapped' END, error, v_id, v_mod, p_run.id)
        ON CONFLICT (connector_id, external_id) DO UPDATE
           SET raw_payload_json = excluded.raw_payload_json,
               mapped_payload_json = excluded.mapped_payload_json, status = excluded.status,
               error = excluded.error, internal_id = coalesce(excluded.internal_id, x.internal_id),
               modified_at = excluded.modified_at, run_id = excluded.run_id, updated_at = now();
    END IF;
END $$;

-- ---- runs (DESIGN 3 and 4) ---------------------------------------------------

-- A connector's sync config, made with the defaults on first use.
CREATE FUNCTION sluice.woo_config(p_connector uuid)
RETURNS sluice.external_sync_config LANGUAGE plpgsql AS $$
DECLARE
    c sluice.external_sync_config;
BEGIN
    INSERT INTO sluice.external_sync_config (connector_id) VALUES (p_connector)
    ON CONFLICT (connector_id) DO NOTHING;
    SELECT * INTO c FROM sluice.external_sync_config WHERE connector_id = p_connector;
    RETURN c;
END $$;

-- Asks for a sync of a WooCommerce connector and returns its run: the live
-- run if there is one (a manual request brings a queued one forward, and
-- sets what it syncs: p_products and p_orders, else the config's), else a
-- new one, due at p_at, with the job for its first call.  NULL when there is no such connector of a WooCommerce type.
CREATE FUNCTION sluice.woo_request_sync(p_connector uuid, p_trigger text,
                                        p_products boolean DEFAULT NULL,
                                        p_orders boolean DEFAULT NULL,
                                        p_at timestamptz DEFAULT NULL)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    c     sluice.connector;
    cfg   sluice.external_sync_config;
    r     sluice.external_sync_run;
    v_job bigint;
BEGIN
    SELECT * INTO c FROM sluice.connector
     WHERE id = p_connector AND type = 'woocommerce' AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    cfg := sluice.woo_config(p_connector);
    SELECT * INTO r FROM sluice.external_sync_run
     WHERE connector_id = p_connector AND status IN ('queued', 'running');
    IF FOUND THEN
        IF p_trigger = 'manual' AND r.status = 'queued' THEN
            UPDATE sluice.external_sync_run
               SET trigger = 'manual', due_at = least(due_at, now()),
                   sync_products = coalesce(p_products, cfg.sync_products),
                   sync_orders = coalesce(p_orders, cfg.sync_orders)
             WHERE id = r.id;
            UPDATE sluice.job SET run_at = clock_timestamp()
             WHERE id = r.job_id AND state <> 'running'
               AND (CASE WHEN rate_bucket IS NULL THEN run_at ELSE gate_after END) > clock_timestamp()
               AND (CASE WHEN rate_bucket IS NULL THEN run_at ELSE gate_after END)
                   < sluice.circuit_held_run_at();
            PERFORM sluice.raise_job_priority(r.job_id, 2::smallint);
        END IF;
        RETURN r.id;
    END IF;
    INSERT INTO sluice.external_sync_run (org_id, connector_id, trigger, sync_products, sync_orders, due_at)
    VALUES (c.org_id, p_connector, p_trigger, coalesce(p_products, cfg.sync_products),
            coalesce(p_orders, cfg.sync_orders), coalesce(p_at, now()))
    RETURNING * INTO r;
    v_job := sluice.enqueue_limited(c.org_id, 'woocommerce.sync', jsonb_build_object('run_id', r.id),
                                    CASE WHEN p_trigger = 'manual' THEN 2 ELSE 3 END, p_connector,
                                    'woocommerce', NULL, 1, coalesce(p_at, clock_timestamp()));
    UPDATE sluice.external_sync_run SET job_id = v_job WHERE id = r.id;
    RETURN r.id;
END $$;

-- The first cursor of a run: products, else orders, each full or delta.
CREATE FUNCTION sluice.woo_first_cursor(r sluice.external_sync_run)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'entity', CASE WHEN r.sync_products THEN 'product' WHEN r.sync_orders THEN 'order' ELSE 'done' END,
        'page', 1, 'pages', NULL, 'parents', '[]'::jsonb, 'vpage', 1,
        'modified_after', jsonb_build_object(
            'product', (SELECT to_char((s.watermark - cfg.delta_overlap) AT TIME ZONE 'UTC',
                                       'YYYY-MM-DD"T"HH24:MI:SS')
                          FROM sluice.external_sync_state s
                         WHERE s.connector_id = r.connector_id AND s.entity_type = 'product'),
            'order', (SELECT to_char((s.watermark - cfg.delta_overlap) AT TIME ZONE 'UTC',
                                     'YYYY-MM-DD"T"HH24:MI:SS')
                        FROM sluice.external_sync_state s
                       WHERE s.connector_id = r.connector_id AND s.entity_type = 'order')),
        'shop_time', '{}'::jsonb)
      FROM sluice.external_sync_config cfg WHERE cfg.connector_id = r.connector_id;
$$;

-- The call a cursor points at (DESIGN 3): a page of a product's
-- variations while some are left to read, else of the entity's list, with
-- modified_after for a delta read.
CREATE FUNCTION sluice.woo_cursor_call(cur jsonb, OUT path text, OUT page integer,
                                       OUT modified_after text)
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN jsonb_array_length(cur -> 'parents') > 0
                THEN format('products/%s/variations', cur -> 'parents' ->> 0)
                WHEN cur ->> 'entity' = 'product' THEN 'products' ELSE 'orders' END,
           CASE WHEN jsonb_array_length(cur -> 'parents') > 0 THEN (cur ->> 'vpage')::integer
                ELSE (cur ->> 'page')::integer END,
           CASE WHEN jsonb_array_length(cur -> 'parents') = 0
                THEN cur -> 'modified_after' ->> (cur ->> 'entity') END;
$$;

-- The call a run's job is to make next (DESIGN 3): its path under
-- /wp-json/wc/v3, page, page size and modified_after (NULL: everything).
-- Starts the run on its first call.  No row when the job has nothing to do:
-- the run has ended, is not this org's, or has another job now.
CREATE FUNCTION sluice.woo_sync_next(p_run uuid, p_job bigint, p_org bigint)
RETURNS TABLE (connector_id uuid, path text, page integer, per_page integer, modified_after text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    r   sluice.external_sync_run;
    cur jsonb;
BEGIN
    -- Only the run's current job acts: a job run again after it had queued
    -- its successor finds job_id moved on.
    SELECT * INTO r FROM sluice.external_sync_run
     WHERE id = p_run AND org_id = p_org AND status IN ('queued', 'running') AND job_id = p_job
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF r.status = 'queued' THEN
        UPDATE sluice.external_sync_run
           SET status = 'running', started_at = clock_timestamp(), cursor = sluice.woo_first_cursor(r)
         WHERE id = p_run
        RETURNING * INTO r;
    END IF;
    cur := r.cursor;
    IF cur ->> 'entity' = 'done' THEN
        PERFORM sluice.woo_finish_run(p_run, NULL);
        RETURN;
    END IF;
    RETURN QUERY SELECT r.connector_id, c.path, c.page,
        (SELECT page_size FROM sluice.external_sync_config x WHERE x.connector_id = r.connector_id),
        c.modified_after
      FROM sluice.woo_cursor_call(cur) c;
END $$;

-- Adds a page's counts to a run's stats: {"product": {"pages", "fetched",
-- "created", "updated", "unchanged", "failed"}, "order": {...}}.
CREATE FUNCTION sluice.woo_add_stats(p_stats jsonb, p_entity text, p_counts jsonb)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT p_stats || jsonb_build_object(p_entity, (
        SELECT jsonb_object_agg(k, coalesce((p_stats -> p_entity ->> k)::bigint, 0)
                                   + coalesce((p_counts ->> k)::bigint, 0))
          FROM unnest(ARRAY['pages', 'fetched', 'created', 'updated', 'unchanged', 'failed']) k));
$$;

-- Stores the page of a run's next call (DESIGN 3): its records, the cursor
-- moved past it, and the job of the call after it, or the end of the run.
-- p_path and p_page must be the ones woo_sync_next() gave; p_rows the page
-- (a JSON array of records); p_shop_time the shop's Date header.  Returns
-- 'stored', 'completed', or 'skipped' when the cursor is elsewhere (the job
-- ran twice).
CREATE FUNCTION sluice.woo_sync_store(p_run uuid, p_job bigint, p_path text, p_page integer,
                                      p_pages integer, p_shop_time timestamptz, p_rows jsonb)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r         sluice.external_sync_run;
    nxt       record;
    cur       jsonb;
    v_entity  text;
    v_rules   jsonb;
    v_ctx     jsonb;
    v_parent  jsonb;
    v_rec     jsonb;
    o         record;
    v_counts  jsonb := '{"pages": 1, "fetched": 0, "created": 0, "updated": 0, "unchanged": 0, "failed": 0}';
    v_errors  jsonb := '[]';
    v_parents jsonb := '[]';
    v_job     bigint;
BEGIN
    SELECT * INTO r FROM sluice.external_sync_run
     WHERE id = p_run AND status = 'running' AND job_id = p_job FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 'skipped';
    END IF;
    SELECT * INTO nxt FROM sluice.woo_cursor_call(r.cursor);
    IF nxt.path IS DISTINCT FROM p_path OR nxt.page IS DISTINCT FROM p_page THEN
        RETURN 'skipped';
    END IF;
    IF jsonb_typeof(p_rows) IS DISTINCT FROM 'array' THEN
        RAISE EXCEPTION 'a WooCommerce list page must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    cur := r.cursor;
    v_entity := CASE WHEN p_path = 'orders' THEN 'order' ELSE 'product' END;
    v_rules := sluice.mapping_rules(r.connector_id, v_entity);
    v_ctx := jsonb_build_object('org_id', r.org_id, 'source', sluice.woo_source(r.connector_id),
                                'config', (SELECT config FROM sluice.connector WHERE id = r.connector_id));
    IF p_path LIKE 'products/%/variations' THEN
        SELECT raw_payload_json INTO v_parent FROM sluice.external_product
         WHERE connector_id = r.connector_id AND external_id = cur -> 'parents' ->> 0;
    END IF;
    FOR v_rec IN SELECT e FROM jsonb_array_elements(p_rows) e LOOP
        SELECT * INTO o FROM sluice.woo_put_record(r, v_entity, v_rules, v_ctx, v_rec, v_parent);
        v_counts := jsonb_set(v_counts, ARRAY[o.outcome], to_jsonb((v_counts ->> o.outcome)::bigint + 1));
        v_counts := jsonb_set(v_counts, '{fetched}', to_jsonb((v_counts ->> 'fetched')::bigint + 1));
        IF o.outcome = 'failed' THEN
            v_errors := v_errors || jsonb_build_object('entity', v_entity, 'external_id', v_rec -> 'id',
                                                       'error', o.error);
        END IF;
        IF v_parent IS NULL AND v_rec ->> 'type' = 'variable' AND o.outcome <> 'failed'
           AND jsonb_array_length(coalesce(v_rec -> 'variations', '[]')) > 0 THEN
            v_parents := v_parents || jsonb_build_array(v_rec ->> 'id');
        END IF;
    END LOOP;

    -- Move the cursor past this call.
    IF v_parent IS NULL AND NOT (cur -> 'shop_time' ? v_entity) THEN
        cur := jsonb_set(cur, ARRAY['shop_time', v_entity], to_jsonb(coalesce(p_shop_time, clock_timestamp())));
    END IF;
    IF v_parent IS NOT NULL THEN
        IF p_page < coalesce(p_pages, 0) THEN
            cur := jsonb_set(cur, '{vpage}', to_jsonb(p_page + 1));
        ELSE
            cur := jsonb_set(jsonb_set(cur, '{parents}', (cur -> 'parents') - 0), '{vpage}', '1');
        END IF;
    ELSE
        cur := jsonb_set(jsonb_set(cur, '{page}', to_jsonb(p_page + 1)), '{pages}', to_jsonb(coalesce(p_pages, p_page)));
        cur := jsonb_set(cur, '{parents}', v_parents);
    END IF;
    IF jsonb_array_length(cur -> 'parents') = 0
       AND (cur ->> 'page')::integer > (cur ->> 'pages')::integer THEN
        -- This entity is read: on to orders, or the end.
        cur := cur || jsonb_build_object('entity',
                   CASE WHEN cur ->> 'entity' = 'product' AND r.sync_orders THEN 'order' ELSE 'done' END,
                   'page', 1, 'pages', NULL);
    END IF;
    UPDATE sluice.external_sync_run
       SET cursor = cur,
           stats_json = sluice.woo_add_stats(stats_json, v_entity, v_counts),
           errors_json = CASE WHEN jsonb_array_length(errors_json) >= 200 THEN errors_json
                              ELSE errors_json || (SELECT coalesce(jsonb_agg(e), '[]') FROM (
                                   SELECT e FROM jsonb_array_elements(v_errors) e
                                    LIMIT 200 - jsonb_array_length(errors_json)) x) END
     WHERE id = p_run;
    IF cur ->> 'entity' = 'done' THEN
        PERFORM sluice.woo_finish_run(p_run, NULL);
        RETURN 'completed';
    END IF;
    v_job := sluice.enqueue_limited(r.org_id, 'woocommerce.sync', jsonb_build_object('run_id', r.id),
                                    (SELECT priority FROM sluice.job WHERE id = p_job), r.connector_id,
                                    'woocommerce', NULL, 1);
    UPDATE sluice.external_sync_run SET job_id = v_job WHERE id = p_run;
    RETURN 'stored';
END $$;

-- Ends a run (DESIGN 3): failed with p_error, else success, or partial when
-- records failed; the shop times of its reads become the next run's
-- watermarks; the connector's last_sync_at; sync_completed or sync_failed;
-- and the next scheduled run.  Returns the run's status.
CREATE FUNCTION sluice.woo_finish_run(p_run uuid, p_error text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r        sluice.external_sync_run;
    cfg      sluice.external_sync_config;
    v_status text;
    v_failed bigint;
BEGIN
    SELECT * INTO r FROM sluice.external_sync_run
     WHERE id = p_run AND status IN ('queued', 'running') FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    v_failed := coalesce((r.stats_json #>> '{product,failed}')::bigint, 0)
              + coalesce((r.stats_json #>> '{order,failed}')::bigint, 0);
    v_status := CASE WHEN p_error IS NOT NULL THEN 'failed' WHEN v_failed > 0 THEN 'partial' ELSE 'success' END;
    UPDATE sluice.external_sync_run
       SET status = v_status, finished_at = clock_timestamp(), started_at = coalesce(started_at, clock_timestamp()),
           error = left(p_error, 2000), job_id = NULL,
           errors_json = CASE WHEN p_error IS NULL THEN errors_json
                              ELSE errors_json || jsonb_build_array(jsonb_build_object('error', left(p_error, 2000))) END
     WHERE id = p_run;
    IF p_error IS NULL THEN
        -- Only a completed read of an entity moves its watermark.
        INSERT INTO sluice.external_sync_state (connector_id, entity_type, watermark, run_id)
        SELECT r.connector_id, e.key, (e.value #>> '{}')::timestamptz, r.id
          FROM jsonb_each(r.cursor -> 'shop_time') e
        ON CONFLICT (connector_id, entity_type)
        DO UPDATE SET watermark = excluded.watermark, run_id = excluded.run_id;
        UPDATE sluice.connector SET last_sync_at = clock_timestamp() WHERE id = r.connector_id;
        -- A run that read the shop shows the connector works.
        PERFORM sluice.set_connector_status(r.connector_id, 'connected')
           FROM sluice.connector WHERE id = r.connector_id AND status IN ('pending', 'error');
    END IF;
    PERFORM sluice.emit_event(r.org_id, CASE WHEN v_status = 'failed' THEN 'sync_failed' ELSE 'sync_completed' END,
        r.connector_id, jsonb_build_object('run_id', r.id, 'status', v_status, 'stats', r.stats_json,
                                           'error', p_error));
    SELECT * INTO cfg FROM sluice.external_sync_config WHERE connector_id = r.connector_id;
    UPDATE sluice.connector SET next_sync_at = clock_timestamp() + cfg.sync_interval
     WHERE id = r.connector_id AND deleted_at IS NULL;
    PERFORM sluice.woo_request_sync(r.connector_id, 'scheduled', NULL, NULL,
                                    clock_timestamp() + cfg.sync_interval);
    RETURN v_status;
END $$;

-- A sync job that ends without success (dead, cancelled) fails its run
-- with its last error (as 0008 does for fetches).
CREATE FUNCTION sluice.woo_job_ended()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.payload ->> 'run_id' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        PERFORM sluice.woo_finish_run(r.id, coalesce(NEW.last_error, format('the sync job was %s', NEW.state)))
           FROM sluice.external_sync_run r
          WHERE r.id = (NEW.payload ->> 'run_id')::uuid AND r.org_id = NEW.org_id AND r.job_id = NEW.id;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER job_archive_woo_ended AFTER INSERT ON sluice.job_archive
    FOR EACH ROW WHEN (NEW.kind = 'woocommerce.sync' AND NEW.state <> 'done')
    EXECUTE FUNCTION sluice.woo_job_ended();

-- A new sync_interval moves the queued scheduled run (and its job) to the
-- last run's end plus the new interval, or now plus it when there was none.
CREATE FUNCTION sluice.woo_interval_changed()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_due timestamptz;
BEGIN
    IF NEW.sync_interval = OLD.sync_interval THEN
        RETURN NULL;
    END IF;
    v_due := coalesce((SELECT max(finished_at) FROM sluice.external_sync_run
                        WHERE connector_id = NEW.connector_id), clock_timestamp()) + NEW.sync_interval;
    WITH r AS (
        UPDATE sluice.external_sync_run SET due_at = v_due
         WHERE connector_id = NEW.connector_id AND status = 'queued' AND trigger = 'scheduled'
        RETURNING job_id)
    UPDATE sluice.job j SET run_at = greatest(v_due, clock_timestamp())
      FROM r WHERE j.id = r.job_id AND j.state <> 'running';
    UPDATE sluice.connector SET next_sync_at = v_due
     WHERE id = NEW.connector_id AND deleted_at IS NULL
       AND EXISTS (SELECT 1 FROM sluice.external_sync_run
                    WHERE connector_id = NEW.connector_id AND status = 'queued' AND trigger = 'scheduled');
    RETURN NULL;
END $$;

CREATE TRIGGER external_sync_config_interval AFTER UPDATE OF sync_interval
    ON sluice.external_sync_config FOR EACH ROW EXECUTE FUNCTION sluice.woo_interval_changed();

-- ---- answers ------------------------------------------------------------------

-- A run as the admin API shows it: {id, status, startedAt, finishedAt, stats, ...}.
CREATE FUNCTION sluice.woo_run_doc(r sluice.external_sync_run)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', r.id, 'status', r.status, 'trigger', r.trigger,
        'syncProducts', r.sync_products, 'syncOrders', r.sync_orders,
        'dueAt', to_char(r.due_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'startedAt', to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'finishedAt', to_char(r.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'stats', jsonb_build_object(
            'products', coalesce(r.stats_json -> 'product',
                                 '{"pages": 0, "fetched": 0, "created": 0, "updated": 0, "unchanged": 0, "failed": 0}'),
            'orders', coalesce(r.stats_json -> 'order',
                               '{"pages": 0, "fetched": 0, "created": 0, "updated": 0, "unchanged": 0, "failed": 0}')),
        'errors', r.errors_json, 'error', r.error);
$$;

-- A WooCommerce connector as the admin API shows it (seed 002's
-- ConnectorSummaryResponse): id, type, baseUrl, status, lastTestAt,
-- syncProducts, syncOrders, lastRun; no secret.  NULL when the org has none.
CREATE FUNCTION sluice.woo_connector_doc(p_connector uuid, p_org bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', c.id, 'type', c.type, 'label', c.label, 'baseUrl', c.config ->> 'base_url',
        'status', c.status, 'statusMessage', c.status_message,
        'lastTestAt', to_char(c.last_test_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'syncProducts', coalesce(cfg.sync_products, true), 'syncOrders', coalesce(cfg.sync_orders, true),
        'syncIntervalSeconds', extract(epoch FROM coalesce(cfg.sync_interval, interval '1 day'))::bigint,
        'authInQuery', coalesce((c.config ->> 'auth_in_query')::boolean, false),
        'mappingsJson', coalesce(cfg.mappings_json, '{}'),
        'hasCredentials', EXISTS (SELECT 1 FROM sluice.credential cr WHERE cr.connector_id = c.id),
        'lastSyncAt', to_char(c.last_sync_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'nextSyncAt', to_char(c.next_sync_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'lastRun', (SELECT sluice.woo_run_doc(r) FROM sluice.external_sync_run r
                     WHERE r.connector_id = c.id AND r.status NOT IN ('queued')
                     ORDER BY r.started_at DESC NULLS LAST, r.created_at DESC LIMIT 1),
        'createdAt', to_char(c.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'updatedAt', to_char(c.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
      FROM sluice.connector c
      LEFT JOIN sluice.external_sync_config cfg ON cfg.connector_id = c.id
     WHERE c.id = p_connector AND c.org_id = p_org AND c.type = 'woocommerce' AND c.deleted_at IS NULL;
$$;

-- Records a test connection's outcome (POST /admin/connectors/{id}/test):
-- last_test_at, and the status it shows: connected, or reauth_required
-- when the keys were refused, or error, with the message a shop admin reads.
CREATE FUNCTION sluice.woo_record_test(p_connector uuid, p_ok boolean, p_status text, p_message text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sluice.connector SET last_test_at = clock_timestamp() WHERE id = p_connector;
    -- A disabled connector stays disabled: enabling it is a decision of its own.
    PERFORM sluice.set_connector_status(p_connector, CASE WHEN p_ok THEN 'connected' ELSE p_status END,
                                        CASE WHEN p_ok THEN NULL ELSE p_message END)
       FROM sluice.connector WHERE id = p_connector AND status <> 'disabled';
END $$;

-- ---- views ----------------------------------------------------------------------

-- Every run, newest first, with its counts.
CREATE VIEW sluice.sync_runs AS
SELECT r.id, r.org_id, r.connector_id, r.status, r.trigger, r.due_at, r.started_at, r.finished_at,
       (r.stats_json #>> '{product,fetched}')::bigint AS products_fetched,
       (r.stats_json #>> '{product,failed}')::bigint AS products_failed,
       (r.stats_json #>> '{order,fetched}')::bigint AS orders_fetched,
       (r.stats_json #>> '{order,failed}')::bigint AS orders_failed,
       r.cursor ->> 'entity' AS reading, r.error
  FROM sluice.external_sync_run r
 ORDER BY r.created_at DESC;
