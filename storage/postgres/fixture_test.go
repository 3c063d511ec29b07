package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
)

// tenantFixture is one customer with one row in every customer-owned
// table.
type tenantFixture struct {
	Customer Customer
	Site     Site
	Tap      TapPoint
	Device   EUI64
	Gateway  EUI64
	User     User
	Client   APIClient
	Grant    RoleGrant
	DataKey  uuid.UUID
	Keys     DeviceKeys
	// BreakGlass is a support user's grant on the customer.
	BreakGlass BreakGlassGrant
}

// partnerFixture is a partner with partner-owned rows.
type partnerFixture struct {
	Partner Partner
	Gateway EUI64
	User    User
	Client  APIClient
	Grant   RoleGrant
}

// world: partners P1 and P2; customers A and B under P1, C under P2, D
// direct; platform staff user S.
type world struct {
	P1, P2     partnerFixture
	A, B, C, D tenantFixture
	Staff      User
}

var fixtureSeq uint64

func nextEUI(prefix byte) EUI64 {
	fixtureSeq++
	var e EUI64
	e[0] = prefix
	for i := 7; i > 0; i-- {
		e[i] = byte(fixtureSeq >> (8 * (7 - i)))
	}
	return e
}

func randKey(t testing.TB) AES128Key {
	t.Helper()
	mk, err := GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	var k AES128Key
	copy(k[:], mk.key[:16])
	return k
}

func buildPartner(ctx context.Context, t testing.TB, tx *Tx, name string) partnerFixture {
	t.Helper()
	var f partnerFixture
	var err error
	must := func(e error) {
		t.Helper()
		if e != nil {
			t.Fatalf("fixture %s: %v", name, e)
		}
	}
	f.Partner, err = tx.Partners().Create(ctx, NewPartner{Name: name})
	must(err)
	f.Gateway = nextEUI(0xAA)
	_, err = tx.Gateways().Create(ctx, NewGateway{GatewayEUI: f.Gateway, PartnerID: &f.Partner.ID, Name: name + " gw"})
	must(err)
	f.User, err = tx.Users().Create(ctx, NewUser{PartnerID: &f.Partner.ID, Email: name + "@partner.example"})
	must(err)
	f.Client, _, err = tx.APIClients().Create(ctx, NewAPIClient{PartnerID: &f.Partner.ID, Name: name + " integration"})
	must(err)
	f.Grant, err = tx.RoleGrants().Create(ctx, NewRoleGrant{UserID: &f.User.ID, Role: RoleAdmin, PartnerID: &f.Partner.ID})
	must(err)
	return f
}

func buildTenant(ctx context.Context, t testing.TB, tx *Tx, partner *uuid.UUID, name string) tenantFixture {
	t.Helper()
	var f tenantFixture
	var err error
	must := func(e error) {
		t.Helper()
		if e != nil {
			t.Fatalf("fixture %s: %v", name, e)
		}
	}
	f.Customer, err = tx.Customers().Create(ctx, NewCustomer{PartnerID: partner, Name: name})
	must(err)
	f.Site, err = tx.Sites().Create(ctx, NewSite{CustomerID: f.Customer.ID, Name: name + " site", Country: "NL", City: "Utrecht"})
	must(err)
	f.Tap, err = tx.TapPoints().Create(ctx, NewTapPoint{SiteID: f.Site.ID, Name: name + " tap", Kind: TapHot})
	must(err)
	f.Device = nextEUI(0x70)
	addr := DevAddr{0x26, 0x01, byte(fixtureSeq >> 8), byte(fixtureSeq)}
	nwk, app := randKey(t), randKey(t)
	f.Keys = DeviceKeys{NwkSKey: &nwk, AppSKey: &app}
	_, err = tx.Devices().Create(ctx, NewDevice{DevEUI: f.Device, TapPointID: &f.Tap.ID, Activation: ABP, DevAddr: &addr, NwkSKey: &nwk, AppSKey: &app})
	must(err)
	must(tx.tx.QueryRow(ctx, `SELECT id FROM data_keys WHERE customer_id = $1`, f.Customer.ID).Scan(&f.DataKey))
	f.Gateway = nextEUI(0xBB)
	_, err = tx.Gateways().Create(ctx, NewGateway{GatewayEUI: f.Gateway, SiteID: &f.Site.ID, Name: name + " gw"})
	must(err)
	f.User, err = tx.Users().Create(ctx, NewUser{CustomerID: &f.Customer.ID, Email: fmt.Sprintf("%s@customer.example", name)})
	must(err)
	f.Client, _, err = tx.APIClients().Create(ctx, NewAPIClient{CustomerID: &f.Customer.ID, Name: name + " integration"})
	must(err)
	f.Grant, err = tx.RoleGrants().Create(ctx, NewRoleGrant{UserID: &f.User.ID, Role: RoleManager, SiteID: &f.Site.ID})
	must(err)
	// Inserted directly: Create would also append to the audit log, which
	// the audit tests expect empty after the fixture.
	f.BreakGlass, err = scanBreakGlass(tx.tx.QueryRow(ctx, `INSERT INTO break_glass_grants (customer_id, subject, reason, starts_at, expires_at)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+grantBGCols, f.Customer.ID, "support-"+name, "ticket 42: "+name, time.Now(), time.Now().Add(time.Hour)))
	must(err)
	return f
}

func buildWorld(t testing.TB, e *env) *world {
	t.Helper()
	ctx := testCtx(t)
	w := &world{}
	e.inTx(t, PlatformScope("fixture"), func(tx *Tx) error {
		w.P1 = buildPartner(ctx, t, tx, "p1")
		w.P2 = buildPartner(ctx, t, tx, "p2")
		w.A = buildTenant(ctx, t, tx, &w.P1.Partner.ID, "a")
		w.B = buildTenant(ctx, t, tx, &w.P1.Partner.ID, "b")
		w.C = buildTenant(ctx, t, tx, &w.P2.Partner.ID, "c")
		w.D = buildTenant(ctx, t, tx, nil, "d")
		var err error
		w.Staff, err = tx.Users().Create(ctx, NewUser{Email: "staff@legiond.example"})
		return err
	})
	return w
}
