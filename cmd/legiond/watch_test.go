package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/api/auth"
	"github.com/legionelladossier/legiond/api/hub"
	"github.com/legionelladossier/legiond/api/server"
	"github.com/legionelladossier/legiond/api/services"
	"github.com/legionelladossier/legiond/api/tlsconf"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/pgtest"
	"github.com/legionelladossier/legiond/storage/postgres"
	"github.com/legionelladossier/legiond/streams"
	"github.com/legionelladossier/legiond/streams/devbroker"
)

// watchBuffer is an output that tests can wait on.
type watchBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newWatchBuffer() *watchBuffer { return &watchBuffer{changed: make(chan struct{})} }

func (b *watchBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.changed)
	b.changed = make(chan struct{})
	return b.buf.Write(p)
}

func (b *watchBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitCount waits until s occurs at least n times.
func (b *watchBuffer) waitCount(t *testing.T, s string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		got, ch := strings.Count(b.buf.String(), s), b.changed
		b.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("waited %v for %d × %q; output:\n%s", timeout, n, s, b.String())
		}
	}
}

func TestWatchColoursAndArgs(t *testing.T) {
	var out bytes.Buffer
	p := printer{w: &out, status: io.Discard, color: true}
	pipe := 42.5
	p.event(&twinv1.TwinEvent{DeviceEui: "70b3d57e00000001", EventTime: timestamppb.Now(), FCnt: 7,
		Payload: &twinv1.TwinEvent_Reading{Reading: &twinv1.Reading{PipeC: &pipe}}})
	p.event(&twinv1.TwinEvent{DeviceEui: "70b3d57e00000001", EventTime: timestamppb.Now(),
		Payload: &twinv1.TwinEvent_Alarm{Alarm: &twinv1.AlarmTransition{Type: twinv1.AlarmType_ALARM_TYPE_HOT_WATER_TOO_COLD,
			Severity: twinv1.Severity_SEVERITY_CRITICAL, ToStatus: twinv1.AlarmStatus_ALARM_STATUS_ACTIVE_UNACK, Message: "42.5 °C < 55 °C"}}})
	got := out.String()
	for _, want := range []string{ansiRed + " 42.50 °C" + ansiReset, "(fcnt 7)", ansiBoldRed + "CRITICAL", "ACTIVE_UNACK", "HOT_WATER_TOO_COLD"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%q", want, got)
		}
	}
	out.Reset()
	p.color = false
	p.event(&twinv1.TwinEvent{DeviceEui: "x", EventTime: timestamppb.Now(), Payload: &twinv1.TwinEvent_Reading{Reading: &twinv1.Reading{PipeC: &pipe}}})
	if strings.Contains(out.String(), "\x1b[") {
		t.Errorf("colours without a terminal: %q", out.String())
	}

	run := func(args ...string) (int, string) {
		var o, e bytes.Buffer
		code := dispatch(context.Background(), append([]string{"watch"}, args...), stdio{in: strings.NewReader(""), out: &o, err: &e})
		return code, e.String()
	}
	t.Setenv(envToken, "")
	if code, msg := run("readings"); code != exitUsage || !strings.Contains(msg, "no token") {
		t.Errorf("no token: %d %s", code, msg)
	}
	if code, _ := run("frames", "--token", "x"); code != exitUsage {
		t.Errorf("unknown kind: %d", code)
	}
	if code, _ := run("--token", "x", "alarms", "extra"); code != exitUsage {
		t.Errorf("extra argument: %d", code)
	}
}

// watchAPI is one incarnation of the API: a hub and a TLS server on a
// fixed address, over a shared registry, Pebble store and Kafka.
type watchAPI struct {
	stopHub context.CancelFunc
	hubDone chan struct{}
	srv     *server.Server
}

func (a *watchAPI) stop() {
	a.stopHub() // ends every stream (Unavailable), as a dying node would
	<-a.hubDone
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.srv.Shutdown(ctx)
}

// TestWatchResumesAfterServerRestart: `legiond watch readings` prints live
// events; the server's streams are killed and the server restarts (a new
// hub that starts at the end of the topic); events produced meanwhile are
// printed after the reconnection, every event exactly once.
func TestWatchResumesAfterServerRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	quietLog := slog.New(slog.NewTextHandler(io.Discard, nil))

	pg, err := pgtest.StartFromEnv(ctx, pgtest.Config{})
	if err != nil {
		t.Fatalf("cannot start PostgreSQL: %v", err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	const db, pw = "legiond_watch_test", "watch-test-password"
	if err := pg.CreateDatabase(ctx, db, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.DropDatabase(context.Background(), db) })
	if _, err := postgres.Migrate(ctx, postgres.MigrateConfig{DSN: pg.DSN(db), AppPassword: pw}); err != nil {
		t.Fatal(err)
	}
	store, err := postgres.Open(ctx, postgres.Config{DSN: pg.UserDSN(db, postgres.AppRole, pw)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	pebble, err := pebblestore.Open(pebblestore.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pebble.Close() })

	broker, err := devbroker.Start(ctx, devbroker.Config{Partitions: 4}, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = broker.Close() })
	cc := streams.ClientConfig{Brokers: broker.Addrs()}
	if err := streams.EnsureTopics(ctx, cc, streams.DefaultTopics(4, 1), quietLog); err != nil {
		t.Fatal(err)
	}
	prod, err := streams.NewEventProducer(streams.ProducerConfig{Client: cc, BatchTimeout: time.Millisecond}, nil, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = prod.Close() })

	ca, err := tlsconf.LoadOrCreateDevCA(tlsconf.DevCAConfig{Dir: t.TempDir(), Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	url := "https://" + addr
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	iss, err := auth.NewIssuer(auth.IssuerConfig{Issuer: url, Key: key, Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(iss.VerifierConfig())
	if err != nil {
		t.Fatal(err)
	}
	start := func(ln net.Listener) *watchAPI {
		t.Helper()
		h, err := hub.New(hub.Config{Client: cc, Heartbeat: 100 * time.Millisecond, Logger: quietLog, RetryBackoff: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		hctx, hcancel := context.WithCancel(context.Background())
		a := &watchAPI{stopHub: hcancel, hubDone: make(chan struct{})}
		go func() { defer close(a.hubDone); _ = h.Run(hctx) }()
		select {
		case <-h.Ready():
		case <-time.After(30 * time.Second):
			t.Fatal("hub not ready")
		}
		a.srv, err = server.New(server.Config{Listener: ln, TLS: ca.ServerConfig(), Verifier: verifier, Logger: quietLog})
		if err != nil {
			t.Fatal(err)
		}
		if err := services.Register(a.srv, services.Deps{Registry: store, Recent: pebble, Hub: h, Logger: quietLog}); err != nil {
			t.Fatal(err)
		}
		if err := a.srv.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return a
	}
	api := start(ln)
	defer func() { api.stop() }()

	tok, err := iss.Issue(auth.Claims{Subject: "ops", Role: auth.RolePlatformAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out, errOut := newWatchBuffer(), newWatchBuffer()
	wctx, wcancel := context.WithCancel(ctx)
	exit := make(chan int, 1)
	go func() {
		exit <- dispatch(wctx, []string{"watch", "readings", "--api", url, "--token", tok, "--ca", ca.CAFile(),
			"--color", "never", "--max-backoff", "200ms"}, stdio{in: strings.NewReader(""), out: out, err: errOut})
	}()
	errOut.waitCount(t, "connected to", 1, 30*time.Second)

	publish := func(from, to int) {
		t.Helper()
		var evs []*twinv1.TwinEvent
		for i := from; i < to; i++ {
			v := 50 + float64(i)/10
			evs = append(evs, &twinv1.TwinEvent{EventId: fmt.Sprintf("w-%d", i), CustomerId: "c", PartnerId: "p",
				DeviceEui: fmt.Sprintf("70b3d57e000000%02x", i%6), EventTime: timestamppb.Now(), FCnt: uint32(i),
				Payload: &twinv1.TwinEvent_Reading{Reading: &twinv1.Reading{PipeC: &v}}})
		}
		if err := prod.Publish(ctx, evs...); err != nil {
			t.Fatal(err)
		}
	}
	publish(0, 10)
	out.waitCount(t, "(fcnt 9)\n", 1, 30*time.Second)

	// Kill the streams and the server; events go on meanwhile.
	api.stop()
	errOut.waitCount(t, "reconnecting", 1, 30*time.Second)
	publish(10, 20)
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	api = start(ln2)
	errOut.waitCount(t, "connected to", 2, 30*time.Second)
	publish(20, 30)
	// Events of different devices sit on different partitions: wait for
	// each of them, not for the last one produced.
	for i := range 30 {
		out.waitCount(t, fmt.Sprintf("(fcnt %d)\n", i), 1, 30*time.Second)
	}

	wcancel()
	if code := <-exit; code != exitOK {
		t.Errorf("watch exited %d; stderr:\n%s", code, errOut.String())
	}
	got := out.String()
	for i := range 30 {
		if n := strings.Count(got, fmt.Sprintf("(fcnt %d)\n", i)); n != 1 {
			t.Errorf("event %d printed %d times", i, n)
		}
	}
	if lines := strings.Count(got, "\n"); lines != 30 {
		t.Errorf("%d lines printed, want 30:\n%s", lines, got)
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", got, errOut.String())
	}
}
