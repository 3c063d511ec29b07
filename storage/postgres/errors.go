package postgres

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Sentinel errors. Test with errors.Is; the api package maps them to
// Connect codes.
var (
	// ErrNotFound: no such row in the caller's scope. Rows of other
	// tenants are indistinguishable from rows that do not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: a unique key (DevEUI, gateway EUI, name, e-mail)
	// is taken. DevEUIs and gateway EUIs are unique across tenants.
	ErrAlreadyExists = errors.New("already exists")
	// ErrInvalidArgument: bad input. *FieldError names the field.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrResidency: a site outside the EEA. Always inside a *FieldError,
	// which is also ErrInvalidArgument.
	ErrResidency = errors.New("outside the EEA")
	// ErrPermissionDenied: the scope may not do this (for example a
	// customer creating a partner), or row-level security refused a write.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrNoScope: a transaction was started without a valid scope.
	ErrNoScope = errors.New("no tenant scope")
	// ErrNoKeyRing: keys must be encrypted or decrypted but the store has
	// no master key.
	ErrNoKeyRing = errors.New("no master key configured")
	// ErrDecrypt: a stored key could not be decrypted (wrong master key,
	// or tampered ciphertext).
	ErrDecrypt = errors.New("cannot decrypt stored key")
	// ErrImportRejected: a bulk import had bad rows and nothing was
	// written. Also ErrInvalidArgument.
	ErrImportRejected = errors.New("import rejected")
	// ErrUnsafeRole: Open was given a role that row-level security would
	// not bind (superuser, BYPASSRLS, or owner of registry tables).
	ErrUnsafeRole = errors.New("database role bypasses row-level security")
)

// FieldError is a bad value in one named field. It is always
// ErrInvalidArgument, and also Err when set (ErrAlreadyExists for a taken
// key, ErrNotFound for an unknown reference, ErrResidency for a country
// outside the EEA).
type FieldError struct {
	Field  string // e.g. "dev_eui", "site_id", "country"
	Reason string // human-readable, never contains secret values
	Err    error  // optional class
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return "invalid argument: " + e.Reason
	}
	return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason)
}

// Unwrap exposes ErrInvalidArgument and the class.
func (e *FieldError) Unwrap() []error {
	if e.Err != nil && !errors.Is(e.Err, ErrInvalidArgument) {
		return []error{ErrInvalidArgument, e.Err}
	}
	return []error{ErrInvalidArgument}
}

func fieldErr(field, reason string) *FieldError { return &FieldError{Field: field, Reason: reason} }

func notFoundRef(field, what string) *FieldError {
	return &FieldError{Field: field, Reason: "no such " + what, Err: ErrNotFound}
}

// constraintFields maps constraint names to the field they guard.
var constraintFields = map[string]string{
	"partners_name_uq": "name", "customers_name_uq": "name", "sites_name_uq": "name",
	"tap_points_name_uq": "name", "users_email_uq": "email", "api_clients_client_id_uq": "client_id",
	"devices_pkey": "dev_eui", "gateways_pkey": "gateway_eui", "role_grants_uq": "role",
	"customers_partner_fk": "partner_id", "sites_customer_fk": "customer_id",
	"tap_points_site_fk": "site_id", "devices_customer_fk": "customer_id", "devices_site_fk": "site_id",
	"devices_tap_point_fk": "tap_point_id", "devices_data_key_fk": "data_key_id",
	"gateways_partner_fk": "partner_id", "gateways_customer_fk": "customer_id", "gateways_site_fk": "site_id",
	"users_partner_fk": "partner_id", "users_customer_fk": "customer_id",
	"api_clients_partner_fk": "partner_id", "api_clients_customer_fk": "customer_id",
	"role_grants_user_fk": "user_id", "role_grants_api_client_fk": "api_client_id",
	"role_grants_partner_fk": "partner_id", "role_grants_customer_fk": "customer_id", "role_grants_site_fk": "site_id",
	"sites_country_eea": "country", "sites_rule_profile": "rule_profile", "tap_points_kind": "kind",
	"devices_activation":      "activation",
	"break_glass_customer_fk": "customer_id", "break_glass_reason_len": "reason", "break_glass_window": "duration",
}

// mapErr turns driver errors into this package's typed errors. op names
// the operation for the wrapping message.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", op, err)
	}
	field := constraintFields[pe.ConstraintName]
	if field == "" && pe.ConstraintName != "" {
		// e.g. sites_name_len -> name, devices_dev_eui_len -> dev_eui.
		n := pe.ConstraintName
		if i := strings.Index(n, "_"); i >= 0 {
			n = n[i+1:]
		}
		n = strings.TrimSuffix(strings.TrimSuffix(n, "_len"), "_format")
		field = n
	}
	switch pe.Code {
	case "23505": // unique_violation
		return fmt.Errorf("%s: %w", op, &FieldError{Field: field, Reason: "already exists", Err: ErrAlreadyExists})
	case "23503": // foreign_key_violation
		if strings.Contains(pe.Message, "still referenced") || strings.Contains(pe.Detail, "still referenced") {
			return fmt.Errorf("%s: %w", op, &FieldError{Field: field, Reason: "still in use"})
		}
		return fmt.Errorf("%s: %w", op, &FieldError{Field: field, Reason: "unknown reference", Err: ErrNotFound})
	case "23514", "23502", "22001", "22P02", "22023": // check, not null, too long, bad text, bad value
		reason := pe.Message
		if pe.ConstraintName != "" {
			reason = "violates constraint " + pe.ConstraintName
		}
		return fmt.Errorf("%s: %w", op, &FieldError{Field: field, Reason: reason})
	case "42501": // insufficient_privilege, incl. row-level security
		return fmt.Errorf("%s: %w: %s", op, ErrPermissionDenied, pe.Message)
	}
	return fmt.Errorf("%s: %w", op, err)
}
