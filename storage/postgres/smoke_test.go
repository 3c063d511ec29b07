package postgres

import (
	"context"
	"testing"
)

func TestSmoke(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	e.inTx(t, PlatformScope("test"), func(tx *Tx) error {
		p, err := tx.Partners().Create(ctx, NewPartner{Name: "P"})
		if err != nil {
			return err
		}
		c, err := tx.Customers().Create(ctx, NewCustomer{PartnerID: &p.ID, Name: "C"})
		if err != nil {
			return err
		}
		s, err := tx.Sites().Create(ctx, NewSite{CustomerID: c.ID, Name: "S", Country: "nl"})
		if err != nil {
			return err
		}
		tp, err := tx.TapPoints().Create(ctx, NewTapPoint{SiteID: s.ID, Name: "T", Kind: TapHot})
		if err != nil {
			return err
		}
		eui, _ := ParseEUI64("0102030405060708")
		join, _ := ParseEUI64("0102030405060709")
		k, _ := ParseAES128Key("000102030405060708090a0b0c0d0e0f")
		d, err := tx.Devices().Create(ctx, NewDevice{DevEUI: eui, TapPointID: &tp.ID, Activation: OTAA, JoinEUI: &join, AppKey: &k})
		if err != nil {
			return err
		}
		t.Logf("%+v", d)
		keys, err := tx.Devices().Keys(ctx, eui)
		if err != nil {
			return err
		}
		if *keys.AppKey != k {
			t.Fatal("key mismatch")
		}
		return nil
	})
	_ = context.Background()
}
