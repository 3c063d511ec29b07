-- Registry schema: partners, customers (the tenant), sites, tap points,
-- devices with encrypted keys, gateways, users, API clients, role grants.
--
-- Runs as legiond_owner (see migrate.go), which owns every object here.
-- The application connects as legiond_app, which owns nothing and sees
-- rows only through the row-level security policies at the end.

-- +goose Up

-- The caller's scope, set per transaction by the application with
-- set_config('legiond.tenant', 'platform' | 'partner:<uuid>' | 'customer:<uuid>', true).
-- No scope set: scope_kind() is '' and every policy hides every row.
-- +goose StatementBegin
CREATE FUNCTION legiond.scope_kind() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT split_part(coalesce(current_setting('legiond.tenant', true), ''), ':', 1)
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION legiond.scope_id() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT nullif(split_part(coalesce(current_setting('legiond.tenant', true), ''), ':', 2), '')::uuid
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION legiond.actor() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT coalesce(nullif(current_setting('legiond.actor', true), ''), 'unknown')
$$;
-- +goose StatementEnd

-- Audit columns: created_* are fixed, updated_* follow every update;
-- tenant columns move only under the platform scope.
-- +goose StatementBegin
CREATE FUNCTION legiond.touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.created_at := OLD.created_at;
  NEW.created_by := OLD.created_by;
  NEW.updated_at := now();
  NEW.updated_by := legiond.actor();
  IF legiond.scope_kind() <> 'platform' AND (
       to_jsonb(NEW) -> 'customer_id' IS DISTINCT FROM to_jsonb(OLD) -> 'customer_id'
    OR to_jsonb(NEW) -> 'partner_id'  IS DISTINCT FROM to_jsonb(OLD) -> 'partner_id') THEN
    RAISE EXCEPTION 'tenant columns of % can only change under the platform scope', TG_TABLE_NAME
      USING ERRCODE = '42501';
  END IF;
  RETURN NEW;
END
$$;
-- +goose StatementEnd

CREATE TABLE legiond.partners (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name        text NOT NULL CONSTRAINT partners_name_len CHECK (length(name) BETWEEN 1 AND 200),
  created_at  timestamptz NOT NULL DEFAULT now(),
  created_by  text NOT NULL DEFAULT legiond.actor(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  updated_by  text NOT NULL DEFAULT legiond.actor()
);
CREATE UNIQUE INDEX partners_name_uq ON legiond.partners (lower(name));

CREATE TABLE legiond.customers (
  id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  partner_id  uuid CONSTRAINT customers_partner_fk REFERENCES legiond.partners (id),
  name        text NOT NULL CONSTRAINT customers_name_len CHECK (length(name) BETWEEN 1 AND 200),
  created_at  timestamptz NOT NULL DEFAULT now(),
  created_by  text NOT NULL DEFAULT legiond.actor(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  updated_by  text NOT NULL DEFAULT legiond.actor()
);
CREATE UNIQUE INDEX customers_name_uq ON legiond.customers
  (coalesce(partner_id, '00000000-0000-0000-0000-000000000000'::uuid), lower(name));
CREATE INDEX customers_partner_idx ON legiond.customers (partner_id);

-- Per-tenant data encryption keys (AES-256), wrapped by a master key that
-- never reaches the database. One active key per customer.
CREATE TABLE legiond.data_keys (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  customer_id    uuid NOT NULL CONSTRAINT data_keys_customer_fk REFERENCES legiond.customers (id),
  master_key_id  text NOT NULL CONSTRAINT data_keys_master_key_id_len CHECK (length(master_key_id) BETWEEN 1 AND 64),
  wrapped_key    bytea NOT NULL,
  retired_at     timestamptz,
  created_at     timestamptz NOT NULL DEFAULT now(),
  created_by     text NOT NULL DEFAULT legiond.actor(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  updated_by     text NOT NULL DEFAULT legiond.actor(),
  UNIQUE (id, customer_id)
);
CREATE UNIQUE INDEX data_keys_active_uq ON legiond.data_keys (customer_id) WHERE retired_at IS NULL;

CREATE TABLE legiond.sites (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  customer_id   uuid NOT NULL CONSTRAINT sites_customer_fk REFERENCES legiond.customers (id),
  name          text NOT NULL CONSTRAINT sites_name_len CHECK (length(name) BETWEEN 1 AND 200),
  street        text NOT NULL DEFAULT '' CONSTRAINT sites_street_len CHECK (length(street) <= 200),
  postal_code   text NOT NULL DEFAULT '' CONSTRAINT sites_postal_code_len CHECK (length(postal_code) <= 20),
  city          text NOT NULL DEFAULT '' CONSTRAINT sites_city_len CHECK (length(city) <= 100),
  -- Data residency: EU 27 + Iceland, Liechtenstein, Norway (ISO 3166-1).
  country       text NOT NULL CONSTRAINT sites_country_eea CHECK (country IN (
                  'AT','BE','BG','HR','CY','CZ','DK','EE','FI','FR','DE','GR','HU','IE',
                  'IT','LV','LT','LU','MT','NL','PL','PT','RO','SK','SI','ES','SE',
                  'IS','LI','NO')),
  rule_profile  text NOT NULL DEFAULT 'NL' CONSTRAINT sites_rule_profile CHECK (rule_profile IN ('NL','DE','UK')),
  overrides     jsonb NOT NULL DEFAULT '{}' CONSTRAINT sites_overrides CHECK (jsonb_typeof(overrides) = 'object' AND length(overrides::text) <= 4096),
  created_at    timestamptz NOT NULL DEFAULT now(),
  created_by    text NOT NULL DEFAULT legiond.actor(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  updated_by    text NOT NULL DEFAULT legiond.actor(),
  UNIQUE (id, customer_id)
);
CREATE UNIQUE INDEX sites_name_uq ON legiond.sites (customer_id, lower(name));

CREATE TABLE legiond.tap_points (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  customer_id       uuid NOT NULL,
  site_id           uuid NOT NULL,
  name              text NOT NULL CONSTRAINT tap_points_name_len CHECK (length(name) BETWEEN 1 AND 200),
  kind              text NOT NULL CONSTRAINT tap_points_kind CHECK (kind IN (
                      'HOT_TAP','COLD_TAP','MIXED_TAP','CIRCULATION_RETURN','HEATER_OUTLET','COLD_MAIN')),
  -- NULL: the rule profile's flush interval.
  flush_interval_s  integer CONSTRAINT tap_points_flush_interval CHECK (flush_interval_s BETWEEN 3600 AND 7776000),
  overrides         jsonb NOT NULL DEFAULT '{}' CONSTRAINT tap_points_overrides CHECK (jsonb_typeof(overrides) = 'object' AND length(overrides::text) <= 4096),
  created_at        timestamptz NOT NULL DEFAULT now(),
  created_by        text NOT NULL DEFAULT legiond.actor(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  updated_by        text NOT NULL DEFAULT legiond.actor(),
  CONSTRAINT tap_points_site_fk FOREIGN KEY (site_id, customer_id) REFERENCES legiond.sites (id, customer_id),
  UNIQUE (id, customer_id),
  UNIQUE (id, site_id, customer_id)
);
CREATE UNIQUE INDEX tap_points_name_uq ON legiond.tap_points (site_id, lower(name));
CREATE INDEX tap_points_customer_idx ON legiond.tap_points (customer_id);

CREATE TABLE legiond.devices (
  dev_eui              bytea PRIMARY KEY CONSTRAINT devices_dev_eui_len CHECK (length(dev_eui) = 8),
  customer_id          uuid NOT NULL CONSTRAINT devices_customer_fk REFERENCES legiond.customers (id),
  site_id              uuid,
  tap_point_id         uuid,
  name                 text NOT NULL DEFAULT '' CONSTRAINT devices_name_len CHECK (length(name) <= 200),
  activation           text NOT NULL CONSTRAINT devices_activation CHECK (activation IN ('ABP','OTAA')),
  join_eui             bytea CONSTRAINT devices_join_eui_len CHECK (length(join_eui) = 8),
  dev_addr             bytea CONSTRAINT devices_dev_addr_len CHECK (length(dev_addr) = 4),
  -- Keys: AES-GCM ciphertexts under the customer's data key (see keys.go).
  data_key_id          uuid,
  app_key_enc          bytea,
  nwk_s_key_enc        bytea,
  app_s_key_enc        bytea,
  expected_interval_s  integer NOT NULL DEFAULT 900 CONSTRAINT devices_expected_interval CHECK (expected_interval_s BETWEEN 60 AND 86400),
  created_at           timestamptz NOT NULL DEFAULT now(),
  created_by           text NOT NULL DEFAULT legiond.actor(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  updated_by           text NOT NULL DEFAULT legiond.actor(),
  CONSTRAINT devices_site_fk FOREIGN KEY (site_id, customer_id) REFERENCES legiond.sites (id, customer_id),
  CONSTRAINT devices_tap_point_fk FOREIGN KEY (tap_point_id, site_id, customer_id) REFERENCES legiond.tap_points (id, site_id, customer_id),
  CONSTRAINT devices_data_key_fk FOREIGN KEY (data_key_id, customer_id) REFERENCES legiond.data_keys (id, customer_id),
  CONSTRAINT devices_tap_point_needs_site CHECK (tap_point_id IS NULL OR site_id IS NOT NULL),
  CONSTRAINT devices_abp_keys CHECK (activation <> 'ABP' OR (dev_addr IS NOT NULL AND nwk_s_key_enc IS NOT NULL AND app_s_key_enc IS NOT NULL)),
  CONSTRAINT devices_otaa_keys CHECK (activation <> 'OTAA' OR (join_eui IS NOT NULL AND app_key_enc IS NOT NULL)),
  CONSTRAINT devices_keys_need_data_key CHECK (data_key_id IS NOT NULL OR num_nonnulls(app_key_enc, nwk_s_key_enc, app_s_key_enc) = 0)
);
CREATE INDEX devices_dev_addr_idx ON legiond.devices (dev_addr) WHERE dev_addr IS NOT NULL;
CREATE INDEX devices_customer_idx ON legiond.devices (customer_id);
CREATE INDEX devices_site_idx ON legiond.devices (site_id);
CREATE INDEX devices_tap_point_idx ON legiond.devices (tap_point_id);

CREATE TABLE legiond.gateways (
  gateway_eui       bytea PRIMARY KEY CONSTRAINT gateways_gateway_eui_len CHECK (length(gateway_eui) = 8),
  partner_id        uuid CONSTRAINT gateways_partner_fk REFERENCES legiond.partners (id),
  customer_id       uuid CONSTRAINT gateways_customer_fk REFERENCES legiond.customers (id),
  site_id           uuid,
  name              text NOT NULL DEFAULT '' CONSTRAINT gateways_name_len CHECK (length(name) <= 200),
  stats_interval_s  integer NOT NULL DEFAULT 300 CONSTRAINT gateways_stats_interval CHECK (stats_interval_s BETWEEN 10 AND 3600),
  created_at        timestamptz NOT NULL DEFAULT now(),
  created_by        text NOT NULL DEFAULT legiond.actor(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  updated_by        text NOT NULL DEFAULT legiond.actor(),
  CONSTRAINT gateways_one_owner CHECK (num_nonnulls(partner_id, customer_id) = 1),
  CONSTRAINT gateways_site_needs_customer CHECK (site_id IS NULL OR customer_id IS NOT NULL),
  CONSTRAINT gateways_site_fk FOREIGN KEY (site_id, customer_id) REFERENCES legiond.sites (id, customer_id)
);
CREATE INDEX gateways_partner_idx ON legiond.gateways (partner_id);
CREATE INDEX gateways_customer_idx ON legiond.gateways (customer_id);

-- Users and API clients belong to a partner, a customer, or (neither) the
-- platform's own staff, whom only the platform scope sees.
CREATE TABLE legiond.users (
  id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  partner_id    uuid CONSTRAINT users_partner_fk REFERENCES legiond.partners (id),
  customer_id   uuid CONSTRAINT users_customer_fk REFERENCES legiond.customers (id),
  email         text NOT NULL CONSTRAINT users_email_format CHECK (length(email) BETWEEN 3 AND 254 AND email LIKE '_%@_%'),
  display_name  text NOT NULL DEFAULT '' CONSTRAINT users_display_name_len CHECK (length(display_name) <= 200),
  disabled      boolean NOT NULL DEFAULT false,
  created_at    timestamptz NOT NULL DEFAULT now(),
  created_by    text NOT NULL DEFAULT legiond.actor(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  updated_by    text NOT NULL DEFAULT legiond.actor(),
  CONSTRAINT users_one_owner CHECK (num_nonnulls(partner_id, customer_id) <= 1)
);
CREATE UNIQUE INDEX users_email_uq ON legiond.users (lower(email));
CREATE INDEX users_customer_idx ON legiond.users (customer_id);
CREATE INDEX users_partner_idx ON legiond.users (partner_id);

CREATE TABLE legiond.api_clients (
  id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  client_id    text NOT NULL CONSTRAINT api_clients_client_id_len CHECK (length(client_id) BETWEEN 8 AND 64),
  partner_id   uuid CONSTRAINT api_clients_partner_fk REFERENCES legiond.partners (id),
  customer_id  uuid CONSTRAINT api_clients_customer_fk REFERENCES legiond.customers (id),
  name         text NOT NULL CONSTRAINT api_clients_name_len CHECK (length(name) BETWEEN 1 AND 200),
  -- SHA-256 of a 256-bit random secret; the secret itself is shown once.
  secret_hash  bytea NOT NULL CONSTRAINT api_clients_secret_hash_len CHECK (length(secret_hash) = 32),
  scopes       text[] NOT NULL DEFAULT '{}' CONSTRAINT api_clients_scopes_len CHECK (cardinality(scopes) <= 32),
  disabled     boolean NOT NULL DEFAULT false,
  expires_at   timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now(),
  created_by   text NOT NULL DEFAULT legiond.actor(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  updated_by   text NOT NULL DEFAULT legiond.actor(),
  CONSTRAINT api_clients_one_owner CHECK (num_nonnulls(partner_id, customer_id) <= 1)
);
CREATE UNIQUE INDEX api_clients_client_id_uq ON legiond.api_clients (client_id);
CREATE INDEX api_clients_customer_idx ON legiond.api_clients (customer_id);
CREATE INDEX api_clients_partner_idx ON legiond.api_clients (partner_id);

-- A role held by a user or an API client over the platform (no owner
-- columns), a partner, a customer or one site of a customer.
CREATE TABLE legiond.role_grants (
  id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id        uuid CONSTRAINT role_grants_user_fk REFERENCES legiond.users (id) ON DELETE CASCADE,
  api_client_id  uuid CONSTRAINT role_grants_api_client_fk REFERENCES legiond.api_clients (id) ON DELETE CASCADE,
  role           text NOT NULL CONSTRAINT role_grants_role CHECK (role IN ('admin','manager','technician','viewer','integration')),
  partner_id     uuid CONSTRAINT role_grants_partner_fk REFERENCES legiond.partners (id),
  customer_id    uuid CONSTRAINT role_grants_customer_fk REFERENCES legiond.customers (id),
  site_id        uuid,
  created_at     timestamptz NOT NULL DEFAULT now(),
  created_by     text NOT NULL DEFAULT legiond.actor(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  updated_by     text NOT NULL DEFAULT legiond.actor(),
  CONSTRAINT role_grants_one_principal CHECK (num_nonnulls(user_id, api_client_id) = 1),
  CONSTRAINT role_grants_one_owner CHECK (num_nonnulls(partner_id, customer_id) <= 1),
  CONSTRAINT role_grants_site_needs_customer CHECK (site_id IS NULL OR customer_id IS NOT NULL),
  CONSTRAINT role_grants_site_fk FOREIGN KEY (site_id, customer_id) REFERENCES legiond.sites (id, customer_id),
  CONSTRAINT role_grants_uq UNIQUE NULLS NOT DISTINCT (user_id, api_client_id, role, partner_id, customer_id, site_id)
);
CREATE INDEX role_grants_customer_idx ON legiond.role_grants (customer_id);
CREATE INDEX role_grants_partner_idx ON legiond.role_grants (partner_id);
CREATE INDEX role_grants_user_idx ON legiond.role_grants (user_id);
CREATE INDEX role_grants_api_client_idx ON legiond.role_grants (api_client_id);

-- Audit triggers.
-- +goose StatementBegin
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['partners','customers','data_keys','sites','tap_points','devices',
                           'gateways','users','api_clients','role_grants'] LOOP
    EXECUTE format('CREATE TRIGGER touch BEFORE UPDATE ON legiond.%I FOR EACH ROW EXECUTE FUNCTION legiond.touch()', t);
  END LOOP;
END
$$;
-- +goose StatementEnd

-- Row-level security. Three shapes of ownership:
--   customer-owned (customer_id NOT NULL): visible to the platform, to the
--     customer, and to the customer's partner;
--   owner columns (partner_id XOR customer_id, or neither = platform):
--     the same, plus partner-owned rows to that partner;
--   partners and customers themselves.
-- FORCE makes the policies bind the owner role too; only superusers and
-- BYPASSRLS roles skip them, and the application role is neither.
-- +goose StatementBegin
DO $$
DECLARE
  t text;
  cust text := $p$(
       legiond.scope_kind() = 'platform'
    OR (legiond.scope_kind() = 'customer' AND customer_id = legiond.scope_id())
    OR (legiond.scope_kind() = 'partner' AND customer_id IN (
          SELECT c.id FROM legiond.customers c WHERE c.partner_id = legiond.scope_id())))$p$;
  owner text := $p$(
       legiond.scope_kind() = 'platform'
    OR (legiond.scope_kind() = 'customer' AND customer_id = legiond.scope_id())
    OR (legiond.scope_kind() = 'partner' AND (partner_id = legiond.scope_id() OR customer_id IN (
          SELECT c.id FROM legiond.customers c WHERE c.partner_id = legiond.scope_id()))))$p$;
BEGIN
  FOREACH t IN ARRAY ARRAY['data_keys','sites','tap_points','devices'] LOOP
    EXECUTE format('ALTER TABLE legiond.%I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE legiond.%I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON legiond.%I USING %s WITH CHECK %s', t, cust, cust);
  END LOOP;
  FOREACH t IN ARRAY ARRAY['gateways','users','api_clients','role_grants'] LOOP
    EXECUTE format('ALTER TABLE legiond.%I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE legiond.%I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON legiond.%I USING %s WITH CHECK %s', t, owner, owner);
  END LOOP;
END
$$;
-- +goose StatementEnd

ALTER TABLE legiond.customers ENABLE ROW LEVEL SECURITY;
ALTER TABLE legiond.customers FORCE ROW LEVEL SECURITY;
CREATE POLICY customers_select ON legiond.customers FOR SELECT USING (
     legiond.scope_kind() = 'platform'
  OR (legiond.scope_kind() = 'customer' AND id = legiond.scope_id())
  OR (legiond.scope_kind() = 'partner' AND partner_id = legiond.scope_id()));
CREATE POLICY customers_insert ON legiond.customers FOR INSERT WITH CHECK (
     legiond.scope_kind() = 'platform'
  OR (legiond.scope_kind() = 'partner' AND partner_id = legiond.scope_id()));
CREATE POLICY customers_update ON legiond.customers FOR UPDATE USING (
     legiond.scope_kind() = 'platform'
  OR (legiond.scope_kind() = 'customer' AND id = legiond.scope_id())
  OR (legiond.scope_kind() = 'partner' AND partner_id = legiond.scope_id()))
  WITH CHECK (
     legiond.scope_kind() = 'platform'
  OR (legiond.scope_kind() = 'customer' AND id = legiond.scope_id())
  OR (legiond.scope_kind() = 'partner' AND partner_id = legiond.scope_id()));
CREATE POLICY customers_delete ON legiond.customers FOR DELETE USING (
     legiond.scope_kind() = 'platform'
  OR (legiond.scope_kind() = 'partner' AND partner_id = legiond.scope_id()));

ALTER TABLE legiond.partners ENABLE ROW LEVEL SECURITY;
ALTER TABLE legiond.partners FORCE ROW LEVEL SECURITY;
CREATE POLICY partners_select ON legiond.partners FOR SELECT USING (
     legiond.scope_kind() = 'platform'
  OR (legiond.scope_kind() = 'partner' AND id = legiond.scope_id()));
CREATE POLICY partners_insert ON legiond.partners FOR INSERT WITH CHECK (legiond.scope_kind() = 'platform');
CREATE POLICY partners_update ON legiond.partners FOR UPDATE USING (
     legiond.scope_kind() = 'platform'
  OR (legiond.scope_kind() = 'partner' AND id = legiond.scope_id()))
  WITH CHECK (
     legiond.scope_kind() = 'platform'
  OR (legiond.scope_kind() = 'partner' AND id = legiond.scope_id()));
CREATE POLICY partners_delete ON legiond.partners FOR DELETE USING (legiond.scope_kind() = 'platform');

-- DevEUIs and gateway EUIs are globally unique radio identities, so a
-- duplicate is a duplicate whoever owns it. These functions answer "which
-- of these EUIs are taken" across tenants (nothing else), so that bulk
-- imports can name the offending line instead of failing the batch.
-- +goose StatementBegin
CREATE FUNCTION legiond.dev_euis_taken(euis bytea[]) RETURNS SETOF bytea
LANGUAGE plpgsql AS $$
DECLARE
  saved text := coalesce(current_setting('legiond.tenant', true), '');
BEGIN
  PERFORM set_config('legiond.tenant', 'platform', true);
  RETURN QUERY SELECT d.dev_eui FROM legiond.devices d WHERE d.dev_eui = ANY (euis);
  PERFORM set_config('legiond.tenant', saved, true);
END
$$;
-- +goose StatementEnd

-- Registry change feed for the stream router's cache: one NOTIFY per
-- statement (chunked), carrying the keys of the changed rows, e.g.
-- 'd:70b3d5...,70b3d5...' for devices, 's:<uuid>' for sites.
-- +goose StatementBegin
CREATE FUNCTION legiond.notify_registry() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  prefix text := TG_ARGV[0];
  keyexpr text := TG_ARGV[1];
  keys text[];
  n int;
  i int := 1;
BEGIN
  IF TG_OP = 'INSERT' THEN
    EXECUTE format('SELECT array_agg(DISTINCT %s) FROM new_rows', keyexpr) INTO keys;
  ELSIF TG_OP = 'DELETE' THEN
    EXECUTE format('SELECT array_agg(DISTINCT %s) FROM old_rows', keyexpr) INTO keys;
  ELSE
    EXECUTE format('SELECT array_agg(DISTINCT k) FROM (SELECT %1$s AS k FROM old_rows UNION SELECT %1$s FROM new_rows) s', keyexpr) INTO keys;
  END IF;
  n := coalesce(array_length(keys, 1), 0);
  WHILE i <= n LOOP
    PERFORM pg_notify('legiond_registry', prefix || ':' || array_to_string(keys[i:i + 199], ','));
    i := i + 200;
  END LOOP;
  RETURN NULL;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
DO $$
DECLARE
  spec text[];
BEGIN
  FOREACH spec SLICE 1 IN ARRAY ARRAY[
      ARRAY['devices', 'd', 'encode(dev_eui, ''hex'')'],
      ARRAY['tap_points', 't', 'id::text'],
      ARRAY['sites', 's', 'id::text'],
      ARRAY['customers', 'c', 'id::text']] LOOP
    EXECUTE format('CREATE TRIGGER notify_insert AFTER INSERT ON legiond.%I REFERENCING NEW TABLE AS new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION legiond.notify_registry(%L, %L)', spec[1], spec[2], spec[3]);
    EXECUTE format('CREATE TRIGGER notify_update AFTER UPDATE ON legiond.%I REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION legiond.notify_registry(%L, %L)', spec[1], spec[2], spec[3]);
    EXECUTE format('CREATE TRIGGER notify_delete AFTER DELETE ON legiond.%I REFERENCING OLD TABLE AS old_rows '
                   'FOR EACH STATEMENT EXECUTE FUNCTION legiond.notify_registry(%L, %L)', spec[1], spec[2], spec[3]);
  END LOOP;
END
$$;
-- +goose StatementEnd

-- The application role: DML on the registry, nothing owned, no DDL.
GRANT USAGE ON SCHEMA legiond TO legiond_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON
  legiond.partners, legiond.customers, legiond.sites, legiond.tap_points, legiond.devices,
  legiond.gateways, legiond.users, legiond.api_clients, legiond.role_grants TO legiond_app;
GRANT SELECT, INSERT ON legiond.data_keys TO legiond_app;
GRANT SELECT ON legiond.goose_db_version TO legiond_app;
REVOKE ALL ON FUNCTION legiond.dev_euis_taken(bytea[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION legiond.dev_euis_taken(bytea[]) TO legiond_app;

-- +goose Down
DROP TABLE IF EXISTS legiond.role_grants, legiond.api_clients, legiond.users, legiond.gateways,
  legiond.devices, legiond.tap_points, legiond.sites, legiond.data_keys, legiond.customers,
  legiond.partners CASCADE;
DROP FUNCTION IF EXISTS legiond.notify_registry(), legiond.dev_euis_taken(bytea[]), legiond.touch(),
  legiond.actor(), legiond.scope_id(), legiond.scope_kind();
