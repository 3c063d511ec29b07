package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/legionelladossier/legiond/actors"
	"github.com/legionelladossier/legiond/devicetwin"
	"github.com/legionelladossier/legiond/devicetwin/lorawan"
	"github.com/legionelladossier/legiond/loadtest/fleet"
	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/pgtest"
	"github.com/legionelladossier/legiond/storage/postgres"
	"github.com/legionelladossier/legiond/streams"
)

// registry is a migrated PostgreSQL registry for a pipeline test.
type registry struct {
	appDSN  string
	keyFile string
	store   *postgres.Store
	// adminDSN is the test database as the server's superuser (backups).
	adminDSN string
	// storageKeyFile holds a storage master key for the node's encrypted
	// twin store.
	storageKeyFile string
	// srv is the server and db the database (the DR drill drops it).
	srv *pgtest.Server
	db  string
}

// registryAppPassword is the application role's password in the test
// registries.
const registryAppPassword = "pipeline-test-password"

// startRegistry starts (or reuses, with $DATABASE_URL) a PostgreSQL server,
// creates a fresh migrated database and a master key file, and opens the
// registry as the application role.
func startRegistry(tb testing.TB, ctx context.Context) *registry {
	tb.Helper()
	srv, err := pgtest.StartFromEnv(ctx, pgtest.Config{})
	if err != nil {
		tb.Fatalf("cannot start PostgreSQL: %v", err)
	}
	tb.Cleanup(func() { _ = srv.Stop() })
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	db := "legiond_pipeline_" + hex.EncodeToString(rnd[:])
	if err := srv.CreateDatabase(ctx, db, ""); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = srv.DropDatabase(context.Background(), db) })
	const pw = registryAppPassword
	if _, err := postgres.Migrate(ctx, postgres.MigrateConfig{DSN: srv.DSN(db), AppPassword: pw}); err != nil {
		tb.Fatal(err)
	}
	keyDir := tb.TempDir()
	keyFile, storageKeyFile := filepath.Join(keyDir, "master.key"), filepath.Join(keyDir, "storage.key")
	for _, f := range []string{keyFile, storageKeyFile} {
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		if err := os.WriteFile(f, []byte(hex.EncodeToString(raw)+"\n"), 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	mk, err := postgres.LoadMasterKeyFile(keyFile)
	if err != nil {
		tb.Fatal(err)
	}
	ring, err := postgres.NewKeyRing(mk)
	if err != nil {
		tb.Fatal(err)
	}
	r := &registry{appDSN: srv.UserDSN(db, postgres.AppRole, pw), keyFile: keyFile, adminDSN: srv.DSN(db), storageKeyFile: storageKeyFile,
		srv: srv, db: db}
	if r.store, err = postgres.Open(ctx, postgres.Config{DSN: r.appDSN, KeyRing: ring}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.store.Close)
	return r
}

// fleetUplinks builds a fleet and returns every reception before until.
func fleetUplinks(tb testing.TB, cfg fleet.Config, until time.Time) (*fleet.Fleet, []fleet.Uplink) {
	tb.Helper()
	fl, err := fleet.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	var ups []fleet.Uplink
	fl.Step(until, func(u fleet.Uplink) { ups = append(ups, u) })
	if err := fl.Err(); err != nil {
		tb.Fatal(err)
	}
	return fl, ups
}

// produce writes receptions to lorawan.uplink in order.
func produce(tb testing.TB, ctx context.Context, brokers []string, ups []fleet.Uplink) {
	tb.Helper()
	p, err := streams.NewUplinkProducer(streams.ProducerConfig{Client: streams.ClientConfig{Brokers: brokers}, BatchSize: 1000, BatchTimeout: time.Millisecond}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer p.Close()
	batch := make([]streams.Uplink, 0, 1000)
	for i := range ups {
		batch = append(batch, streams.Uplink{DevAddr: ups[i].DevAddr.Uint32(), Frame: uplinkFrame(&ups[i])})
		if len(batch) == cap(batch) || i == len(ups)-1 {
			if err := p.SendUplinks(ctx, batch...); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// endOffsets returns the end offset of every partition of topic.
func endOffsets(ctx context.Context, brokers []string, topic string, partitions int) ([]int64, error) {
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	req := make([]kafka.OffsetRequest, partitions)
	for p := range partitions {
		req[p] = kafka.LastOffsetOf(p)
	}
	res, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: req}})
	if err != nil {
		return nil, err
	}
	out := make([]int64, partitions)
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, po.Error
		}
		out[po.Partition] = po.LastOffset
	}
	return out, nil
}

// committedOffsets returns the group's committed offset per partition
// (-1: none).
func committedOffsets(ctx context.Context, brokers []string, group, topic string, partitions int) ([]int64, error) {
	cl := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	ps := make([]int, partitions)
	for p := range ps {
		ps[p] = p
	}
	res, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		return nil, err
	}
	if res.Error != nil {
		return nil, res.Error
	}
	out := make([]int64, partitions)
	for _, po := range res.Topics[topic] {
		out[po.Partition] = po.CommittedOffset
	}
	return out, nil
}

// readAll reads every record of topic up to the end offsets of now.
func readAll(tb testing.TB, ctx context.Context, brokers []string, topic string, partitions int) []kafka.Message {
	tb.Helper()
	ends, err := endOffsets(ctx, brokers, topic, partitions)
	if err != nil {
		tb.Fatal(err)
	}
	var out []kafka.Message
	for p, end := range ends {
		if end == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				_ = r.Close()
				tb.Fatalf("read %s/%d: %v", topic, p, err)
			}
			out = append(out, m)
			if m.Offset >= end-1 {
				break
			}
		}
		_ = r.Close()
	}
	return out
}

func header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func describe(m kafka.Message) string {
	var hs []string
	for _, h := range m.Headers {
		hs = append(hs, h.Key+"="+string(h.Value))
	}
	return fmt.Sprintf("%s/%d@%d key=%s [%s]", m.Topic, m.Partition, m.Offset, m.Key, strings.Join(hs, " "))
}

// refTwin is a sensor twin applied in-process with the core alone: what
// the pipeline must end up with.
type refTwin struct {
	state  devicetwin.SensorState
	keys   *lorawan.SessionKeys
	events []string // ids of the events published on twin.events
}

// referenceSensors applies frames, in order, to fresh twins configured
// from the registry (the same SensorConfig the actors use).
func referenceSensors(tb testing.TB, dir actors.Directory, frames []*lorawanv1.UplinkFrame) map[devicetwin.EUI64]*refTwin {
	tb.Helper()
	out := map[devicetwin.EUI64]*refTwin{}
	var buf []devicetwin.Event
	for _, f := range frames {
		df, err := lorawan.ParseDataFrame(f.GetPhyPayload())
		if err != nil {
			continue
		}
		cands := dir.Lookup(postgres.DevAddr(df.DevAddr))
		if len(cands) != 1 {
			continue
		}
		eui := devicetwin.EUI64(cands[0].DevEUI)
		r := out[eui]
		if r == nil {
			cfg, err := actors.SensorConfig(&cands[0])
			if err != nil {
				tb.Fatal(err)
			}
			keys, err := lorawan.NewSessionKeys(lorawan.AES128Key(cands[0].NwkSKey), lorawan.AES128Key(cands[0].AppSKey))
			if err != nil {
				tb.Fatal(err)
			}
			r = &refTwin{state: devicetwin.NewSensor(eui, cfg), keys: keys}
			out[eui] = r
		}
		buf = r.state.ApplyFrame(&devicetwin.Frame{DevEUI: eui, PHYPayload: f.GetPhyPayload(), Rx: devicetwin.Rx{
			GatewayEUI: devicetwin.EUI64(f.GetGatewayEui()), RSSI: int16(f.GetRssi()), SNR: f.GetSnr(), ReceivedAt: f.GetReceivedAt().AsTime(),
		}}, r.keys, buf[:0])
		for i := range buf {
			if buf[i].Kind != devicetwin.KindRejection {
				r.events = append(r.events, buf[i].ID.String())
			}
		}
	}
	return out
}

// storedSensors reads every sensor twin of a stopped node's store, opened
// with the storage master key in storageKeyFile (the plaintext layout of
// PlaintextStore needs none).
func storedSensors(tb testing.TB, dataDir, storageKeyFile string) map[devicetwin.EUI64]devicetwin.SensorState {
	tb.Helper()
	st, _, closeStore, err := openTwinStore(dataDir, storageKeyFile, false)
	if err != nil {
		tb.Fatal(err)
	}
	defer closeStore()
	out := map[devicetwin.EUI64]devicetwin.SensorState{}
	err = st.ForEachTwin(context.Background(), func(e pebblestore.TwinEntry) error {
		if e.Kind != pebblestore.KindSensor {
			return nil
		}
		s, err := devicetwin.UnmarshalSensorSnapshot(e.Snapshot)
		if err != nil {
			return err
		}
		out[devicetwin.EUI64(e.EUI)] = s
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
