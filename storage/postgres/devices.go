package postgres

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Device is a registered sensor, without its keys.
type Device struct {
	DevEUI     EUI64      `json:"dev_eui"`
	CustomerID uuid.UUID  `json:"customer_id"`
	SiteID     *uuid.UUID `json:"site_id,omitempty"`
	TapPointID *uuid.UUID `json:"tap_point_id,omitempty"`
	Name       string     `json:"name,omitempty"`
	Activation Activation `json:"activation"`
	JoinEUI    *EUI64     `json:"join_eui,omitempty"`
	DevAddr    *DevAddr   `json:"dev_addr,omitempty"`
	// HasAppKey and HasSession tell which keys are stored.
	HasAppKey        bool          `json:"has_app_key"`
	HasSession       bool          `json:"has_session"`
	ExpectedInterval time.Duration `json:"expected_interval"`
	Audit
}

// DeviceKeys are a device's decrypted keys; nil when absent.
type DeviceKeys struct {
	AppKey  *AES128Key
	NwkSKey *AES128Key
	AppSKey *AES128Key
}

// NewDevice is the input of Devices.Create and of each CSV import row.
type NewDevice struct {
	DevEUI EUI64
	// CustomerID may be left zero when a site or tap point is given (their
	// customer is used) or in a customer scope.
	CustomerID uuid.UUID
	SiteID     *uuid.UUID
	TapPointID *uuid.UUID
	Name       string
	Activation Activation
	// OTAA: JoinEUI and AppKey. ABP: DevAddr, NwkSKey and AppSKey. An OTAA
	// device may also bring a current session (all three of DevAddr,
	// NwkSKey, AppSKey).
	JoinEUI *EUI64
	DevAddr *DevAddr
	AppKey  *AES128Key
	NwkSKey *AES128Key
	AppSKey *AES128Key
	// ExpectedInterval is the uplink interval (1 min to 24 h). Default 15 min.
	ExpectedInterval time.Duration
}

// DefaultExpectedInterval is a Clip'R's default uplink interval.
const DefaultExpectedInterval = 15 * time.Minute

// validate checks everything that needs no database and returns every
// problem found, so an import can report them all at once.
func (d *NewDevice) validate() []*FieldError {
	var errs []*FieldError
	add := func(field, reason string) { errs = append(errs, fieldErr(field, reason)) }
	if d.DevEUI.IsZero() {
		add("dev_eui", "is required (16 hex digits, not all zero)")
	}
	if name, err := checkText("name", d.Name, false, 200); err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			errs = append(errs, fe)
		}
	} else {
		d.Name = name
	}
	if d.ExpectedInterval == 0 {
		d.ExpectedInterval = DefaultExpectedInterval
	}
	if d.ExpectedInterval < time.Minute || d.ExpectedInterval > 24*time.Hour || d.ExpectedInterval%time.Second != 0 {
		add("expected_interval", "must be whole seconds between 60 s and 24 h")
	}
	if d.TapPointID != nil && *d.TapPointID == uuid.Nil {
		d.TapPointID = nil
	}
	if d.SiteID != nil && *d.SiteID == uuid.Nil {
		d.SiteID = nil
	}
	session := d.DevAddr != nil || d.NwkSKey != nil || d.AppSKey != nil
	switch d.Activation {
	case ABP:
		if d.DevAddr == nil {
			add("dev_addr", "is required for ABP")
		}
		if d.NwkSKey == nil {
			add("nwk_s_key", "is required for ABP")
		}
		if d.AppSKey == nil {
			add("app_s_key", "is required for ABP")
		}
		if d.AppKey != nil {
			add("app_key", "must be empty for ABP (ABP devices have session keys only)")
		}
	case OTAA:
		if d.JoinEUI == nil {
			add("join_eui", "is required for OTAA")
		}
		if d.AppKey == nil {
			add("app_key", "is required for OTAA")
		}
		if session && (d.DevAddr == nil || d.NwkSKey == nil || d.AppSKey == nil) {
			add("dev_addr", "an OTAA session needs all of dev_addr, nwk_s_key and app_s_key")
		}
	default:
		add("activation", "must be ABP or OTAA")
	}
	for _, k := range []struct {
		name string
		key  *AES128Key
	}{{"app_key", d.AppKey}, {"nwk_s_key", d.NwkSKey}, {"app_s_key", d.AppSKey}} {
		if k.key != nil && k.key.IsZero() {
			add(k.name, "all-zero key")
		}
	}
	return errs
}

// Devices is the device repository of a transaction.
type Devices struct{ t *Tx }

// Devices returns the device repository.
func (t *Tx) Devices() Devices { return Devices{t} }

const deviceCols = `dev_eui, customer_id, site_id, tap_point_id, name, activation, join_eui, dev_addr,
	app_key_enc IS NOT NULL, nwk_s_key_enc IS NOT NULL, expected_interval_s, ` + auditCols

func scanDevice(row pgx.Row) (Device, error) {
	var (
		d                Device
		eui, join, addr  []byte
		interval         int32
		hasApp, hasNwkSK bool
	)
	err := row.Scan(append([]any{&eui, &d.CustomerID, &d.SiteID, &d.TapPointID, &d.Name, &d.Activation, &join, &addr,
		&hasApp, &hasNwkSK, &interval}, d.dest()...)...)
	if err != nil {
		return d, err
	}
	copy(d.DevEUI[:], eui)
	if join != nil {
		var j EUI64
		copy(j[:], join)
		d.JoinEUI = &j
	}
	if addr != nil {
		var a DevAddr
		copy(a[:], addr)
		d.DevAddr = &a
	}
	d.HasAppKey, d.HasSession = hasApp, hasNwkSK
	d.ExpectedInterval = time.Duration(interval) * time.Second
	return d, nil
}

// resolvedRefs is where a device goes.
type resolvedRefs struct {
	customer uuid.UUID
	site     *uuid.UUID
	tap      *uuid.UUID
}

// resolveRefs checks the device's references in the scope and derives the
// customer and site from the most specific one.
func (t *Tx) resolveRefs(ctx context.Context, d *NewDevice) (resolvedRefs, error) {
	var r resolvedRefs
	cust := d.CustomerID
	site := optID(d.SiteID)
	if d.TapPointID != nil {
		var tpSite, tpCust uuid.UUID
		err := t.tx.QueryRow(ctx, `SELECT site_id, customer_id FROM tap_points WHERE id = $1`, *d.TapPointID).Scan(&tpSite, &tpCust)
		if errors.Is(err, pgx.ErrNoRows) {
			return r, notFoundRef("tap_point_id", "tap point")
		} else if err != nil {
			return r, mapErr("check tap point", err)
		}
		if site != uuid.Nil && site != tpSite {
			return r, fieldErr("site_id", "the tap point belongs to another site")
		}
		if cust != uuid.Nil && cust != tpCust {
			return r, fieldErr("customer_id", "the tap point belongs to another customer")
		}
		return resolvedRefs{customer: tpCust, site: &tpSite, tap: d.TapPointID}, nil
	}
	if site != uuid.Nil {
		var sCust uuid.UUID
		err := t.tx.QueryRow(ctx, `SELECT customer_id FROM sites WHERE id = $1`, site).Scan(&sCust)
		if errors.Is(err, pgx.ErrNoRows) {
			return r, notFoundRef("site_id", "site")
		} else if err != nil {
			return r, mapErr("check site", err)
		}
		if cust != uuid.Nil && cust != sCust {
			return r, fieldErr("customer_id", "the site belongs to another customer")
		}
		return resolvedRefs{customer: sCust, site: &site}, nil
	}
	c, err := t.customerFor(ctx, cust)
	if err != nil {
		return r, err
	}
	return resolvedRefs{customer: c}, nil
}

// dataKey returns the customer's active data key, creating it on first use.
func (t *Tx) dataKey(ctx context.Context, customer uuid.UUID) (uuid.UUID, cipher.AEAD, error) {
	kr := t.store.keys
	if kr == nil {
		return uuid.Nil, nil, ErrNoKeyRing
	}
	load := func() (uuid.UUID, cipher.AEAD, error) {
		var (
			id       uuid.UUID
			masterID string
			wrapped  []byte
		)
		err := t.tx.QueryRow(ctx, `SELECT id, master_key_id, wrapped_key FROM data_keys
			WHERE customer_id = $1 AND retired_at IS NULL`, customer).Scan(&id, &masterID, &wrapped)
		if err != nil {
			return uuid.Nil, nil, err
		}
		a, err := kr.dataKey(id, customer, masterID, wrapped)
		return id, a, err
	}
	id, a, err := load()
	if err == nil || !errors.Is(err, pgx.ErrNoRows) {
		return id, a, mapErr("load data key", err)
	}
	raw, masterID, wrapped, err := kr.newDataKey(customer)
	if err != nil {
		return uuid.Nil, nil, err
	}
	clear(raw)
	if _, err := t.tx.Exec(ctx, `INSERT INTO data_keys (customer_id, master_key_id, wrapped_key) VALUES ($1, $2, $3)
		ON CONFLICT (customer_id) WHERE retired_at IS NULL DO NOTHING`, customer, masterID, wrapped); err != nil {
		return uuid.Nil, nil, mapErr("create data key", err)
	}
	id, a, err = load()
	return id, a, mapErr("load data key", err)
}

// sealedKeys are a device's keys encrypted for storage.
type sealedKeys struct {
	dataKey                  *uuid.UUID
	appKey, nwkSKey, appSKey []byte
}

func sealDeviceKeys(dataKeyID uuid.UUID, a cipher.AEAD, d *NewDevice) (sealedKeys, error) {
	var s sealedKeys
	var err error
	if d.AppKey == nil && d.NwkSKey == nil && d.AppSKey == nil {
		return s, nil
	}
	s.dataKey = &dataKeyID
	if s.appKey, err = sealKey(a, d.DevEUI, "app_key", d.AppKey); err != nil {
		return s, err
	}
	if s.nwkSKey, err = sealKey(a, d.DevEUI, "nwk_s_key", d.NwkSKey); err != nil {
		return s, err
	}
	if s.appSKey, err = sealKey(a, d.DevEUI, "app_s_key", d.AppSKey); err != nil {
		return s, err
	}
	return s, nil
}

func euiBytes(e *EUI64) []byte {
	if e == nil {
		return nil
	}
	return e[:]
}

func addrBytes(a *DevAddr) []byte {
	if a == nil {
		return nil
	}
	return a[:]
}

// Create registers a device, its keys sealed under the customer's data key.
func (r Devices) Create(ctx context.Context, in NewDevice) (Device, error) {
	if errs := in.validate(); len(errs) > 0 {
		return Device{}, errs[0]
	}
	refs, err := r.t.resolveRefs(ctx, &in)
	if err != nil {
		return Device{}, err
	}
	var sk sealedKeys
	if in.AppKey != nil || in.NwkSKey != nil || in.AppSKey != nil {
		id, a, err := r.t.dataKey(ctx, refs.customer)
		if err != nil {
			return Device{}, err
		}
		if sk, err = sealDeviceKeys(id, a, &in); err != nil {
			return Device{}, err
		}
	}
	d, err := scanDevice(r.t.tx.QueryRow(ctx, `INSERT INTO devices (dev_eui, customer_id, site_id, tap_point_id, name, activation,
		join_eui, dev_addr, data_key_id, app_key_enc, nwk_s_key_enc, app_s_key_enc, expected_interval_s)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING `+deviceCols,
		in.DevEUI[:], refs.customer, refs.site, refs.tap, in.Name, string(in.Activation),
		euiBytes(in.JoinEUI), addrBytes(in.DevAddr), sk.dataKey, sk.appKey, sk.nwkSKey, sk.appSKey,
		int32(in.ExpectedInterval/time.Second)))
	return d, mapErr("create device", err)
}

// Get returns a device visible in the scope.
func (r Devices) Get(ctx context.Context, devEUI EUI64) (Device, error) {
	d, err := scanDevice(r.t.tx.QueryRow(ctx, `SELECT `+deviceCols+` FROM devices WHERE dev_eui = $1`, devEUI[:]))
	return d, mapErr("get device", err)
}

// Keys decrypts a visible device's keys.
func (r Devices) Keys(ctx context.Context, devEUI EUI64) (DeviceKeys, error) {
	var (
		k                  DeviceKeys
		cust               uuid.UUID
		dkID               *uuid.UUID
		masterID           *string
		wrapped            []byte
		appK, nwkSK, appSK []byte
	)
	err := r.t.tx.QueryRow(ctx, `SELECT d.customer_id, d.data_key_id, k.master_key_id, k.wrapped_key,
		d.app_key_enc, d.nwk_s_key_enc, d.app_s_key_enc
		FROM devices d LEFT JOIN data_keys k ON k.id = d.data_key_id WHERE d.dev_eui = $1`, devEUI[:]).
		Scan(&cust, &dkID, &masterID, &wrapped, &appK, &nwkSK, &appSK)
	if err != nil {
		return k, mapErr("device keys", err)
	}
	if dkID == nil {
		return k, nil
	}
	if r.t.store.keys == nil {
		return k, ErrNoKeyRing
	}
	if masterID == nil {
		return k, fmt.Errorf("device keys: %w: data key of %s not visible", ErrDecrypt, devEUI)
	}
	a, err := r.t.store.keys.dataKey(*dkID, cust, *masterID, wrapped)
	if err != nil {
		return k, err
	}
	if k.AppKey, err = openKey(a, devEUI, "app_key", appK); err != nil {
		return k, err
	}
	if k.NwkSKey, err = openKey(a, devEUI, "nwk_s_key", nwkSK); err != nil {
		return k, err
	}
	if k.AppSKey, err = openKey(a, devEUI, "app_s_key", appSK); err != nil {
		return k, err
	}
	return k, nil
}

// List returns the devices visible in the scope, optionally filtered.
func (r Devices) List(ctx context.Context, o ListOptions) ([]Device, error) {
	rows, err := r.t.tx.Query(ctx, `SELECT `+deviceCols+` FROM devices
		WHERE ($1::uuid IS NULL OR customer_id = $1) AND ($2::uuid IS NULL OR site_id = $2)
		ORDER BY dev_eui LIMIT $3`, nullID(o.CustomerID), nullID(o.SiteID), o.limit())
	if err != nil {
		return nil, mapErr("list devices", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Device, error) { return scanDevice(row) })
	return out, mapErr("list devices", err)
}

// UpdateSession stores the session of a joined OTAA device (or re-keys an
// ABP device).
func (r Devices) UpdateSession(ctx context.Context, devEUI EUI64, addr DevAddr, nwkSKey, appSKey AES128Key) error {
	if nwkSKey.IsZero() {
		return fieldErr("nwk_s_key", "all-zero key")
	}
	if appSKey.IsZero() {
		return fieldErr("app_s_key", "all-zero key")
	}
	var cust uuid.UUID
	if err := r.t.tx.QueryRow(ctx, `SELECT customer_id FROM devices WHERE dev_eui = $1`, devEUI[:]).Scan(&cust); err != nil {
		return mapErr("update session", err)
	}
	id, a, err := r.t.dataKey(ctx, cust)
	if err != nil {
		return err
	}
	nd := NewDevice{DevEUI: devEUI, NwkSKey: &nwkSKey, AppSKey: &appSKey}
	sk, err := sealDeviceKeys(id, a, &nd)
	if err != nil {
		return err
	}
	tag, err := r.t.tx.Exec(ctx, `UPDATE devices SET dev_addr = $2, data_key_id = $3, nwk_s_key_enc = $4, app_s_key_enc = $5
		WHERE dev_eui = $1`, devEUI[:], addr[:], id, sk.nwkSKey, sk.appSKey)
	if err != nil {
		return mapErr("update session", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("update session: %w", ErrNotFound)
	}
	return nil
}

// Delete removes a visible device.
func (r Devices) Delete(ctx context.Context, devEUI EUI64) error {
	tag, err := r.t.tx.Exec(ctx, `DELETE FROM devices WHERE dev_eui = $1`, devEUI[:])
	if err != nil {
		return mapErr("delete device", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete device: %w", ErrNotFound)
	}
	return nil
}
