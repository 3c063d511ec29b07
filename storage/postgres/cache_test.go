package postgres

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"
)

func startCache(t testing.TB, e *env) *Cache {
	t.Helper()
	c, err := NewCache(CacheConfig{Store: e.store, ReconnectDelay: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("cache run: %v", err)
		}
	})
	select {
	case <-c.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("cache not ready")
	}
	return c
}

// waitFor blocks until cond holds, woken by cache changes (no polling).
func waitFor(t testing.TB, c *Cache, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		ch := c.Changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("cache never showed: %s (stats %+v)", what, c.Stats())
		}
	}
}

func has(list []Candidate, e EUI64) (Candidate, bool) {
	for _, c := range list {
		if c.DevEUI == e {
			return c, true
		}
	}
	return Candidate{}, false
}

func TestCacheFollowsRegistry(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	c := startCache(t, e)

	// Initial load: tenancy, placement, rules, keys.
	dev, err := func() (Device, error) {
		var d Device
		err := e.store.InTx(ctx, PlatformScope("t"), func(tx *Tx) error {
			var err error
			d, err = tx.Devices().Get(ctx, w.A.Device)
			return err
		})
		return d, err
	}()
	if err != nil {
		t.Fatal(err)
	}
	cd, ok := has(c.Lookup(*dev.DevAddr), w.A.Device)
	if !ok {
		t.Fatalf("initial load misses %s; stats %+v", w.A.Device, c.Stats())
	}
	if cd.CustomerID != w.A.Customer.ID || cd.PartnerID != w.P1.Partner.ID || cd.SiteID != w.A.Site.ID ||
		cd.TapPointID != w.A.Tap.ID || cd.TapKind != TapHot || cd.RuleProfile != ProfileNL ||
		cd.NwkSKey != *w.A.Keys.NwkSKey || cd.AppSKey != *w.A.Keys.AppSKey || cd.ExpectedInterval != DefaultExpectedInterval {
		t.Fatalf("candidate: %+v", cd)
	}
	if c.Stats().Devices != 4 {
		t.Fatalf("stats: %+v", c.Stats())
	}

	// A new device through the repository, sharing A's DevAddr.
	newEUI := nextEUI(0x72)
	nwk, app := randKey(t), randKey(t)
	e.inTx(t, CustomerScope(w.B.Customer.ID, "t"), func(tx *Tx) error {
		_, err := tx.Devices().Create(ctx, NewDevice{DevEUI: newEUI, SiteID: &w.B.Site.ID, Activation: ABP, DevAddr: dev.DevAddr, NwkSKey: &nwk, AppSKey: &app})
		return err
	})
	waitFor(t, c, "new device", func() bool { _, ok := has(c.Lookup(*dev.DevAddr), newEUI); return ok })
	if got := c.Lookup(*dev.DevAddr); len(got) != 2 {
		t.Fatalf("shared DevAddr: %d candidates", len(got))
	}

	// Re-keying moves it to another DevAddr.
	moved := DevAddr{0x26, 0xFF, 0xEE, 0xDD}
	e.inTx(t, CustomerScope(w.B.Customer.ID, "t"), func(tx *Tx) error {
		return tx.Devices().UpdateSession(ctx, newEUI, moved, app, nwk)
	})
	waitFor(t, c, "moved device", func() bool {
		cd, ok := has(c.Lookup(moved), newEUI)
		return ok && cd.NwkSKey == app
	})
	if _, still := has(c.Lookup(*dev.DevAddr), newEUI); still {
		t.Fatal("old DevAddr still lists the moved device")
	}

	// Tap point and site changes reach the devices placed there.
	e.inTx(t, CustomerScope(w.A.Customer.ID, "t"), func(tx *Tx) error {
		_, err := tx.PgxTx().Exec(ctx, `UPDATE tap_points SET kind = 'CIRCULATION_RETURN', flush_interval_s = 259200 WHERE id = $1`, w.A.Tap.ID)
		return err
	})
	waitFor(t, c, "tap kind", func() bool {
		cd, _ := c.Device(w.A.Device)
		return cd.TapKind == TapCirculationReturn && cd.FlushInterval == 72*time.Hour
	})
	e.inTx(t, CustomerScope(w.A.Customer.ID, "t"), func(tx *Tx) error {
		_, err := tx.PgxTx().Exec(ctx, `UPDATE sites SET rule_profile = 'DE', overrides = '{"cold_max_c": 21}' WHERE id = $1`, w.A.Site.ID)
		return err
	})
	waitFor(t, c, "site profile", func() bool {
		cd, _ := c.Device(w.A.Device)
		return cd.RuleProfile == ProfileDE && cd.Overrides.ColdMaxC != nil && *cd.Overrides.ColdMaxC == 21
	})

	// Deletion.
	e.inTx(t, PlatformScope("t"), func(tx *Tx) error { return tx.Devices().Delete(ctx, newEUI) })
	waitFor(t, c, "deletion", func() bool { _, ok := c.Device(newEUI); return !ok })
	if len(c.Lookup(moved)) != 0 {
		t.Fatal("deleted device still under its DevAddr")
	}

	// A bulk import arrives in a few notifications.
	n := 1000
	csv := importCSV(n, 0x7300000000000000, w.C.Site.ID.String())
	start := time.Now()
	if _, err := e.store.ImportDevices(ctx, CustomerScope(w.C.Customer.ID, "t"), strings.NewReader(csv), ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	committed := time.Now()
	waitFor(t, c, "imported devices", func() bool { return c.Stats().Devices == 4+n })
	t.Logf("import of %d: committed after %v, all in cache %v after commit", n, committed.Sub(start), time.Since(committed))
}

func TestCacheReloadsAfterReconnect(t *testing.T) {
	e := newEnv(t)
	w := buildWorld(t, e)
	ctx := testCtx(t)
	c := startCache(t, e)
	admin := e.admin(t)
	var killed int
	if err := admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'legiond-registry-cache'`).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d listener connections", killed)
	}
	eui := nextEUI(0x74)
	k, j := randKey(t), nextEUI(0x75)
	e.inTx(t, CustomerScope(w.D.Customer.ID, "t"), func(tx *Tx) error {
		_, err := tx.Devices().Create(ctx, NewDevice{DevEUI: eui, Activation: OTAA, JoinEUI: &j, AppKey: &k})
		return err
	})
	waitFor(t, c, "device added while disconnected", func() bool {
		cd, ok := c.Device(eui)
		return ok && cd.AppKey == k && !cd.HasSession
	})
	if s := c.Stats(); s.Reconnects < 1 || s.FullLoads < 2 {
		t.Fatalf("stats after reconnect: %+v", s)
	}
}

// BenchmarkCacheLookup: DevAddr lookups against 10,000 cached devices.
func BenchmarkCacheLookup(b *testing.B) {
	e := newEnv(b)
	w := buildWorld(b, e)
	ctx := testCtx(b)
	if _, err := e.store.ImportDevices(ctx, CustomerScope(w.A.Customer.ID, "b"),
		strings.NewReader(importCSV(20000, 0x7400000000000000, w.A.Site.ID.String())), ImportOptions{}); err != nil {
		b.Fatal(err)
	}
	c := startCache(b, e)
	var addrs []DevAddr
	for a := range c.byAddr {
		addrs = append(addrs, a)
	}
	if len(addrs) < 10000 {
		b.Fatalf("%d addresses cached", len(addrs))
	}
	b.ReportMetric(float64(c.Stats().LastFullLoad.Microseconds())/1000, "ms-full-load-20k")
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if len(c.Lookup(addrs[i%len(addrs)])) == 0 {
				b.Fatal("miss")
			}
			i++
		}
	})
}

// BenchmarkNotifyRefresh measures commit-to-visible latency: a device
// created through the repository until the cache serves it.
func BenchmarkNotifyRefresh(b *testing.B) {
	e := newEnv(b)
	w := buildWorld(b, e)
	ctx := testCtx(b)
	c := startCache(b, e)
	scope := CustomerScope(w.A.Customer.ID, "b")
	nwk, app := randKey(b), randKey(b)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		eui := EUI64{0x75, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i), 1, 2, 3}
		addr := DevAddr{0x27, byte(i >> 16), byte(i >> 8), byte(i)}
		if err := e.store.InTx(ctx, scope, func(tx *Tx) error {
			_, err := tx.Devices().Create(ctx, NewDevice{DevEUI: eui, SiteID: &w.A.Site.ID, Activation: ABP, DevAddr: &addr, NwkSKey: &nwk, AppSKey: &app})
			return err
		}); err != nil {
			b.Fatal(err)
		}
		committed := time.Now()
		waitFor(b, c, "device", func() bool { _, ok := c.Device(eui); return ok })
		lat = append(lat, time.Since(committed))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "µs-p50-commit-to-visible")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "µs-p99-commit-to-visible")
}
