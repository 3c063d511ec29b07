-- Audit trail: an append-only, hash-chained log of staff access to customer
-- data, admin changes, issued tokens, backups, restores and GDPR requests.
--
-- Runs as legiond_owner (see migrate.go), which owns every object here.
-- The application (legiond_app) may INSERT entries and SELECT those of its
-- scope; nobody may UPDATE, DELETE or TRUNCATE them (no grant, no policy,
-- and statement triggers that raise for every role, the owner included).
--
-- Chain: entry n stores prev_hash = hash of entry n-1 (32 zero bytes for
-- n = 1) and hash = sha256(prev_hash || audit_entry_bytes(entry n)). seq,
-- at, prev_hash and hash are set by the BEFORE INSERT trigger under a
-- transaction-level advisory lock, so appends are serialised, seq has no
-- gaps (a rolled-back append releases its number) and the chain is linear.
-- `legiond audit verify` recomputes every hash in Go from the columns.

-- +goose Up

CREATE TABLE legiond.audit_log (
  seq          bigint PRIMARY KEY CONSTRAINT audit_seq_positive CHECK (seq > 0),
  at           timestamptz NOT NULL,
  actor        text NOT NULL CONSTRAINT audit_actor_len CHECK (length(actor) BETWEEN 1 AND 200),
  actor_role   text NOT NULL DEFAULT '' CONSTRAINT audit_actor_role_len CHECK (length(actor_role) <= 64),
  action       text NOT NULL CONSTRAINT audit_action_format CHECK (action ~ '^[a-z][a-z0-9_.-]{0,63}$'),
  -- The tenant the entry is about: a partner, a customer, or neither (the
  -- platform). No foreign keys: entries outlive the rows they name.
  partner_id   uuid,
  customer_id  uuid,
  target       text NOT NULL DEFAULT '' CONSTRAINT audit_target_len CHECK (length(target) <= 400),
  details      jsonb NOT NULL DEFAULT '{}' CONSTRAINT audit_details_format CHECK (jsonb_typeof(details) = 'object' AND length(details::text) <= 16384),
  prev_hash    bytea NOT NULL CONSTRAINT audit_prev_hash_len CHECK (length(prev_hash) = 32),
  hash         bytea NOT NULL CONSTRAINT audit_hash_len CHECK (length(hash) = 32),
  CONSTRAINT audit_one_owner CHECK (num_nonnulls(partner_id, customer_id) <= 1)
);
CREATE INDEX audit_log_actor_idx ON legiond.audit_log (actor);
CREATE INDEX audit_log_customer_idx ON legiond.audit_log (customer_id) WHERE customer_id IS NOT NULL;
CREATE INDEX audit_log_partner_idx ON legiond.audit_log (partner_id) WHERE partner_id IS NOT NULL;

-- The canonical encoding an entry's hash covers. Every field is fixed
-- width or length-prefixed (int4 length, -1 for NULL), so no two entries
-- encode alike. storage/postgres/audit.go (auditEntryBytes) is the same
-- function in Go; change both together, with a new version tag.
-- +goose StatementBegin
CREATE FUNCTION legiond.audit_lp(b bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN b IS NULL THEN int4send(-1) ELSE int4send(length(b)) || b END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION legiond.audit_entry_bytes(seq bigint, at timestamptz, actor text, actor_role text, action text,
  partner_id uuid, customer_id uuid, target text, details jsonb) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT convert_to('legiond-audit-v1', 'UTF8')
      || int8send(seq)
      || int8send((extract(epoch FROM at) * 1000000)::bigint)
      || legiond.audit_lp(convert_to(actor, 'UTF8'))
      || legiond.audit_lp(convert_to(actor_role, 'UTF8'))
      || legiond.audit_lp(convert_to(action, 'UTF8'))
      || legiond.audit_lp(uuid_send(partner_id))
      || legiond.audit_lp(uuid_send(customer_id))
      || legiond.audit_lp(convert_to(target, 'UTF8'))
      || legiond.audit_lp(convert_to(details::text, 'UTF8'))
$$;
-- +goose StatementEnd

-- Appends: take the chain lock, read the head across tenants (the scope is
-- switched to platform for that one query and restored), then fill in seq,
-- at, prev_hash and hash. Whatever the caller put there is overwritten.
-- The lock is held to the end of the transaction, so the next append sees
-- this one (each query of a PL/pgSQL function takes a fresh snapshot under
-- READ COMMITTED, the isolation the store uses).
-- +goose StatementBegin
CREATE FUNCTION legiond.audit_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  saved text := coalesce(current_setting('legiond.tenant', true), '');
  last_seq bigint;
  last_hash bytea;
BEGIN
  PERFORM pg_advisory_xact_lock(7809644666444887040); -- 'legiond' audit chain
  PERFORM set_config('legiond.tenant', 'platform', true);
  SELECT a.seq, a.hash INTO last_seq, last_hash FROM legiond.audit_log a ORDER BY a.seq DESC LIMIT 1;
  PERFORM set_config('legiond.tenant', saved, true);
  NEW.seq := coalesce(last_seq, 0) + 1;
  NEW.prev_hash := coalesce(last_hash, decode(repeat('00', 32), 'hex'));
  NEW.at := clock_timestamp();
  NEW.actor := coalesce(nullif(NEW.actor, ''), legiond.actor());
  NEW.actor_role := coalesce(NEW.actor_role, '');
  NEW.target := coalesce(NEW.target, '');
  NEW.details := coalesce(NEW.details, '{}'::jsonb);
  NEW.hash := sha256(NEW.prev_hash || legiond.audit_entry_bytes(NEW.seq, NEW.at, NEW.actor, NEW.actor_role,
    NEW.action, NEW.partner_id, NEW.customer_id, NEW.target, NEW.details));
  RETURN NEW;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION legiond.audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'legiond.audit_log is append-only: % refused', TG_OP USING ERRCODE = '42501';
END
$$;
-- +goose StatementEnd

CREATE TRIGGER audit_chain BEFORE INSERT ON legiond.audit_log
  FOR EACH ROW EXECUTE FUNCTION legiond.audit_chain();
-- Statement triggers fire even when no row qualifies, so an UPDATE or
-- DELETE fails loudly for every role instead of silently touching nothing.
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON legiond.audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION legiond.audit_append_only();

-- Row-level security: the owner-column shape of 00001 (platform sees all;
-- a customer its own entries; a partner its own and its customers').
ALTER TABLE legiond.audit_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE legiond.audit_log FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_select ON legiond.audit_log FOR SELECT USING (
     legiond.scope_kind() = 'platform'
  OR (legiond.scope_kind() = 'customer' AND customer_id = legiond.scope_id())
  OR (legiond.scope_kind() = 'partner' AND (partner_id = legiond.scope_id() OR customer_id IN (
        SELECT c.id FROM legiond.customers c WHERE c.partner_id = legiond.scope_id()))));
CREATE POLICY audit_insert ON legiond.audit_log FOR INSERT WITH CHECK (
     legiond.scope_kind() = 'platform'
  OR (legiond.scope_kind() = 'customer' AND customer_id = legiond.scope_id())
  OR (legiond.scope_kind() = 'partner' AND (partner_id = legiond.scope_id() OR customer_id IN (
        SELECT c.id FROM legiond.customers c WHERE c.partner_id = legiond.scope_id()))));

-- The application role appends and reads; nothing else.
GRANT SELECT, INSERT ON legiond.audit_log TO legiond_app;

-- +goose Down
DROP TABLE IF EXISTS legiond.audit_log;
DROP FUNCTION IF EXISTS legiond.audit_chain(), legiond.audit_append_only(),
  legiond.audit_entry_bytes(bigint, timestamptz, text, text, text, uuid, uuid, text, jsonb),
  legiond.audit_lp(bytea);
