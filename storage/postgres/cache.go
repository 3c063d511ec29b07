package postgres

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// NotifyChannel is the LISTEN/NOTIFY channel the registry triggers use.
const NotifyChannel = "legiond_registry"

// Candidate is what the stream router needs to try one device for a
// frame: identity, tenancy, placement, rules and decrypted keys.
type Candidate struct {
	DevEUI     EUI64
	DevAddr    DevAddr // valid when HasSession
	HasSession bool
	Activation Activation
	JoinEUI    EUI64 // OTAA only
	// Tenancy.
	CustomerID uuid.UUID
	PartnerID  uuid.UUID // uuid.Nil for a direct customer
	// Placement; uuid.Nil when not placed.
	SiteID     uuid.UUID
	TapPointID uuid.UUID
	TapKind    TapKind // "" when not placed at a tap point
	// Rules: the site's profile, site overrides with the tap point's on top.
	RuleProfile   RuleProfile
	Overrides     Overrides
	FlushInterval time.Duration // 0: the profile's
	// ExpectedInterval is the device's uplink interval.
	ExpectedInterval time.Duration
	// Keys; zero when absent.
	AppKey  AES128Key
	NwkSKey AES128Key
	AppSKey AES128Key
}

// CacheConfig configures a Cache.
type CacheConfig struct {
	// Store loads candidates (platform scope) and gives the DSN for the
	// listening connection. Required, with a KeyRing.
	Store *Store
	// Logger receives reconnects. Default: discard.
	Logger *slog.Logger
	// ReconnectDelay is the pause before reconnecting after the listening
	// connection fails. Default 1s.
	ReconnectDelay time.Duration
}

// Validate reports a missing store or key ring.
func (c *CacheConfig) Validate() error {
	if c.Store == nil {
		return errors.New("registry cache: store is required")
	}
	if c.Store.keys == nil {
		return fmt.Errorf("registry cache: %w", ErrNoKeyRing)
	}
	if c.ReconnectDelay < 0 {
		return errors.New("registry cache: negative reconnect delay")
	}
	return nil
}

// CacheStats are counters of a Cache.
type CacheStats struct {
	Devices       int
	FullLoads     uint64
	Refreshes     uint64 // notification batches applied
	Reconnects    uint64
	LastRefresh   time.Duration // time to reload and apply the last batch
	LastFullLoad  time.Duration
	LastBatchSize int // devices reloaded by the last batch
	// Undecryptable counts devices left out because their keys did not
	// decrypt (a master key not loaded, or tampering).
	Undecryptable uint64
}

// Cache maps DevAddr to candidate devices for the stream router. It loads
// every device once, then follows changes through LISTEN/NOTIFY; after a
// lost connection it reconnects and reloads everything (notifications
// sent meanwhile are lost by design of NOTIFY).
//
// Run's goroutine is the only writer; Lookup and Device may be called
// from any goroutine. Returned slices are shared: do not modify them.
type Cache struct {
	cfg CacheConfig
	log *slog.Logger

	mu      sync.RWMutex
	byAddr  map[DevAddr][]Candidate
	byEUI   map[EUI64]Candidate
	changed chan struct{}

	ready     chan struct{}
	readyOnce sync.Once

	fullLoads, refreshes, reconnects atomic.Uint64
	undecryptable                    atomic.Uint64
	lastRefresh, lastFullLoad        atomic.Int64
	lastBatch                        atomic.Int64
}

// NewCache returns an empty cache; Run fills it.
func NewCache(cfg CacheConfig) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ReconnectDelay == 0 {
		cfg.ReconnectDelay = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Cache{
		cfg: cfg, log: cfg.Logger,
		byAddr: map[DevAddr][]Candidate{}, byEUI: map[EUI64]Candidate{},
		changed: make(chan struct{}), ready: make(chan struct{}),
	}, nil
}

// Ready is closed after the first full load.
func (c *Cache) Ready() <-chan struct{} { return c.ready }

// Changed returns a channel closed at the next change applied to the
// cache. Wait on it, then look again.
func (c *Cache) Changed() <-chan struct{} {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.changed
}

// Lookup returns the devices currently holding addr (several devices may
// share a DevAddr; the router tells them apart by MIC). The slice is
// shared and must not be modified.
func (c *Cache) Lookup(addr DevAddr) []Candidate {
	c.mu.RLock()
	v := c.byAddr[addr]
	c.mu.RUnlock()
	return v
}

// Device returns one device by DevEUI (for join requests).
func (c *Cache) Device(eui EUI64) (Candidate, bool) {
	c.mu.RLock()
	v, ok := c.byEUI[eui]
	c.mu.RUnlock()
	return v, ok
}

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	c.mu.RLock()
	n := len(c.byEUI)
	c.mu.RUnlock()
	return CacheStats{
		Devices: n, FullLoads: c.fullLoads.Load(), Refreshes: c.refreshes.Load(), Reconnects: c.reconnects.Load(),
		LastRefresh: time.Duration(c.lastRefresh.Load()), LastFullLoad: time.Duration(c.lastFullLoad.Load()),
		LastBatchSize: int(c.lastBatch.Load()), Undecryptable: c.undecryptable.Load(),
	}
}

// Run keeps the cache fresh until ctx ends. It returns nil then.
func (c *Cache) Run(ctx context.Context) error {
	for {
		err := c.session(ctx)
		select {
		case <-ctx.Done():
			return nil
		default:
		}
		c.reconnects.Add(1)
		c.log.Warn("registry cache: listener lost, reloading after reconnect", "err", err, "delay", c.cfg.ReconnectDelay)
		t := time.NewTimer(c.cfg.ReconnectDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// session listens first, then loads everything (so no change between
// load and listen is missed), then applies notification batches.
func (c *Cache) session(ctx context.Context) error {
	cc := c.cfg.Store.pool.Config().ConnConfig.Copy()
	cc.RuntimeParams["application_name"] = "legiond-registry-cache"
	var pending []string
	cc.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) {
		if n.Channel == NotifyChannel {
			pending = append(pending, n.Payload)
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return fmt.Errorf("listen connect: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := c.fullLoad(ctx); err != nil {
		return err
	}
	c.readyOnce.Do(func() { close(c.ready) })
	for {
		if len(pending) == 0 {
			if err := conn.PgConn().WaitForNotification(ctx); err != nil {
				return fmt.Errorf("wait: %w", err)
			}
		}
		// A round trip drains what the server queued before it: every
		// notification already sent arrives ahead of the reply.
		if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
			return fmt.Errorf("drain: %w", err)
		}
		batch := pending
		pending = nil
		if err := c.refresh(ctx, batch); err != nil {
			return err
		}
	}
}

func (c *Cache) fullLoad(ctx context.Context) error {
	start := time.Now()
	var all []Candidate
	err := c.cfg.Store.InTx(ctx, PlatformScope("registry-cache"), func(tx *Tx) error {
		var err error
		all, err = c.load(ctx, tx, "", nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("registry cache: full load: %w", err)
	}
	byAddr := make(map[DevAddr][]Candidate, len(all))
	byEUI := make(map[EUI64]Candidate, len(all))
	for _, cd := range all {
		byEUI[cd.DevEUI] = cd
		if cd.HasSession {
			byAddr[cd.DevAddr] = append(byAddr[cd.DevAddr], cd)
		}
	}
	c.mu.Lock()
	c.byAddr, c.byEUI = byAddr, byEUI
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	c.fullLoads.Add(1)
	c.lastFullLoad.Store(int64(time.Since(start)))
	return nil
}

// refresh reloads the devices a batch of notifications names.
func (c *Cache) refresh(ctx context.Context, payloads []string) error {
	start := time.Now()
	var euis [][]byte
	var taps, sites, custs []uuid.UUID
	for _, p := range payloads {
		kind, list, ok := strings.Cut(p, ":")
		if !ok || list == "" {
			continue
		}
		for _, k := range strings.Split(list, ",") {
			switch kind {
			case "d":
				if b, err := hex.DecodeString(k); err == nil && len(b) == 8 {
					euis = append(euis, b)
				}
			case "t", "s", "c":
				id, err := uuid.Parse(k)
				if err != nil {
					continue
				}
				switch kind {
				case "t":
					taps = append(taps, id)
				case "s":
					sites = append(sites, id)
				default:
					custs = append(custs, id)
				}
			}
		}
	}
	if len(euis)+len(taps)+len(sites)+len(custs) == 0 {
		return nil
	}
	var fresh []Candidate
	err := c.cfg.Store.InTx(ctx, PlatformScope("registry-cache"), func(tx *Tx) error {
		var err error
		fresh, err = c.load(ctx, tx, `WHERE d.dev_eui = ANY($1) OR d.tap_point_id = ANY($2) OR d.site_id = ANY($3) OR d.customer_id = ANY($4)`,
			[]any{euis, taps, sites, custs})
		return err
	})
	if err != nil {
		return fmt.Errorf("registry cache: refresh: %w", err)
	}
	gone := make(map[EUI64]bool, len(euis))
	for _, b := range euis {
		var e EUI64
		copy(e[:], b)
		gone[e] = true
	}
	c.mu.Lock()
	for _, cd := range fresh {
		delete(gone, cd.DevEUI)
		c.removeLocked(cd.DevEUI)
		c.byEUI[cd.DevEUI] = cd
		if cd.HasSession {
			old := c.byAddr[cd.DevAddr]
			next := make([]Candidate, 0, len(old)+1)
			next = append(append(next, old...), cd)
			c.byAddr[cd.DevAddr] = next
		}
	}
	for e := range gone {
		c.removeLocked(e)
	}
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	c.refreshes.Add(1)
	c.lastBatch.Store(int64(len(fresh)))
	c.lastRefresh.Store(int64(time.Since(start)))
	return nil
}

// removeLocked drops a device from both indexes (copy-on-write slices).
func (c *Cache) removeLocked(e EUI64) {
	old, ok := c.byEUI[e]
	if !ok {
		return
	}
	delete(c.byEUI, e)
	if !old.HasSession {
		return
	}
	list := c.byAddr[old.DevAddr]
	next := make([]Candidate, 0, len(list))
	for _, cd := range list {
		if cd.DevEUI != e {
			next = append(next, cd)
		}
	}
	if len(next) == 0 {
		delete(c.byAddr, old.DevAddr)
	} else {
		c.byAddr[old.DevAddr] = next
	}
}

// load reads candidates (all, or those matching where) and decrypts keys.
func (c *Cache) load(ctx context.Context, tx *Tx, where string, args []any) ([]Candidate, error) {
	rows, err := tx.tx.Query(ctx, `
		SELECT d.dev_eui, d.dev_addr, d.activation, d.join_eui, d.customer_id, cu.partner_id,
		       d.site_id, d.tap_point_id, tp.kind, s.rule_profile, s.overrides, tp.overrides, tp.flush_interval_s,
		       d.expected_interval_s, d.data_key_id, k.master_key_id, k.wrapped_key,
		       d.app_key_enc, d.nwk_s_key_enc, d.app_s_key_enc
		FROM devices d
		JOIN customers cu ON cu.id = d.customer_id
		LEFT JOIN sites s ON s.id = d.site_id
		LEFT JOIN tap_points tp ON tp.id = d.tap_point_id
		LEFT JOIN data_keys k ON k.id = d.data_key_id `+where, args...)
	if err != nil {
		return nil, mapErr("load candidates", err)
	}
	defer rows.Close()
	var out []Candidate
	for rows.Next() {
		var (
			cd                          Candidate
			eui, addr, join             []byte
			partner, site, tap, dkID    *uuid.UUID
			kind, profile, masterID     *string
			siteOv, tapOv               []byte
			flush                       *int32
			interval                    int32
			wrapped, appK, nwkSK, appSK []byte
		)
		if err := rows.Scan(&eui, &addr, &cd.Activation, &join, &cd.CustomerID, &partner, &site, &tap, &kind, &profile,
			&siteOv, &tapOv, &flush, &interval, &dkID, &masterID, &wrapped, &appK, &nwkSK, &appSK); err != nil {
			return nil, mapErr("load candidates", err)
		}
		copy(cd.DevEUI[:], eui)
		if addr != nil {
			copy(cd.DevAddr[:], addr)
			cd.HasSession = true
		}
		copy(cd.JoinEUI[:], join)
		cd.PartnerID, cd.SiteID, cd.TapPointID = optID(partner), optID(site), optID(tap)
		if kind != nil {
			cd.TapKind = TapKind(*kind)
		}
		cd.RuleProfile = ProfileNL
		if profile != nil {
			cd.RuleProfile = RuleProfile(*profile)
		}
		var so, to Overrides
		if siteOv != nil {
			_ = json.Unmarshal(siteOv, &so)
		}
		if tapOv != nil {
			_ = json.Unmarshal(tapOv, &to)
		}
		cd.Overrides = so.Merge(to)
		if flush != nil {
			cd.FlushInterval = time.Duration(*flush) * time.Second
		}
		cd.ExpectedInterval = time.Duration(interval) * time.Second
		if dkID != nil && masterID != nil {
			if err := decryptCandidate(tx.store.keys, &cd, *dkID, *masterID, wrapped, appK, nwkSK, appSK); err != nil {
				c.undecryptable.Add(1)
				continue
			}
		}
		out = append(out, cd)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr("load candidates", err)
	}
	return out, nil
}

func decryptCandidate(kr *KeyRing, cd *Candidate, dkID uuid.UUID, masterID string, wrapped, appK, nwkSK, appSK []byte) error {
	a, err := kr.dataKey(dkID, cd.CustomerID, masterID, wrapped)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		col string
		ct  []byte
		dst *AES128Key
	}{{"app_key", appK, &cd.AppKey}, {"nwk_s_key", nwkSK, &cd.NwkSKey}, {"app_s_key", appSK, &cd.AppSKey}} {
		k, err := openKey(a, cd.DevEUI, f.col, f.ct)
		if err != nil {
			return err
		}
		if k != nil {
			*f.dst = *k
		}
	}
	return nil
}
