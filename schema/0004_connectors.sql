-- 0004_connectors.sql — providers, connectors, encrypted credentials, OAuth
-- state, the event outbox.
--
-- DESIGN
--
-- 1. A provider is a kind of outside system (woocommerce, dv360, ...): how it
--    authenticates, where its OAuth and API endpoints are, what it can do.
--    This file seeds one row per type.  sluice.provider_override replaces the
--    URLs for one org (tests point them at loopback fakes); provider_for()
--    answers with the overrides applied.  A URL may hold {name} placeholders
--    filled from the connector's config (expand_url), for hosts that differ
--    per account (a ServiceNow instance, a Marketing Cloud subdomain).
--
-- 2. A connector is one org's authorised account in one provider.  Its status
--    changes only through set_connector_status(), which stamps
--    status_changed_at, writes a connector_status_changed event, and holds or
--    releases the connector's queued jobs: a connector that needs a person
--    (reauth_required, disabled) has its jobs held, not failed, until it is
--    connected again.  Deleting a connector keeps its row (jobs, events and
--    audit rows still name it) but destroys its secrets.
--
-- 3. Secrets are envelope-encrypted.  The master key lives outside the
--    database (SLUICE_MASTER_KEY or a key file); it wraps data keys, which
--    live here in sluice.data_key; data keys encrypt secrets with AES-256-GCM
--    (common/secret.c), a fresh nonce per write and the owner ("connector:<id>")
--    as associated data, so a ciphertext moved to another row does not
--    decrypt.  Each ciphertext names its data key.  Rotation makes a new
--    current key and re-encrypts row by row; the old key stays until no row
--    uses it, then its wrapped bytes are destroyed.  Nothing here is readable
--    without the master key.
--
-- 4. One refresh at a time.  The credential row is the lock: a worker that
--    finds the access token expired locks the row (FOR UPDATE), re-reads it,
--    and refreshes only if it is still expired; the others wait on the lock
--    and then find the new token.  version counts writes, so a reader can
--    tell "the token I used has just been replaced" from "the token is bad".
--    Writing a credential with an expiry schedules its oauth.refresh job
--    (oauth_refresh_margin before expiry).
--
-- 5. Events are an outbox: emit_event() inserts in the caller's transaction
--    and NOTIFYs 'sluice_events' at commit.  Readers page with "id > last
--    seen".  For that to never skip an event, ids must become visible in
--    order: emit_event() takes a transaction-level advisory lock before it
--    draws the id, so emitting transactions commit in id order.  The lock is
--    held to commit; emit events as the last step of a transaction.

-- ---- providers -------------------------------------------------------------

CREATE TABLE sluice.provider (
    type              text PRIMARY KEY CHECK (type ~ '^[a-z][a-z0-9_]{0,31}$'),
    name              text NOT NULL,
    auth_kind         text NOT NULL CHECK (auth_kind IN (
                          'oauth2_code', 'oauth2_client_credentials', 'api_key',
                          'basic', 'consumer_key', 'ssh_key', 'bearer_token')),
    directions        text[] NOT NULL CHECK (cardinality(directions) > 0
                          AND directions <@ ARRAY['source', 'destination']),
    authorize_url     text,
    token_url         text,
    api_base_url      text,
    scopes            text[] NOT NULL DEFAULT '{}',
    -- Extra query parameters of the authorization request (Google's
    -- access_type=offline, Atlassian's audience).
    authorize_params  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(authorize_params) = 'object'),
    -- How the client authenticates at the token endpoint (RFC 6749 2.3.1).
    token_auth        text NOT NULL DEFAULT 'client_secret_basic'
                      CHECK (token_auth IN ('client_secret_basic', 'client_secret_post')),
    -- The secret fields a connector of this type is created with.
    credential_fields text[] NOT NULL DEFAULT '{}',
    -- Non-secret config fields a connector of this type must have.
    config_fields     text[] NOT NULL DEFAULT '{}',
    capabilities      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(capabilities) = 'object'),
    docs_url          text,
    CHECK ((auth_kind = 'oauth2_code') = (authorize_url IS NOT NULL)),
    CHECK (auth_kind NOT LIKE 'oauth2%' OR token_url IS NOT NULL)
);

CREATE TABLE sluice.provider_override (
    org_id         bigint NOT NULL REFERENCES sluice.org ON DELETE CASCADE,
    type           text NOT NULL REFERENCES sluice.provider,
    authorize_url  text,
    token_url      text,
    api_base_url   text,
    PRIMARY KEY (org_id, type)
);

INSERT INTO sluice.provider (type, name, auth_kind, directions, authorize_url, token_url,
                             api_base_url, scopes, authorize_params, token_auth,
                             credential_fields, config_fields, capabilities, docs_url) VALUES
 ('woocommerce', 'WooCommerce', 'consumer_key', '{source}', NULL, NULL,
  '{base_url}/wp-json/wc/v3', '{}', '{}', 'client_secret_basic',
  '{consumer_key,consumer_secret}', '{base_url}',
  '{"read": ["products", "orders"], "delta": true}',
  'https://woocommerce.github.io/woocommerce-rest-api-docs/'),
 ('paypal', 'PayPal', 'oauth2_client_credentials', '{source}', NULL,
  'https://api-m.paypal.com/v1/oauth2/token', 'https://api-m.paypal.com',
  '{https://uri.paypal.com/services/reporting/search/read}', '{}', 'client_secret_basic',
  '{client_id,client_secret}', '{}',
  '{"read": ["transactions"], "delta": true}',
  'https://developer.paypal.com/api/rest/authentication/'),
 ('dv360', 'DV360', 'oauth2_code', '{source}',
  'https://accounts.google.com/o/oauth2/v2/auth', 'https://oauth2.googleapis.com/token',
  'https://displayvideo.googleapis.com/v3',
  '{https://www.googleapis.com/auth/display-video,https://www.googleapis.com/auth/doubleclickbidmanager}',
  '{"access_type": "offline", "prompt": "consent"}', 'client_secret_post',
  '{}', '{}', '{"read": ["reports"], "write": false}',
  'https://developers.google.com/display-video/api/guides/getting-started/overview'),
 ('ttd', 'The Trade Desk', 'api_key', '{source}', NULL, NULL,
  'https://api.thetradedesk.com/v3', '{}', '{}', 'client_secret_basic',
  '{api_key}', '{}', '{"read": ["reports"], "write": false}',
  'https://partner.thetradedesk.com/v3/portal/api/doc/Authentication'),
 ('meta', 'Meta', 'oauth2_code', '{source}',
  'https://www.facebook.com/v21.0/dialog/oauth',
  'https://graph.facebook.com/v21.0/oauth/access_token',
  'https://graph.facebook.com/v21.0', '{ads_read}', '{}', 'client_secret_post',
  '{}', '{}', '{"read": ["insights"], "write": false}',
  'https://developers.facebook.com/docs/marketing-api/overview/authorization'),
 ('google_ads', 'Google Ads', 'oauth2_code', '{source}',
  'https://accounts.google.com/o/oauth2/v2/auth', 'https://oauth2.googleapis.com/token',
  'https://googleads.googleapis.com/v18', '{https://www.googleapis.com/auth/adwords}',
  '{"access_type": "offline", "prompt": "consent"}', 'client_secret_post',
  '{}', '{}', '{"read": ["reports"], "write": false}',
  'https://developers.google.com/google-ads/api/docs/oauth/overview'),
 ('sheets', 'Google Sheets', 'oauth2_code', '{source,destination}',
  'https://accounts.google.com/o/oauth2/v2/auth', 'https://oauth2.googleapis.com/token',
  'https://sheets.googleapis.com/v4', '{https://www.googleapis.com/auth/spreadsheets}',
  '{"access_type": "offline", "prompt": "consent"}', 'client_secret_post',
  '{}', '{}', '{"read": ["rows"], "write": ["rows"]}',
  'https://developers.google.com/sheets/api/guides/authorizing'),
 ('salesforce', 'Salesforce', 'oauth2_code', '{destination}',
  'https://login.salesforce.com/services/oauth2/authorize',
  'https://login.salesforce.com/services/oauth2/token',
  NULL, '{api,refresh_token}', '{}', 'client_secret_post',
  '{}', '{}', '{"write": ["insert", "upsert"], "discovery": true}',
  'https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_web_server_flow.htm'),
 ('sfmc', 'Salesforce Marketing Cloud', 'oauth2_client_credentials', '{destination}', NULL,
  'https://{subdomain}.auth.marketingcloudapis.com/v2/token',
  'https://{subdomain}.rest.marketingcloudapis.com', '{}', '{}', 'client_secret_post',
  '{client_id,client_secret}', '{subdomain}',
  '{"write": ["insert", "upsert"], "discovery": true}',
  'https://developer.salesforce.com/docs/marketing/marketing-cloud/guide/access-token-s2s.html'),
 ('servicenow', 'ServiceNow', 'basic', '{destination}', NULL, NULL,
  'https://{instance}.service-now.com/api/now', '{}', '{}', 'client_secret_basic',
  '{username,password}', '{instance}', '{"write": ["insert", "upsert"], "discovery": true}',
  'https://docs.servicenow.com/bundle/latest/page/integrate/inbound-rest/concept/c_RESTAPI.html'),
 ('jira', 'JIRA', 'oauth2_code', '{destination}',
  'https://auth.atlassian.com/authorize', 'https://auth.atlassian.com/oauth/token',
  'https://api.atlassian.com/ex/jira/{cloud_id}',
  '{read:jira-work,write:jira-work,offline_access}',
  '{"audience": "api.atlassian.com", "prompt": "consent"}', 'client_secret_post',
  '{}', '{}', '{"write": ["insert"], "discovery": true}',
  'https://developer.atlassian.com/cloud/jira/platform/oauth-2-3lo-apps/'),
 ('sftp', 'SFTP', 'ssh_key', '{destination}', NULL, NULL, NULL, '{}', '{}',
  'client_secret_basic', '{private_key}', '{host,username}',
  '{"write": ["csv", "json"]}', 'https://www.openssh.com/manual.html'),
 ('webhook', 'Webhook', 'bearer_token', '{destination}', NULL, NULL, NULL, '{}', '{}',
  'client_secret_basic', '{token}', '{url}', '{"write": ["json"]}', NULL),
 ('trustfile', 'Trustfile', 'bearer_token', '{destination}', NULL, NULL,
  '{base_url}', '{}', '{}', 'client_secret_basic', '{token}', '{base_url}',
  '{"write": ["orders", "alerts"]}', NULL);

-- Replaces each {name} in p_url by p_config ->> name.  A value that could
-- change the URL's shape (anything but letters, digits, '.', '-', '_', or
-- for a base_url a whole http(s) URL) is refused, so config cannot smuggle a
-- path or a host into a template.  Returns NULL when p_url is NULL.
CREATE FUNCTION sluice.expand_url(p_url text, p_config jsonb)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_name  text;
    v_value text;
BEGIN
    IF p_url IS NULL THEN
        RETURN NULL;
    END IF;
    FOR v_name IN SELECT m[1] FROM regexp_matches(p_url, '\{([a-z_]+)\}', 'g') AS m LOOP
        v_value := p_config ->> v_name;
        IF v_value IS NULL THEN
            RAISE EXCEPTION 'config.% is required', v_name
                USING ERRCODE = 'not_null_violation', COLUMN = v_name;
        END IF;
        IF v_name = 'base_url' THEN
            IF v_value !~ '^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/-]*)?$' THEN
                RAISE EXCEPTION 'config.base_url must be an http or https URL without query or fragment'
                    USING ERRCODE = 'check_violation', COLUMN = v_name;
            END IF;
            v_value := rtrim(v_value, '/');
        ELSIF v_value !~ '^[A-Za-z0-9._-]{1,100}$' THEN
            RAISE EXCEPTION 'config.% may hold only letters, digits, ".", "-" and "_"', v_name
                USING ERRCODE = 'check_violation', COLUMN = v_name;
        END IF;
        p_url := replace(p_url, '{' || v_name || '}', v_value);
    END LOOP;
    RETURN p_url;
END $$;

-- A provider as one org sees it: the org's overrides applied.  The URLs may
-- still hold {placeholders}; connector_endpoints() fills them.
CREATE FUNCTION sluice.provider_for(p_org bigint, p_type text)
RETURNS TABLE (type text, name text, auth_kind text, directions text[],
               authorize_url text, token_url text, api_base_url text,
               scopes text[], authorize_params jsonb, token_auth text,
               credential_fields text[], config_fields text[], capabilities jsonb)
LANGUAGE sql STABLE AS $$
    SELECT p.type, p.name, p.auth_kind, p.directions,
           coalesce(o.authorize_url, p.authorize_url),
           coalesce(o.token_url, p.token_url),
           coalesce(o.api_base_url, p.api_base_url),
           p.scopes, p.authorize_params, p.token_auth,
           p.credential_fields, p.config_fields, p.capabilities
      FROM sluice.provider p
      LEFT JOIN sluice.provider_override o ON o.org_id = p_org AND o.type = p.type
     WHERE p.type = lower(p_type);
$$;

-- Operators: point one org's provider somewhere else (NULL keeps the default).
CREATE FUNCTION sluice.set_provider_override(p_org bigint, p_type text,
                                             p_authorize_url text DEFAULT NULL,
                                             p_token_url text DEFAULT NULL,
                                             p_api_base_url text DEFAULT NULL)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO sluice.provider_override (org_id, type, authorize_url, token_url, api_base_url)
    VALUES (p_org, lower(p_type), p_authorize_url, p_token_url, p_api_base_url)
    ON CONFLICT (org_id, type) DO UPDATE
       SET authorize_url = excluded.authorize_url, token_url = excluded.token_url,
           api_base_url = excluded.api_base_url;
$$;

-- ---- connectors ------------------------------------------------------------

CREATE TABLE sluice.connector (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id                  bigint NOT NULL REFERENCES sluice.org ON DELETE CASCADE,
    type                    text NOT NULL REFERENCES sluice.provider,
    direction               text NOT NULL CHECK (direction IN ('source', 'destination')),
    label                   text NOT NULL CHECK (length(label) BETWEEN 1 AND 200),
    enabled                 boolean NOT NULL DEFAULT true,
    status                  text NOT NULL DEFAULT 'pending' CHECK (status IN (
                                'pending', 'connected', 'reauth_required', 'disabled', 'error')),
    status_message          text CHECK (length(status_message) <= 1000),
    status_changed_at       timestamptz NOT NULL DEFAULT now(),
    -- The status to return to when a disabled connector is enabled again.
    status_before_disable   text,
    config                  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    -- The account in the outside system (seed 001's account_id), and the
    -- host system's own name for this connection (seed 000).
    account_id              text CHECK (length(account_id) <= 255),
    account_name            text CHECK (length(account_name) <= 255),
    host_system_identifier  text CHECK (length(host_system_identifier) <= 255),
    health_status           text NOT NULL DEFAULT 'unknown'
                            CHECK (health_status IN ('unknown', 'healthy', 'degraded', 'unhealthy')),
    health_checked_at       timestamptz,
    latency_ms              integer,
    error_rate              real,
    last_test_at            timestamptz,
    last_sync_at            timestamptz,
    next_sync_at            timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz
);
CREATE INDEX connector_org_idx ON sluice.connector (org_id, created_at) WHERE deleted_at IS NULL;
CREATE INDEX connector_type_idx ON sluice.connector (type);

-- Jobs held because their connector needs a person run at this time: far
-- enough never to come, finite so that arithmetic on run_at stays defined.
CREATE FUNCTION sluice.held_run_at()
RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$ SELECT timestamptz '9999-01-01 00:00:00+00' $$;

-- Creates a connector.  Checks the type, the direction it allows and the
-- config fields it needs; returns the id.  Status starts 'pending'.
CREATE FUNCTION sluice.create_connector(p_org bigint, p_type text, p_label text,
                                        p_direction text DEFAULT NULL,
                                        p_config jsonb DEFAULT '{}')
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    p  record;
    v_field text;
    v_id uuid;
BEGIN
    SELECT * INTO p FROM sluice.provider_for(p_org, p_type);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown connector type "%"', p_type
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'type',
                  HINT = 'sluice.provider lists the types.';
    END IF;
    p_direction := coalesce(p_direction, p.directions[1]);
    IF NOT p_direction = ANY (p.directions) THEN
        RAISE EXCEPTION '% connectors cannot be a %', p.name, p_direction
            USING ERRCODE = 'check_violation', COLUMN = 'direction';
    END IF;
    FOREACH v_field IN ARRAY p.config_fields LOOP
        IF coalesce(p_config ->> v_field, '') = '' THEN
            RAISE EXCEPTION 'config.% is required for % connectors', v_field, p.name
                USING ERRCODE = 'not_null_violation', COLUMN = v_field;
        END IF;
    END LOOP;
    -- Placeholders must expand: a bad value is refused now, not at first use.
    PERFORM sluice.expand_url(p.authorize_url, p_config), sluice.expand_url(p.token_url, p_config),
            sluice.expand_url(p.api_base_url, p_config);
    INSERT INTO sluice.connector (org_id, type, direction, label, config)
    VALUES (p_org, p.type, p_direction, p_label, coalesce(p_config, '{}'))
    RETURNING id INTO v_id;
    RETURN v_id;
END $$;

-- The connector's endpoints, overrides applied and placeholders filled.
CREATE FUNCTION sluice.connector_endpoints(p_connector uuid)
RETURNS TABLE (type text, auth_kind text, authorize_url text, token_url text,
               api_base_url text, scopes text[], authorize_params jsonb, token_auth text)
LANGUAGE sql STABLE AS $$
    SELECT p.type, p.auth_kind, sluice.expand_url(p.authorize_url, c.config),
           sluice.expand_url(p.token_url, c.config), sluice.expand_url(p.api_base_url, c.config),
           p.scopes, p.authorize_params, p.token_auth
      FROM sluice.connector c
     CROSS JOIN LATERAL sluice.provider_for(c.org_id, c.type) p
     WHERE c.id = p_connector;
$$;

-- ---- events ----------------------------------------------------------------

CREATE TABLE sluice.event (
    id            bigint PRIMARY KEY,
    org_id        bigint NOT NULL,
    at            timestamptz NOT NULL DEFAULT now(),
    type          text NOT NULL CHECK (type ~ '^[a-z][a-z0-9_]{0,63}$'),
    connector_id  uuid,
    data          jsonb NOT NULL DEFAULT '{}'
);
CREATE SEQUENCE sluice.event_id_seq OWNED BY sluice.event.id;
CREATE INDEX event_org_idx ON sluice.event (org_id, id);

CREATE FUNCTION sluice.event_lock_key()
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$ SELECT 7306587213449516::bigint $$;

-- Writes an event in the caller's transaction (DESIGN 5) and NOTIFYs
-- 'sluice_events' with {"id", "org_id", "type"} when it commits.
CREATE FUNCTION sluice.emit_event(p_org bigint, p_type text, p_connector uuid DEFAULT NULL,
                                  p_data jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(sluice.event_lock_key());
    INSERT INTO sluice.event (id, org_id, type, connector_id, data)
    VALUES (nextval('sluice.event_id_seq'), p_org, p_type, p_connector, coalesce(p_data, '{}'))
    RETURNING id INTO v_id;
    PERFORM pg_notify('sluice_events',
                      json_build_object('id', v_id, 'org_id', p_org, 'type', p_type)::text);
    RETURN v_id;
END $$;

-- Events of one org after an id, oldest first: what GET /api/v1/events serves.
CREATE FUNCTION sluice.events_after(p_org bigint, p_after bigint DEFAULT 0,
                                    p_limit integer DEFAULT 100)
RETURNS SETOF sluice.event LANGUAGE sql STABLE AS $$
    SELECT * FROM sluice.event
     WHERE org_id = p_org AND id > coalesce(p_after, 0)
     ORDER BY id
     LIMIT least(greatest(coalesce(p_limit, 100), 1), 1000);
$$;

-- ---- connector status ------------------------------------------------------

-- Holding and releasing a connector's jobs (hold_connector_jobs,
-- release_connector_jobs) are in 0006_rate_limits.sql: they also close and
-- open the rate-limit gate of the jobs that wait at one.

-- The one way a connector's status changes (DESIGN 2).  Returns whether it
-- changed.  Entering reauth_required or disabled holds the connector's jobs;
-- leaving them releases the jobs.
CREATE FUNCTION sluice.set_connector_status(p_connector uuid, p_status text,
                                            p_message text DEFAULT NULL)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    c sluice.connector;
BEGIN
    SELECT * INTO c FROM sluice.connector WHERE id = p_connector FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'connector % does not exist', p_connector
            USING ERRCODE = 'no_data_found';
    END IF;
    IF c.status = p_status AND c.status_message IS NOT DISTINCT FROM p_message THEN
        RETURN false;
    END IF;
    UPDATE sluice.connector
       SET status = p_status, status_message = left(p_message, 1000),
           status_changed_at = CASE WHEN status = p_status THEN status_changed_at ELSE now() END,
           updated_at = now()
     WHERE id = p_connector;
    IF c.status = p_status THEN
        RETURN true;   -- a new message, not a new status
    END IF;
    IF p_status IN ('reauth_required', 'disabled') THEN
        PERFORM sluice.hold_connector_jobs(p_connector,
            format('connector %s is %s', p_connector, p_status));
    ELSIF c.status IN ('reauth_required', 'disabled') THEN
        PERFORM sluice.release_connector_jobs(p_connector);
    END IF;
    PERFORM sluice.emit_event(c.org_id, 'connector_status_changed', p_connector,
        jsonb_build_object('from', c.status, 'to', p_status, 'message', p_message));
    RETURN true;
END $$;

-- Enables or disables a connector.  Disabling remembers the status to come
-- back to; enabling returns to it.  Returns whether anything changed.
CREATE FUNCTION sluice.set_connector_enabled(p_connector uuid, p_enabled boolean)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    c sluice.connector;
BEGIN
    SELECT * INTO c FROM sluice.connector WHERE id = p_connector FOR UPDATE;
    IF NOT FOUND OR c.enabled = p_enabled THEN
        RETURN false;
    END IF;
    IF p_enabled THEN
        UPDATE sluice.connector SET enabled = true, status_before_disable = NULL
         WHERE id = p_connector;
        PERFORM sluice.set_connector_status(p_connector,
            coalesce(c.status_before_disable, 'pending'),
            CASE c.status_before_disable WHEN 'reauth_required' THEN c.status_message END);
    ELSE
        UPDATE sluice.connector SET enabled = false, status_before_disable = c.status
         WHERE id = p_connector;
        PERFORM sluice.set_connector_status(p_connector, 'disabled', 'disabled by a user');
    END IF;
    RETURN true;
END $$;

-- ---- secrets ---------------------------------------------------------------

-- Data keys (DESIGN 3): 32 random bytes each, wrapped by the master key with
-- AES-256-GCM (nonce || ciphertext || tag).  master_key_id is a fingerprint
-- of the master key, so a wrong one is named rather than failing obscurely.
-- Exactly one key is current; retired keys have lost their bytes.
CREATE TABLE sluice.data_key (
    id             integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    master_key_id  text NOT NULL,
    wrapped        bytea CHECK (length(wrapped) = 12 + 32 + 16),
    state          text NOT NULL CHECK (state IN ('current', 'retiring', 'retired')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    retired_at     timestamptz,
    CHECK ((state = 'retired') = (wrapped IS NULL))
);
CREATE UNIQUE INDEX data_key_one_current ON sluice.data_key ((true)) WHERE state = 'current';

-- A connector's secrets: one JSON object (access and refresh tokens, API
-- keys, passwords), encrypted.  Nothing secret is stored in the clear;
-- access_expires_at is not a secret and drives refresh scheduling.
CREATE TABLE sluice.credential (
    connector_id       uuid PRIMARY KEY REFERENCES sluice.connector ON DELETE CASCADE,
    org_id             bigint NOT NULL,
    key_id             integer NOT NULL REFERENCES sluice.data_key,
    nonce              bytea NOT NULL CHECK (length(nonce) = 12),
    ciphertext         bytea NOT NULL CHECK (length(ciphertext) >= 16),
    version            bigint NOT NULL DEFAULT 1,
    access_expires_at  timestamptz,
    refreshed_at       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credential_key_idx ON sluice.credential (key_id);

-- An org's OAuth client (app) registration per provider, for the
-- authorization code flow.  The client secret is encrypted like a credential.
CREATE TABLE sluice.oauth_client (
    org_id      bigint NOT NULL REFERENCES sluice.org ON DELETE CASCADE,
    type        text NOT NULL REFERENCES sluice.provider,
    client_id   text NOT NULL CHECK (length(client_id) BETWEEN 1 AND 500),
    key_id      integer NOT NULL REFERENCES sluice.data_key,
    nonce       bytea NOT NULL CHECK (length(nonce) = 12),
    ciphertext  bytea NOT NULL CHECK (length(ciphertext) >= 16),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, type)
);
CREATE INDEX oauth_client_key_idx ON sluice.oauth_client (key_id);

-- Makes a new current data key (the caller wrapped it); the old current one
-- becomes 'retiring' until nothing uses it.  Returns the new key's id.
CREATE FUNCTION sluice.add_data_key(p_master_key_id text, p_wrapped bytea)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_id integer;
BEGIN
    LOCK TABLE sluice.data_key IN SHARE ROW EXCLUSIVE MODE;
    UPDATE sluice.data_key SET state = 'retiring' WHERE state = 'current';
    INSERT INTO sluice.data_key (master_key_id, wrapped, state)
    VALUES (p_master_key_id, p_wrapped, 'current')
    RETURNING id INTO v_id;
    RETURN v_id;
END $$;

-- Retiring keys no secret uses any more are destroyed by
-- sluice.retire_unused_data_keys() (0005_keys.sql).

-- Where each key stands: how many secrets it still encrypts.
CREATE VIEW sluice.data_keys AS
SELECT k.id, k.state, k.master_key_id, k.created_at, k.retired_at,
       (SELECT count(*) FROM sluice.credential c WHERE c.key_id = k.id)
     + (SELECT count(*) FROM sluice.oauth_client o WHERE o.key_id = k.id) AS secrets
  FROM sluice.data_key k;

-- Schedules (or moves) the connector's oauth.refresh job to
-- oauth_refresh_margin before its access token expires (DESIGN 4).  A
-- queued refresh job is moved rather than a second one added; one running
-- now is left alone (it is the caller, usually).
CREATE FUNCTION sluice.schedule_token_refresh(p_connector uuid)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_org bigint;
    v_at  timestamptz;
    v_id  bigint;
BEGIN
    SELECT c.org_id, c.access_expires_at - sluice.setting_interval('oauth_refresh_margin')
      INTO v_org, v_at
      FROM sluice.credential c WHERE c.connector_id = p_connector;
    IF v_at IS NULL THEN
        RETURN NULL;
    END IF;
    UPDATE sluice.job SET run_at = greatest(v_at, clock_timestamp())
     WHERE connector_id = p_connector AND kind = 'oauth.refresh' AND state <> 'running'
       AND run_at <> sluice.held_run_at()
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        SELECT e.job_id INTO v_id
          FROM sluice.enqueue(v_org, 'oauth.refresh', '{}', 3, v_at, NULL, NULL, p_connector) e;
    END IF;
    RETURN v_id;
END $$;

-- Writes a connector's secrets (encrypted by the caller under p_key_id) and
-- returns the new version.  p_expect_version, when given, must match the
-- stored version: a writer that read an older one lost a race and gets
-- serialization_failure.  An access token expiry schedules its refresh.
CREATE FUNCTION sluice.write_credential(p_connector uuid, p_key_id integer, p_nonce bytea,
                                        p_ciphertext bytea,
                                        p_access_expires_at timestamptz DEFAULT NULL,
                                        p_expect_version bigint DEFAULT NULL,
                                        p_refreshed boolean DEFAULT false)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_org     bigint;
    v_version bigint;
BEGIN
    SELECT org_id INTO v_org FROM sluice.connector WHERE id = p_connector AND deleted_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'connector % does not exist', p_connector USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO sluice.credential AS c (connector_id, org_id, key_id, nonce, ciphertext,
                                        access_expires_at, refreshed_at)
    VALUES (p_connector, v_org, p_key_id, p_nonce, p_ciphertext, p_access_expires_at,
            CASE WHEN p_refreshed THEN now() END)
    ON CONFLICT (connector_id) DO UPDATE
       SET key_id = excluded.key_id, nonce = excluded.nonce, ciphertext = excluded.ciphertext,
           access_expires_at = excluded.access_expires_at,
           refreshed_at = coalesce(excluded.refreshed_at, c.refreshed_at),
           version = c.version + 1, updated_at = now()
     WHERE p_expect_version IS NULL OR c.version = p_expect_version
    RETURNING version INTO v_version;
    IF v_version IS NULL THEN
        RAISE EXCEPTION 'credential of connector % changed since it was read', p_connector
            USING ERRCODE = 'serialization_failure';
    END IF;
    PERFORM sluice.schedule_token_refresh(p_connector);
    RETURN v_version;
END $$;

-- Re-encryption during key rotation: replaces the ciphertext only if the
-- row still has the version it was read at (a refresh in between wins and
-- the row is simply taken again later).  Does not count as a new version:
-- the secret did not change.
CREATE FUNCTION sluice.reencrypt_credential(p_connector uuid, p_version bigint, p_key_id integer,
                                            p_nonce bytea, p_ciphertext bytea)
RETURNS boolean LANGUAGE sql AS $$
    WITH u AS (
        UPDATE sluice.credential SET key_id = p_key_id, nonce = p_nonce, ciphertext = p_ciphertext
         WHERE connector_id = p_connector AND version = p_version
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM u);
$$;

-- Deletes a connector: disabled, its secrets destroyed, its waiting jobs
-- cancelled; the row stays for history (DESIGN 2).  Returns false if it was
-- already gone.
CREATE FUNCTION sluice.delete_connector(p_connector uuid)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    c sluice.connector;
    v_job bigint;
BEGIN
    SELECT * INTO c FROM sluice.connector WHERE id = p_connector AND deleted_at IS NULL FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM sluice.credential WHERE connector_id = p_connector;
    FOR v_job IN SELECT id FROM sluice.job
                  WHERE connector_id = p_connector AND state <> 'running' LOOP
        PERFORM sluice.cancel_job(v_job, 'connector deleted');
    END LOOP;
    PERFORM sluice.set_connector_status(p_connector, 'disabled', 'deleted');
    UPDATE sluice.connector SET deleted_at = now(), enabled = false WHERE id = p_connector;
    RETURN true;
END $$;

-- ---- OAuth authorization code flow ------------------------------------------

-- The redirect URIs an org may use, matched exactly (RFC 9700 2.1).
CREATE TABLE sluice.oauth_redirect_uri (
    org_id  bigint NOT NULL REFERENCES sluice.org ON DELETE CASCADE,
    uri     text NOT NULL CHECK (uri ~ '^https?://[^\s#]+$' AND length(uri) <= 2000),
    PRIMARY KEY (org_id, uri)
);

CREATE FUNCTION sluice.allow_redirect_uri(p_org bigint, p_uri text)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO sluice.oauth_redirect_uri (org_id, uri) VALUES (p_org, p_uri)
    ON CONFLICT DO NOTHING;
$$;

CREATE FUNCTION sluice.redirect_uri_allowed(p_org bigint, p_uri text)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM sluice.oauth_redirect_uri WHERE org_id = p_org AND uri = p_uri);
$$;

-- One authorization in flight.  Only the SHA-256 of the state is kept; the
-- PKCE verifier is derived from the state and the master key (common/secret.c),
-- so nothing here lets a reader of the database finish the flow.
CREATE TABLE sluice.oauth_state (
    state_hash    bytea PRIMARY KEY CHECK (length(state_hash) = 32),
    org_id        bigint NOT NULL REFERENCES sluice.org ON DELETE CASCADE,
    type          text NOT NULL REFERENCES sluice.provider,
    redirect_uri  text NOT NULL,
    return_url    text,
    connector_id  uuid REFERENCES sluice.connector ON DELETE CASCADE,
    label         text,
    actor         text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz
);
CREATE INDEX oauth_state_expires_idx ON sluice.oauth_state (expires_at);

-- Takes a state for its one use.  Returns the flow it began, with problem
-- NULL; or problem 'unknown', 'used' or 'expired' (and the flow's org when
-- known).  A state is spent by the first attempt, successful or not.
CREATE FUNCTION sluice.take_oauth_state(p_state_hash bytea)
RETURNS TABLE (problem text, org_id bigint, type text, redirect_uri text, return_url text,
               connector_id uuid, label text)
LANGUAGE plpgsql AS $$
DECLARE
    s sluice.oauth_state;
BEGIN
    SELECT * INTO s FROM sluice.oauth_state WHERE state_hash = p_state_hash FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::bigint, NULL::text, NULL::text, NULL::text,
                            NULL::uuid, NULL::text;
        RETURN;
    END IF;
    IF s.used_at IS NOT NULL THEN
        problem := 'used';
    ELSIF s.expires_at <= now() THEN
        problem := 'expired';
    END IF;
    UPDATE sluice.oauth_state SET used_at = coalesce(used_at, now())
     WHERE state_hash = p_state_hash;
    RETURN QUERY SELECT problem, s.org_id, s.type, s.redirect_uri, s.return_url,
                        s.connector_id, s.label;
END $$;

-- Spent and expired states are of no use after a day.
CREATE FUNCTION sluice.prune_oauth_states()
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM sluice.oauth_state WHERE expires_at < now() - interval '1 day';
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- ---- settings, kinds, views -------------------------------------------------

INSERT INTO sluice.setting (name, value, kind, description) VALUES
 ('oauth_state_ttl', '10 minutes', 'interval',
  'How long an OAuth authorization may take from initiate to callback.'),
 ('oauth_refresh_margin', '5 minutes', 'interval',
  'How long before an access token expires its refresh job runs.');

INSERT INTO sluice.kind_policy (kind, timeout, max_attempts) VALUES
 ('oauth.refresh', '1 minute', 10);

-- Connectors for operators: no secrets here, only whether there are any.
CREATE VIEW sluice.connectors AS
SELECT c.id, c.org_id, c.type, c.direction, c.label, c.enabled, c.status, c.status_message,
       c.status_changed_at, c.account_id, c.health_status, c.last_sync_at, c.next_sync_at,
       cr.connector_id IS NOT NULL AS has_credential, cr.key_id AS credential_key_id,
       cr.access_expires_at, cr.refreshed_at, c.created_at, c.deleted_at
  FROM sluice.connector c
  LEFT JOIN sluice.credential cr ON cr.connector_id = c.id;

-- The audit log, newest first, for operators.
CREATE VIEW sluice.audit_log AS
SELECT id, at, org_id, actor, action, target, outcome, http_status, request_id, detail
  FROM sluice.audit ORDER BY id DESC;

-- Records the outcome of a connection check (the connector.check job, an
-- adapter's test): health, latency, last_test_at.  A good check connects a
-- pending or failed connector; a bad one marks it unhealthy and leaves its
-- status to the caller, who knows whether the failure is the connector's.
CREATE FUNCTION sluice.record_connector_check(p_connector uuid, p_ok boolean,
                                              p_latency_ms integer, p_message text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
BEGIN
    UPDATE sluice.connector
       SET health_status = CASE WHEN p_ok THEN 'healthy' ELSE 'unhealthy' END,
           health_checked_at = now(), latency_ms = p_latency_ms, last_test_at = now(),
           updated_at = now()
     WHERE id = p_connector
    RETURNING status INTO v_status;
    IF p_ok AND v_status IN ('pending', 'error') THEN
        PERFORM sluice.set_connector_status(p_connector, 'connected', NULL);
    END IF;
END $$;

INSERT INTO sluice.kind_policy (kind, timeout, max_attempts) VALUES
 ('connector.check', '2 minutes', 3);
