-- 0005_keys.sql — data keys made safely: the first key without a race, no
-- secret written under a retired key, rotation of OAuth client secrets, a
-- move to a new master key.
--
-- DESIGN (the rest of DESIGN 3 of 0004_connectors.sql; common/secret.c is
-- the C side)
--
-- 1. The first key.  The first seal in a database finds no current data key
--    and makes one.  Processes that do so at once must end with one key, not
--    one each: ensure_data_key() inserts a current key unless there is one
--    (the unique index data_key_one_current decides; a loser waits for the
--    winner's commit) and returns the current key's id either way.
--    add_data_key() would instead demote the first process's key and make a
--    second one.
--
-- 2. No secret under a retired key.  A writer reads the current key, seals,
--    and writes the row a moment later.  A rotation may finish in between:
--    without more, retire_unused_data_keys() would not see the writer's
--    uncommitted row and would destroy the key that row needs.  So:
--      - every write of a sealed secret (credential, oauth_client) locks its
--        data key row FOR KEY SHARE (as its foreign key check does too) and
--        is refused with serialization_failure when the key is already
--        retired (trigger check_data_key); the writer seals again under the
--        current key and retries;
--      - retire_unused_data_keys() first locks the retiring keys FOR UPDATE,
--        which waits for every writer holding one of them to commit, and only
--        then, in a new statement with a new snapshot, looks for rows that
--        still use them.  A writer that comes later waits on that lock, then
--        finds the key retired (and is refused) or not (and may use it).
--    Writers never wait for add_data_key(): demoting the current key is a
--    no-key update, which FOR KEY SHARE does not block.
--    The rotation (sl_keys_rotate) re-encrypts such late rows and retires
--    again until no key is left retiring.
--
-- 3. One rotation at a time: sl_keys_rotate() holds the session advisory
--    lock rotation_lock_key() while it runs.

-- ---- the first key -----------------------------------------------------------

-- Makes the first data key (wrapped by the caller) unless a current one
-- exists; returns the current key's id.  Safe to call from many sessions at
-- once: exactly one key becomes current (DESIGN 1).
CREATE FUNCTION sluice.ensure_data_key(p_master_key_id text, p_wrapped bytea)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_id integer;
BEGIN
    INSERT INTO sluice.data_key (master_key_id, wrapped, state)
    VALUES (p_master_key_id, p_wrapped, 'current')
    ON CONFLICT DO NOTHING
    RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        -- Another session's key won; this statement's snapshot sees it.
        SELECT id INTO v_id FROM sluice.data_key WHERE state = 'current';
    END IF;
    RETURN v_id;
END $$;

-- ---- writes under a retired key are refused (DESIGN 2) -----------------------

CREATE FUNCTION sluice.check_data_key()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_state text;
BEGIN
    SELECT state INTO v_state FROM sluice.data_key WHERE id = NEW.key_id FOR KEY SHARE;
    IF v_state = 'retired' THEN
        RAISE EXCEPTION 'data key % is retired', NEW.key_id
            USING ERRCODE = 'serialization_failure',
                  HINT = 'Seal the secret again under the current data key and retry.';
    END IF;
    RETURN NEW;   -- a missing key is the foreign key's to report
END $$;

CREATE TRIGGER credential_check_data_key
    BEFORE INSERT OR UPDATE OF key_id, nonce, ciphertext ON sluice.credential
    FOR EACH ROW EXECUTE FUNCTION sluice.check_data_key();

CREATE TRIGGER oauth_client_check_data_key
    BEFORE INSERT OR UPDATE OF key_id, nonce, ciphertext ON sluice.oauth_client
    FOR EACH ROW EXECUTE FUNCTION sluice.check_data_key();

-- Retires every retiring key that no secret uses any more: its bytes are
-- destroyed.  Returns how many were retired.  It never retires a key a
-- concurrent writer is about to commit a row under (DESIGN 2).  Call it
-- outside an explicit transaction, or in one at READ COMMITTED.
CREATE FUNCTION sluice.retire_unused_data_keys()
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    LOCK TABLE sluice.data_key IN SHARE ROW EXCLUSIVE MODE;
    -- Waits for the writers holding a retiring key (trigger check_data_key).
    PERFORM 1 FROM sluice.data_key WHERE state = 'retiring' FOR UPDATE;
    -- A new statement, so a new snapshot: the rows those writers committed count.
    UPDATE sluice.data_key k SET state = 'retired', wrapped = NULL, retired_at = now()
     WHERE k.state = 'retiring'
       AND NOT EXISTS (SELECT 1 FROM sluice.credential c WHERE c.key_id = k.id)
       AND NOT EXISTS (SELECT 1 FROM sluice.oauth_client o WHERE o.key_id = k.id);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END $$;

-- ---- rotation ------------------------------------------------------------------

-- The advisory lock a rotation holds (DESIGN 3).
CREATE FUNCTION sluice.rotation_lock_key()
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$ SELECT 7306587213449517::bigint $$;

-- Re-encryption of an OAuth client secret during key rotation: replaces the
-- ciphertext only if the row still holds the one it was read with (p_old_nonce:
-- every seal draws a fresh nonce), like reencrypt_credential.
CREATE FUNCTION sluice.reencrypt_oauth_client(p_org bigint, p_type text, p_old_nonce bytea,
                                              p_key_id integer, p_nonce bytea,
                                              p_ciphertext bytea)
RETURNS boolean LANGUAGE sql AS $$
    WITH u AS (
        UPDATE sluice.oauth_client
           SET key_id = p_key_id, nonce = p_nonce, ciphertext = p_ciphertext
         WHERE org_id = p_org AND type = p_type AND nonce = p_old_nonce
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM u);
$$;

-- Moving to a new master key (sluicectl keys rewrap): replaces a data key's
-- wrapped bytes, wrapped by the caller under the new master key, if it is
-- still wrapped by the old one.  The data key itself, and so every secret,
-- stays the same.
CREATE FUNCTION sluice.rewrap_data_key(p_id integer, p_old_master_key_id text,
                                       p_new_master_key_id text, p_wrapped bytea)
RETURNS boolean LANGUAGE sql AS $$
    WITH u AS (
        UPDATE sluice.data_key SET master_key_id = p_new_master_key_id, wrapped = p_wrapped
         WHERE id = p_id AND master_key_id = p_old_master_key_id AND state <> 'retired'
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM u);
$$;

-- Disaster recovery when the master key is lost and no copy exists
-- (docs/ops.md, "Keys and secrets"): no sealed secret can be read again, so
-- every one is deleted; each connector that had one is set reauth_required
-- (its jobs are held until someone authorises it again; a disabled one
-- returns to reauth_required when enabled); OAuth apps must be stored again;
-- every data key is retired, so the next secret stored makes a new first key
-- under the master key given then.  Returns how many connectors lost their
-- secrets.
CREATE FUNCTION sluice.discard_unreadable_secrets()
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
    n integer := 0;
BEGIN
    LOCK TABLE sluice.data_key IN SHARE ROW EXCLUSIVE MODE;
    FOR v_id IN SELECT connector_id FROM sluice.credential ORDER BY connector_id FOR UPDATE LOOP
        DELETE FROM sluice.credential WHERE connector_id = v_id;
        UPDATE sluice.connector SET status_before_disable = 'reauth_required'
         WHERE id = v_id AND status = 'disabled';
        IF NOT FOUND THEN
            PERFORM sluice.set_connector_status(v_id, 'reauth_required',
                'its secrets were lost with the master key: authorise it again');
        END IF;
        n := n + 1;
    END LOOP;
    DELETE FROM sluice.oauth_client;
    UPDATE sluice.data_key SET state = 'retired', wrapped = NULL, retired_at = now()
     WHERE state <> 'retired';
    RETURN n;
END $$;

-- How many secrets are not under the current data key: what a rotation
-- still has to move.
CREATE FUNCTION sluice.secrets_on_old_keys()
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT (SELECT count(*) FROM sluice.credential c
             WHERE c.key_id <> ALL (SELECT id FROM sluice.data_key WHERE state = 'current'))
         + (SELECT count(*) FROM sluice.oauth_client o
             WHERE o.key_id <> ALL (SELECT id FROM sluice.data_key WHERE state = 'current'));
$$;
