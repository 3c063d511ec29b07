package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/loadtest/fleet"
	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	"github.com/legionelladossier/legiond/storage/postgres"
	"github.com/legionelladossier/legiond/streams"
)

const simulateUsage = `usage: legiond simulate --kafka-brokers HOST:PORT,... [--database-url URL --master-key-file FILE]
                       [--sensors 100] [--gateways 3] [--seed 1] [--duration 24h] [--speed 0]
                       [--start RFC3339] [--stats-interval 5m]

Simulates a Clip'R fleet (loadtest/fleet: real encrypted LoRaWAN uplinks)
and produces its uplinks to lorawan.uplink and gateway reports to
lorawan.gateway.stats, as gateway bridges would. --duration is simulated
time; --speed 0 produces as fast as possible, N paces at N× real time.
With a database URL the fleet is provisioned first (one partner, customer
and site, a tap point per sensor, ABP devices, gateways); a fleet already
provisioned is left as it is.`

func runSimulate(ctx context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var kf kafkaFlags
	kf.register(fs, "Kafka bootstrap brokers, comma-separated (required)")
	dbURL := fs.String("database-url", "", "registry as the application role, to provision the fleet (default: do not provision)")
	keyFile := fs.String("master-key-file", "", "master key file (default $LEGIOND_MASTER_KEY)")
	sensors := fs.Int("sensors", fleet.DefaultSensors, "number of sensors")
	gateways := fs.Int("gateways", fleet.DefaultGateways, "number of gateways")
	seed := fs.Int64("seed", 1, "fleet seed (identities, keys, behaviour)")
	duration := fs.Duration("duration", 24*time.Hour, "simulated time to produce")
	speed := fs.Float64("speed", 0, "0: as fast as possible; N: N× real time")
	start := fs.String("start", "", "simulated start, RFC 3339 (default: now, to the minute)")
	statsEvery := fs.Duration("stats-interval", 5*time.Minute, "simulated interval of gateway stats (0: none)")
	partitions := fs.Int("kafka-partitions", 4, "partitions of topics created when missing")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(s.err, simulateUsage)
			return exitOK
		}
		fmt.Fprintf(s.err, "legiond simulate: %v\n%s\n", err, simulateUsage)
		return exitUsage
	}
	client, err := kf.client()
	if err != nil || len(client.Brokers) == 0 || fs.NArg() > 0 || *speed < 0 {
		fmt.Fprintf(s.err, "legiond simulate: --kafka-brokers is required (%v)\n%s\n", err, simulateUsage)
		return exitUsage
	}
	at := time.Now().UTC().Truncate(time.Minute)
	if *start != "" {
		if at, err = time.Parse(time.RFC3339, *start); err != nil {
			fmt.Fprintf(s.err, "legiond simulate: --start: %v\n", err)
			return exitUsage
		}
	}
	fl, err := fleet.New(fleet.Config{Sensors: *sensors, Gateways: *gateways, Seed: *seed, Start: at})
	if err != nil {
		fmt.Fprintf(s.err, "legiond simulate: %v\n", err)
		return exitUsage
	}
	if *dbURL != "" {
		mk, err := postgres.LoadMasterKey(*keyFile, os.Getenv)
		if err == nil {
			var ring *postgres.KeyRing
			if ring, err = postgres.NewKeyRing(mk); err == nil {
				var st *postgres.Store
				if st, err = postgres.Open(ctx, postgres.Config{DSN: *dbURL, KeyRing: ring}); err == nil {
					err = provisionFleet(ctx, st, fl, fmt.Sprintf("Simulated fleet %d", *seed))
					st.Close()
				}
			}
		}
		if err != nil {
			fmt.Fprintf(s.err, "legiond simulate: provision: %v\n", err)
			return exitFailure
		}
		fmt.Fprintf(s.out, "provisioned %d sensors and %d gateways\n", *sensors, *gateways)
	}
	if err := streams.EnsureTopics(ctx, client, streams.DefaultTopics(*partitions, 1), nil); err != nil {
		fmt.Fprintf(s.err, "legiond simulate: %v\n", err)
		return exitFailure
	}
	p, err := streams.NewUplinkProducer(streams.ProducerConfig{Client: client, BatchSize: 1000, BatchTimeout: time.Millisecond}, nil)
	if err != nil {
		fmt.Fprintf(s.err, "legiond simulate: %v\n", err)
		return exitFailure
	}
	defer func() { _ = p.Close() }()
	sim := &simulation{fleet: fl, producer: p, statsEvery: *statsEvery, speed: *speed}
	n, err := sim.run(ctx, at.Add(*duration))
	fmt.Fprintf(s.out, "produced %d uplinks and %d gateway reports\n", n, sim.stats)
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(s.err, "legiond simulate: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// simulation produces a fleet's traffic to Kafka. run may be called again
// with a later until: it continues where the previous call stopped.
type simulation struct {
	fleet      *fleet.Fleet
	producer   *streams.UplinkProducer
	statsEvery time.Duration
	speed      float64 // 0: unpaced

	stats     int                // gateway reports produced
	pos       time.Time          // simulated time reached
	nextStats time.Time          // next gateway report
	heard     map[[8]byte]uint32 // receptions per gateway so far
}

// run produces everything received before until, a simulated minute at a
// time, and returns the number of uplinks it produced.
func (sim *simulation) run(ctx context.Context, until time.Time) (int, error) {
	const step = time.Minute
	if sim.heard == nil {
		sim.heard = make(map[[8]byte]uint32)
		sim.pos = sim.fleet.Config().Start
		sim.nextStats = sim.pos.Add(sim.statsEvery)
	}
	wallStart, simStart := time.Now(), sim.pos
	var batch []streams.Uplink
	total := 0
	for sim.pos.Before(until) {
		t := sim.pos.Add(step)
		if t.After(until) {
			t = until
		}
		sim.fleet.Step(t, func(u fleet.Uplink) {
			batch = append(batch, streams.Uplink{DevAddr: u.DevAddr.Uint32(), Frame: uplinkFrame(&u)})
			sim.heard[u.GatewayEUI]++
		})
		if err := sim.fleet.Err(); err != nil {
			return total, err
		}
		sim.pos = t
		if len(batch) > 0 && (len(batch) >= 500 || sim.speed > 0 || !t.Before(until)) {
			if err := sim.producer.SendUplinks(ctx, batch...); err != nil {
				return total, err
			}
			total += len(batch)
			batch = batch[:0]
		}
		for sim.statsEvery > 0 && !sim.nextStats.After(t) {
			if err := sim.sendStats(ctx, sim.nextStats); err != nil {
				return total, err
			}
			sim.nextStats = sim.nextStats.Add(sim.statsEvery)
		}
		if sim.speed > 0 {
			due := wallStart.Add(time.Duration(float64(t.Sub(simStart)) / sim.speed))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d): // pacing simulated time against the wall clock
				case <-ctx.Done():
					return total, ctx.Err()
				}
			}
		}
	}
	return total, nil
}

func (sim *simulation) sendStats(ctx context.Context, at time.Time) error {
	var out []*lorawanv1.GatewayStats
	for _, g := range sim.fleet.Gateways() {
		n := sim.heard[g.EUI]
		out = append(out, &lorawanv1.GatewayStats{
			GatewayEui: append([]byte(nil), g.EUI[:]...), Time: timestamppb.New(at),
			RxPacketsReceived: n, RxPacketsReceivedOk: n,
			Location: &lorawanv1.Location{Latitude: g.Latitude, Longitude: g.Longitude},
		})
	}
	sim.stats += len(out)
	return sim.producer.SendGatewayStats(ctx, out...)
}

// uplinkFrame is the lorawan.uplink record of one simulated reception.
func uplinkFrame(u *fleet.Uplink) *lorawanv1.UplinkFrame {
	return &lorawanv1.UplinkFrame{
		PhyPayload: u.PHYPayload, GatewayEui: append([]byte(nil), u.GatewayEUI[:]...), Rssi: u.RSSI, Snr: u.SNR,
		Frequency: u.FrequencyHz, DataRate: u.DataRate, ReceivedAt: timestamppb.New(u.ReceivedAt),
	}
}

// provisionFleet registers a simulated fleet under the platform scope: one
// partner, customer and site (NL) for it, then its tap points, gateways and
// ABP devices (provisionFleetAt). A fleet whose first sensor exists already
// is left as it is.
func provisionFleet(ctx context.Context, st *postgres.Store, fl *fleet.Fleet, name string) error {
	scope := postgres.PlatformScope("cli:simulate")
	sensors := fl.Sensors()
	if len(sensors) == 0 {
		return nil
	}
	var customer, site uuid.UUID
	exists := false
	err := st.InTx(ctx, scope, func(tx *postgres.Tx) error {
		if _, err := tx.Devices().Get(ctx, postgres.EUI64(sensors[0].DevEUI)); err == nil {
			exists = true
			return nil
		} else if !errors.Is(err, postgres.ErrNotFound) {
			return err
		}
		p, err := tx.Partners().Create(ctx, postgres.NewPartner{Name: name + " partner"})
		if err != nil {
			return err
		}
		c, err := tx.Customers().Create(ctx, postgres.NewCustomer{PartnerID: &p.ID, Name: name + " customer"})
		if err != nil {
			return err
		}
		sc, err := tx.Sites().Create(ctx, postgres.NewSite{CustomerID: c.ID, Name: name, City: "Utrecht", Country: "NL"})
		if err != nil {
			return err
		}
		customer, site = c.ID, sc.ID
		return nil
	})
	if err != nil || exists {
		return err
	}
	return provisionFleetAt(ctx, st, fl, customer, site)
}
