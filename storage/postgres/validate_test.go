package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestParseHexValues(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind string
		ok   bool
	}{
		{"70B3D57ED0000001", "eui", true},
		{"70b3d57ed0000001", "eui", true},
		{"70-B3-D5-7E-D0-00-00-01", "eui", true},
		{"70:b3:d5:7e:d0:00:00:01", "eui", true},
		{"70B3D57ED00000", "eui", false},
		{"70B3D57ED000000101", "eui", false},
		{"70B3D57ED000000G", "eui", false},
		{"", "eui", false},
		{"26011F2A", "addr", true},
		{"26011F2", "addr", false},
		{"2B7E151628AED2A6ABF7158809CF4F3C", "key", true},
		{"00000000000000000000000000000000", "key", false},
		{"2B7E151628AED2A6ABF7158809CF4F", "key", false},
		{"2B7E151628AED2A6ABF7158809CF4F3X", "key", false},
	} {
		var err error
		switch tc.kind {
		case "eui":
			_, err = ParseEUI64(tc.in)
		case "addr":
			_, err = ParseDevAddr(tc.in)
		case "key":
			_, err = ParseAES128Key(tc.in)
		}
		if (err == nil) != tc.ok {
			t.Errorf("%s %q: err=%v, want ok=%v", tc.kind, tc.in, err, tc.ok)
		}
	}
}

func TestCheckResidency(t *testing.T) {
	for _, tc := range []struct {
		in, want  string
		residency bool
	}{
		{"NL", "NL", false}, {"de", "DE", false}, {" no ", "NO", false}, {"IS", "IS", false}, {"LI", "LI", false},
		{"EL", "GR", false}, {"GR", "GR", false},
		{"GB", "", true}, {"UK", "", true}, {"CH", "", true}, {"US", "", true}, {"TR", "", true},
		{"", "", false}, {"NLD", "", false}, {"1A", "", false},
	} {
		got, err := CheckResidency(tc.in)
		if tc.want != "" {
			if err != nil || got != tc.want {
				t.Errorf("%q: got %q, %v", tc.in, got, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "country" || !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%q: want a country FieldError, got %v", tc.in, err)
		}
		if errors.Is(err, ErrResidency) != tc.residency {
			t.Errorf("%q: ErrResidency=%v, want %v (%v)", tc.in, errors.Is(err, ErrResidency), tc.residency, err)
		}
		if tc.residency && !strings.Contains(err.Error(), "EEA") {
			t.Errorf("%q: message does not explain the EEA rule: %v", tc.in, err)
		}
	}
	if len(eeaCountries) != 30 {
		t.Errorf("EEA has 30 countries, list has %d", len(eeaCountries))
	}
}

func TestFieldErrorIs(t *testing.T) {
	err := error(&FieldError{Field: "dev_eui", Reason: "already exists", Err: ErrAlreadyExists})
	if !errors.Is(err, ErrInvalidArgument) || !errors.Is(err, ErrAlreadyExists) || errors.Is(err, ErrNotFound) {
		t.Fatal("FieldError classes")
	}
	if !strings.Contains(err.Error(), "dev_eui") {
		t.Fatal("FieldError message lacks the field")
	}
}

// expectField runs fn and checks it fails with a FieldError on field of
// class want.
func expectField(t *testing.T, name string, err error, field string, want error) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Errorf("%s: want a FieldError on %s, got %v", name, field, err)
		return
	}
	if fe.Field != field {
		t.Errorf("%s: field %q, want %q (%v)", name, fe.Field, field, err)
	}
	if !errors.Is(err, ErrInvalidArgument) || (want != nil && !errors.Is(err, want)) {
		t.Errorf("%s: %v is not %v", name, err, want)
	}
}

func TestBadInputNamesTheField(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	k := randKey(t)
	join := nextEUI(3)
	addr := DevAddr{1, 2, 3, 4}
	long := strings.Repeat("x", 201)
	cases := []struct {
		name  string
		field string
		class error
		fn    func(tx *Tx) error
	}{
		{"site outside EEA", "country", ErrResidency, func(tx *Tx) error {
			_, err := tx.Sites().Create(ctx, NewSite{Name: "London", Country: "GB"})
			return err
		}},
		{"site name too long", "name", nil, func(tx *Tx) error {
			_, err := tx.Sites().Create(ctx, NewSite{Name: long, Country: "NL"})
			return err
		}},
		{"site duplicate name", "name", ErrAlreadyExists, func(tx *Tx) error {
			_, err := tx.Sites().Create(ctx, NewSite{Name: strings.ToUpper(w.A.Site.Name), Country: "NL"})
			return err
		}},
		{"site bad profile", "rule_profile", nil, func(tx *Tx) error {
			_, err := tx.Sites().Create(ctx, NewSite{Name: "x", Country: "NL", RuleProfile: "FR"})
			return err
		}},
		{"site bad override", "overrides.cold_max_c", nil, func(tx *Tx) error {
			v := 140.0
			_, err := tx.Sites().Create(ctx, NewSite{Name: "x", Country: "NL", Overrides: Overrides{ColdMaxC: &v}})
			return err
		}},
		{"tap bad kind", "kind", nil, func(tx *Tx) error {
			_, err := tx.TapPoints().Create(ctx, NewTapPoint{SiteID: w.A.Site.ID, Name: "x", Kind: "SHOWER"})
			return err
		}},
		{"tap unknown site", "site_id", ErrNotFound, func(tx *Tx) error {
			_, err := tx.TapPoints().Create(ctx, NewTapPoint{SiteID: uuid.New(), Name: "x", Kind: TapCold})
			return err
		}},
		{"tap flush interval", "flush_interval", nil, func(tx *Tx) error {
			_, err := tx.TapPoints().Create(ctx, NewTapPoint{SiteID: w.A.Site.ID, Name: "x", Kind: TapCold, FlushInterval: time.Minute})
			return err
		}},
		{"device duplicate DevEUI (other tenant)", "dev_eui", ErrAlreadyExists, func(tx *Tx) error {
			_, err := tx.Devices().Create(ctx, NewDevice{DevEUI: w.B.Device, Activation: OTAA, JoinEUI: &join, AppKey: &k})
			return err
		}},
		{"device OTAA without AppKey", "app_key", nil, func(tx *Tx) error {
			_, err := tx.Devices().Create(ctx, NewDevice{DevEUI: nextEUI(5), Activation: OTAA, JoinEUI: &join})
			return err
		}},
		{"device ABP without DevAddr", "dev_addr", nil, func(tx *Tx) error {
			_, err := tx.Devices().Create(ctx, NewDevice{DevEUI: nextEUI(5), Activation: ABP, NwkSKey: &k, AppSKey: &k})
			return err
		}},
		{"device ABP with AppKey", "app_key", nil, func(tx *Tx) error {
			_, err := tx.Devices().Create(ctx, NewDevice{DevEUI: nextEUI(5), Activation: ABP, DevAddr: &addr, NwkSKey: &k, AppSKey: &k, AppKey: &k})
			return err
		}},
		{"device zero DevEUI", "dev_eui", nil, func(tx *Tx) error {
			_, err := tx.Devices().Create(ctx, NewDevice{Activation: OTAA, JoinEUI: &join, AppKey: &k})
			return err
		}},
		{"device bad activation", "activation", nil, func(tx *Tx) error {
			_, err := tx.Devices().Create(ctx, NewDevice{DevEUI: nextEUI(5), Activation: "MAGIC"})
			return err
		}},
		{"device interval", "expected_interval", nil, func(tx *Tx) error {
			_, err := tx.Devices().Create(ctx, NewDevice{DevEUI: nextEUI(5), Activation: OTAA, JoinEUI: &join, AppKey: &k, ExpectedInterval: time.Second})
			return err
		}},
		{"device unknown site", "site_id", ErrNotFound, func(tx *Tx) error {
			id := uuid.New()
			_, err := tx.Devices().Create(ctx, NewDevice{DevEUI: nextEUI(5), SiteID: &id, Activation: OTAA, JoinEUI: &join, AppKey: &k})
			return err
		}},
		{"device tap point of another site", "site_id", nil, func(tx *Tx) error {
			s, err := tx.Sites().Create(ctx, NewSite{Name: "second", Country: "BE"})
			if err != nil {
				return err
			}
			_, err = tx.Devices().Create(ctx, NewDevice{DevEUI: nextEUI(5), SiteID: &s.ID, TapPointID: &w.A.Tap.ID, Activation: OTAA, JoinEUI: &join, AppKey: &k})
			return err
		}},
		{"device name too long", "name", nil, func(tx *Tx) error {
			_, err := tx.Devices().Create(ctx, NewDevice{DevEUI: nextEUI(5), Name: long, Activation: OTAA, JoinEUI: &join, AppKey: &k})
			return err
		}},
		{"gateway duplicate", "gateway_eui", ErrAlreadyExists, func(tx *Tx) error {
			_, err := tx.Gateways().Create(ctx, NewGateway{GatewayEUI: w.C.Gateway})
			return err
		}},
		{"user bad email", "email", nil, func(tx *Tx) error {
			_, err := tx.Users().Create(ctx, NewUser{Email: "no-at-sign"})
			return err
		}},
		{"user duplicate email", "email", ErrAlreadyExists, func(tx *Tx) error {
			_, err := tx.Users().Create(ctx, NewUser{Email: strings.ToUpper(w.B.User.Email)})
			return err
		}},
		{"grant bad role", "role", nil, func(tx *Tx) error {
			_, err := tx.RoleGrants().Create(ctx, NewRoleGrant{UserID: &w.A.User.ID, Role: "root"})
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := e.store.InTx(ctx, CustomerScope(w.A.Customer.ID, "t"), tc.fn)
			expectField(t, tc.name, err, tc.field, tc.class)
		})
	}
}

// TestNothingHalfWritten: a device whose insert fails after its customer's
// data key was created leaves neither behind.
func TestNothingHalfWritten(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	var cust Customer
	e.inTx(t, PlatformScope("t"), func(tx *Tx) error {
		var err error
		cust, err = tx.Customers().Create(ctx, NewCustomer{Name: "fresh"})
		return err
	})
	var other Customer
	e.inTx(t, PlatformScope("t"), func(tx *Tx) error {
		var err error
		other, err = tx.Customers().Create(ctx, NewCustomer{Name: "other"})
		if err != nil {
			return err
		}
		k := randKey(t)
		j := nextEUI(9)
		_, err = tx.Devices().Create(ctx, NewDevice{DevEUI: EUI64{9, 9, 9, 9, 9, 9, 9, 9}, CustomerID: other.ID, Activation: OTAA, JoinEUI: &j, AppKey: &k})
		return err
	})
	k := randKey(t)
	j := nextEUI(9)
	err := e.store.InTx(ctx, CustomerScope(cust.ID, "t"), func(tx *Tx) error {
		// The data key is created, then the insert hits the duplicate.
		_, err := tx.Devices().Create(ctx, NewDevice{DevEUI: EUI64{9, 9, 9, 9, 9, 9, 9, 9}, Activation: OTAA, JoinEUI: &j, AppKey: &k})
		return err
	})
	expectField(t, "duplicate", err, "dev_eui", ErrAlreadyExists)
	var n int
	if err := e.admin(t).QueryRow(ctx, `SELECT count(*) FROM legiond.data_keys WHERE customer_id = $1`, cust.ID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("failed transaction left %d data keys", n)
	}
}

func TestOpenRefusesUnsafeRole(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	_, err := Open(ctx, Config{DSN: e.db.DSN})
	if !errors.Is(err, ErrUnsafeRole) {
		t.Fatalf("superuser DSN: want ErrUnsafeRole, got %v", err)
	}
	st, err := Open(ctx, Config{DSN: e.db.DSN, AllowUnsafeRole: true})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := (&Config{}).Validate(); err == nil {
		t.Fatal("empty config validated")
	}
}

func TestMigrateIdempotentAndVersioned(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	res, err := Migrate(ctx, MigrateConfig{DSN: e.db.DSN})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != 0 || res.From != LatestVersion() || res.To != LatestVersion() {
		t.Fatalf("second migrate: %+v (latest %d)", res, LatestVersion())
	}
	// A fresh, empty database: Open explains what to do.
	fresh := e.db.Server
	name := e.db.Name + "_empty"
	if err := fresh.CreateDatabase(ctx, name, ""); err != nil {
		t.Fatal(err)
	}
	defer fresh.DropDatabase(context.Background(), name)
	_, err = Open(ctx, Config{DSN: fresh.UserDSN(name, AppRole, testAppPassword)})
	if err == nil || !strings.Contains(err.Error(), "legiond migrate") {
		t.Fatalf("unmigrated database: %v", err)
	}
	res, err = Migrate(ctx, MigrateConfig{DSN: fresh.DSN(name)})
	if err != nil || res.From != 0 || res.To != LatestVersion() || len(res.Applied) == 0 {
		t.Fatalf("fresh migrate: %+v, %v", res, err)
	}
}
