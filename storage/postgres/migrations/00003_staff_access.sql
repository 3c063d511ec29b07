-- Staff access: break-glass grants and users' phone numbers.
--
-- Runs as legiond_owner (see migrate.go), which owns every object here.
--
-- A break-glass grant gives one support user (by token subject) read
-- access to one customer for a limited time, for a stated reason. Grants
-- are created and revoked only under the platform scope (platform
-- administrators, operator tools); a customer and its partner can see the
-- grants on the customer (transparency), nobody can delete one, and the
-- only change allowed is a single revocation. Creation and revocation are
-- appended to the audit log in the same transaction (storage/postgres
-- breakglass.go); every request made under a grant is audited by the API.

-- +goose Up

CREATE TABLE legiond.break_glass_grants (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  customer_id uuid NOT NULL CONSTRAINT break_glass_customer_fk REFERENCES legiond.customers (id),
  subject     text NOT NULL CONSTRAINT break_glass_subject_len CHECK (length(subject) BETWEEN 1 AND 256),
  reason      text NOT NULL CONSTRAINT break_glass_reason_len CHECK (length(btrim(reason)) BETWEEN 1 AND 1000),
  -- The validity window, from the legiond server clock at creation.
  starts_at   timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL,
  revoked_at  timestamptz,
  revoked_by  text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  created_by  text NOT NULL DEFAULT legiond.actor(),
  CONSTRAINT break_glass_window CHECK (expires_at > starts_at AND expires_at - starts_at <= interval '24 hours'),
  CONSTRAINT break_glass_revocation CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE INDEX break_glass_subject_idx ON legiond.break_glass_grants (subject, expires_at);
CREATE INDEX break_glass_customer_idx ON legiond.break_glass_grants (customer_id);

-- One revocation, nothing else: every other column is fixed.
-- +goose StatementBegin
CREATE FUNCTION legiond.break_glass_revoke_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.revoked_at IS NOT NULL
     OR NEW.id IS DISTINCT FROM OLD.id OR NEW.customer_id IS DISTINCT FROM OLD.customer_id
     OR NEW.subject IS DISTINCT FROM OLD.subject OR NEW.reason IS DISTINCT FROM OLD.reason
     OR NEW.starts_at IS DISTINCT FROM OLD.starts_at OR NEW.expires_at IS DISTINCT FROM OLD.expires_at
     OR NEW.created_at IS DISTINCT FROM OLD.created_at OR NEW.created_by IS DISTINCT FROM OLD.created_by THEN
    RAISE EXCEPTION 'a break-glass grant can only be revoked, once' USING ERRCODE = '42501';
  END IF;
  RETURN NEW;
END
$$;
-- +goose StatementEnd
CREATE TRIGGER revoke_only BEFORE UPDATE ON legiond.break_glass_grants
  FOR EACH ROW EXECUTE FUNCTION legiond.break_glass_revoke_only();

ALTER TABLE legiond.break_glass_grants ENABLE ROW LEVEL SECURITY;
ALTER TABLE legiond.break_glass_grants FORCE ROW LEVEL SECURITY;
-- Reads: the customer-owned shape of 00001.
CREATE POLICY break_glass_select ON legiond.break_glass_grants FOR SELECT USING (
     legiond.scope_kind() = 'platform'
  OR (legiond.scope_kind() = 'customer' AND customer_id = legiond.scope_id())
  OR (legiond.scope_kind() = 'partner' AND customer_id IN (
        SELECT c.id FROM legiond.customers c WHERE c.partner_id = legiond.scope_id())));
-- Writes: the platform scope only.
CREATE POLICY break_glass_insert ON legiond.break_glass_grants FOR INSERT
  WITH CHECK (legiond.scope_kind() = 'platform');
CREATE POLICY break_glass_update ON legiond.break_glass_grants FOR UPDATE
  USING (legiond.scope_kind() = 'platform') WITH CHECK (legiond.scope_kind() = 'platform');

GRANT SELECT, INSERT ON legiond.break_glass_grants TO legiond_app;
GRANT UPDATE (revoked_at, revoked_by) ON legiond.break_glass_grants TO legiond_app;

-- A contact phone number for users (technicians on call). Personal data:
-- exported and erased with the rest of the users row (gdpr.go).
ALTER TABLE legiond.users ADD COLUMN phone text NOT NULL DEFAULT ''
  CONSTRAINT users_phone_format CHECK (phone ~ '^[+0-9 ()./-]{0,32}$');

-- +goose Down
ALTER TABLE legiond.users DROP COLUMN IF EXISTS phone;
DROP TABLE IF EXISTS legiond.break_glass_grants;
DROP FUNCTION IF EXISTS legiond.break_glass_revoke_only();
