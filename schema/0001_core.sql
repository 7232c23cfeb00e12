-- 0001_core.sql — tenants, API keys, settings and the audit log.
--
-- Every object lives in schema "sluice". `sluicectl migrate` applies this file
-- once, in one transaction, and records its checksum in sluice.schema_migration.

-- Tenants.  Every other row in Sluice names the org it belongs to.
CREATE TABLE sluice.org (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION sluice.create_org(p_name text)
RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO sluice.org (name) VALUES (p_name) RETURNING id;
$$;

-- API keys.  Only the SHA-256 of a key is stored; the key itself is shown once,
-- by `sluicectl key create`.  prefix (the first characters of the key) lets a
-- person tell keys apart without the secret.  Scopes nest: admin ⊃ write ⊃ read.
CREATE TABLE sluice.api_key (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id        bigint NOT NULL REFERENCES sluice.org ON DELETE CASCADE,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    prefix        text NOT NULL,
    key_hash      bytea NOT NULL UNIQUE CHECK (length(key_hash) = 32),
    scopes        text[] NOT NULL
                  CHECK (cardinality(scopes) > 0
                         AND scopes <@ ARRAY['admin', 'write', 'read']),
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    last_used_at  timestamptz
);
CREATE INDEX api_key_org_idx ON sluice.api_key (org_id);

CREATE FUNCTION sluice.create_api_key(p_org bigint, p_name text, p_prefix text,
                                      p_key_hash bytea, p_scopes text[])
RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO sluice.api_key (org_id, name, prefix, key_hash, scopes)
    VALUES (p_org, p_name, p_prefix, p_key_hash, p_scopes)
    RETURNING id;
$$;

-- Revoking is permanent; the row stays so the audit log can still name the key.
CREATE FUNCTION sluice.revoke_api_key(p_key_id bigint)
RETURNS boolean LANGUAGE sql AS $$
    WITH r AS (
        UPDATE sluice.api_key SET revoked_at = now()
         WHERE id = p_key_id AND revoked_at IS NULL
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM r);
$$;

-- Looks a presented key up by its hash.  Returns no row for an unknown or
-- revoked key.  last_used_at is refreshed at most once a minute so that a busy
-- key does not turn every read into a write.
CREATE FUNCTION sluice.authenticate(p_key_hash bytea)
RETURNS TABLE (key_id bigint, org_id bigint, scopes text[])
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
        SELECT k.id, k.org_id, k.scopes FROM sluice.api_key k
         WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL;
    IF FOUND THEN
        UPDATE sluice.api_key k SET last_used_at = now()
         WHERE k.key_hash = p_key_hash
           AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute');
    END IF;
END $$;

-- Whether a key's scopes grant p_needed (admin grants write, write grants read).
CREATE FUNCTION sluice.scope_grants(p_scopes text[], p_needed text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_needed
        WHEN 'read'  THEN p_scopes && ARRAY['read', 'write', 'admin']
        WHEN 'write' THEN p_scopes && ARRAY['write', 'admin']
        WHEN 'admin' THEN p_scopes && ARRAY['admin']
        ELSE false END;
$$;

-- Settings an operator tunes in SQL.  Values are text so one table holds them
-- all; the typed accessors below parse them, and a CHECK keeps them parseable.
CREATE TABLE sluice.setting (
    name         text PRIMARY KEY,
    value        text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('interval', 'integer')),
    description  text NOT NULL,
    -- Every setting is a positive duration or count.
    CHECK (CASE kind WHEN 'interval' THEN value::interval > interval '0'
                     WHEN 'integer'  THEN value::integer > 0 END)
);

-- Typed accessors.  A missing row is an operator's mistake worth a clear
-- message rather than a NULL that breaks some constraint far away.
-- (plpgsql keeps their plans; a SQL function here is planned on every call.)
CREATE FUNCTION sluice.setting_value(p_name text, p_kind text)
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
    v text;
BEGIN
    SELECT value INTO v FROM sluice.setting WHERE name = p_name AND kind = p_kind;
    IF v IS NULL THEN
        RAISE EXCEPTION 'setting % (%) is missing from sluice.setting', p_name, p_kind
            USING ERRCODE = 'undefined_object',
                  HINT = 'Restore the row; docs/ops.md lists every setting and its default.';
    END IF;
    RETURN v;
END $$;

CREATE FUNCTION sluice.setting_interval(p_name text)
RETURNS interval LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN sluice.setting_value(p_name, 'interval')::interval;
END $$;

CREATE FUNCTION sluice.setting_int(p_name text)
RETURNS integer LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN sluice.setting_value(p_name, 'integer')::integer;
END $$;

-- Audit log: who did what, when, and how it ended.  Written in the same
-- transaction as the change it records.  detail never holds a secret.  org_id
-- has no foreign key on purpose: the log outlives what it describes.
CREATE TABLE sluice.audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    org_id      bigint,
    actor       text NOT NULL,
    action      text NOT NULL,
    target      text,
    outcome     text NOT NULL CHECK (outcome IN ('ok', 'refused', 'failed')),
    http_status integer,
    request_id  text,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_org_at_idx ON sluice.audit (org_id, at);
CREATE INDEX audit_at_idx ON sluice.audit (at);

CREATE FUNCTION sluice.audit_write(p_org bigint, p_actor text, p_action text,
                                   p_target text, p_outcome text,
                                   p_http_status integer DEFAULT NULL,
                                   p_request_id text DEFAULT NULL,
                                   p_detail jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE sql AS $$
    INSERT INTO sluice.audit (org_id, actor, action, target, outcome,
                              http_status, request_id, detail)
    VALUES (p_org, p_actor, p_action, p_target, p_outcome,
            p_http_status, p_request_id, coalesce(p_detail, '{}'))
    RETURNING id;
$$;
