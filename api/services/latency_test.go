package services_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/api/auth"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

// TestStreamLatency measures produced→received latency of live events
// through the whole path: EventProducer → Kafka (embedded broker) → hub
// partition readers → fan-out → Connect server stream over TLS 1.3 / HTTP/2
// → Connect client. Each event carries the time it was handed to Publish
// (event_time); the client subtracts it on receipt (same clock).
//
// It is a measurement, not an assertion, and runs only when asked:
//
//	LEGIOND_LATENCY_SECONDS=10 go test ./api/services -run TestStreamLatency -v -count=1
//
// LEGIOND_LATENCY_RATE (events/s, default 5000) and LEGIOND_LATENCY_SUBS
// (subscribers, default 4: one platform-wide, the rest customer A's) tune it;
// LEGIOND_LATENCY_SHARED=1 puts all subscribers on one HTTP/2 connection.
func TestStreamLatency(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("LEGIOND_LATENCY_SECONDS"))
	if secs <= 0 {
		t.Skip("measurement: set LEGIOND_LATENCY_SECONDS=10 to run it")
	}
	rate := envInt("LEGIOND_LATENCY_RATE", 5000)
	subs := envInt("LEGIOND_LATENCY_SUBS", 4)
	e := newEnv(t, envOptions{})
	A := e.w.a
	tPlatform := e.token(t, auth.Claims{Role: auth.RolePlatformAdmin})
	tA := e.token(t, auth.Claims{Role: auth.RoleCustomerAdmin, CustomerIDs: []uuid.UUID{A.customer.ID}})

	type sample struct{ lat []time.Duration }
	samples := make([]sample, subs)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range subs {
		tok := tA
		if i == 0 {
			tok = tPlatform
		}
		// Each subscriber has its own connection, as separate apps do
		// (LEGIOND_LATENCY_SHARED=1: all on one HTTP/2 connection).
		hc := e.http
		if os.Getenv("LEGIOND_LATENCY_SHARED") == "" {
			hc = &http.Client{Transport: &http.Transport{TLSClientConfig: e.ca.ClientConfig(), ForceAttemptHTTP2: true}}
			t.Cleanup(hc.CloseIdleConnections)
		}
		s := e.openStream(t, apiv1connect.NewTelemetryServiceClient(hc, e.url), tok, &apiv1.StreamEventsRequest{})
		wg.Go(func() {
			for s.s.Receive() {
				if ev := s.s.Msg().GetEvent(); ev != nil {
					samples[i].lat = append(samples[i].lat, time.Since(ev.GetEventTime().AsTime()))
				}
			}
		})
		go func() { <-ctx.Done(); s.close() }()
	}

	// Producers: paced goroutines; each sends, every tick, the events its
	// share of the rate is behind by (Publish is synchronous, acks=all, so
	// one goroutine alone cannot keep 5,000/s). event_time is set just
	// before Publish.
	const workers = 8
	const tick = 2 * time.Millisecond
	var produced atomic.Int64
	var pubMu sync.Mutex
	var pubLat []time.Duration
	begin := time.Now()
	deadline := begin.Add(time.Duration(secs) * time.Second)
	var pw sync.WaitGroup
	for w := range workers {
		pw.Go(func() {
			tk := time.NewTicker(tick)
			defer tk.Stop()
			n := 0
			for now := range tk.C {
				if now.After(deadline) {
					return
				}
				due := int(float64(rate)/workers*now.Sub(begin).Seconds()) - n
				if due <= 0 {
					continue
				}
				batch := make([]*twinv1.TwinEvent, min(due, 100))
				at := timestamppb.Now()
				for j := range batch {
					v := 55.0
					dev := fmt.Sprintf("70b3d5ee%02x%06x", w, (n+j)%64)
					batch[j] = &twinv1.TwinEvent{EventId: fmt.Sprintf("lat-%d-%d", w, n+j), PartnerId: A.partner.String(),
						CustomerId: A.customer.ID.String(), SiteId: A.site1.ID.String(), DeviceEui: dev, EventTime: at,
						Payload: &twinv1.TwinEvent_Reading{Reading: &twinv1.Reading{PipeC: &v}}}
				}
				n += len(batch)
				if err := e.prod.Publish(context.Background(), batch...); err != nil {
					t.Error(err)
					return
				}
				d := time.Since(at.AsTime())
				pubMu.Lock()
				pubLat = append(pubLat, d)
				pubMu.Unlock()
				produced.Add(int64(len(batch)))
			}
		})
	}
	start := time.Now()
	pw.Wait()
	elapsed := time.Since(start)
	// Let the tail arrive: every subscriber gets every event (all are A's).
	want := int(produced.Load())
	waitUntil := time.Now().Add(10 * time.Second)
	for time.Now().Before(waitUntil) {
		done := true
		for i := range samples {
			if len(samples[i].lat) < want {
				done = false
			}
		}
		if done {
			break
		}
		time.Sleep(20 * time.Millisecond) // a measurement's drain, not synchronisation
	}
	cancel()
	wg.Wait()

	var all []time.Duration
	for i := range samples {
		if len(samples[i].lat) != want {
			t.Errorf("subscriber %d received %d of %d", i, len(samples[i].lat), want)
		}
		all = append(all, samples[i].lat...)
	}
	slices.Sort(all)
	q := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	m := e.hub.Metrics()
	t.Logf("produced %d events in %v (%.0f/s) to %d subscribers; %d deliveries", want, elapsed.Round(time.Millisecond),
		float64(want)/elapsed.Seconds(), subs, len(all))
	t.Logf("latency produced→received: p50 %v  p90 %v  p99 %v  max %v", q(0.50).Round(10*time.Microsecond),
		q(0.90).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), q(1).Round(10*time.Microsecond))
	slices.Sort(pubLat)
	if len(pubLat) > 0 {
		t.Logf("Publish (acks=all) per batch: p50 %v  p99 %v over %d batches", pubLat[len(pubLat)/2].Round(10*time.Microsecond),
			pubLat[min(len(pubLat)-1, len(pubLat)*99/100)].Round(10*time.Microsecond), len(pubLat))
	}
	t.Logf("hub: %+v", m)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
