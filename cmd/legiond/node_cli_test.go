package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/loadtest/fleet"
	"github.com/legionelladossier/legiond/storage/encfs"
	"github.com/legionelladossier/legiond/streams"
	"github.com/legionelladossier/legiond/streams/devbroker"
)

func TestNodeCommandsUsage(t *testing.T) {
	t.Setenv(encfs.EnvMasterKey, "")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"run without data dir", []string{"run"}, exitUsage, "--data-dir is required"},
		{"run with an argument", []string{"run", "--data-dir", t.TempDir(), "extra"}, exitUsage, "no arguments"},
		{"run TLS without brokers", []string{"run", "--data-dir", t.TempDir(), "--kafka-tls"}, exitUsage, "need --kafka-brokers"},
		{"run bad log level", []string{"run", "--data-dir", t.TempDir(), "--log-level", "loud"}, exitUsage, "log level"},
		{"run help", []string{"run", "--help"}, exitOK, "usage: legiond run"},
		// The storage opens first: no key fails before any connection.
		{"run without a storage key", []string{"run", "--data-dir", t.TempDir(), "--database-url", "postgres://nobody@127.0.0.1:1/none",
			"--metrics-addr", ""}, exitFailure, "--storage-master-key-file or set LEGIOND_STORAGE_MASTER_KEY"},
		{"broker without data dir", []string{"broker"}, exitUsage, "--data-dir is required"},
		{"broker bad flag", []string{"broker", "--nope"}, exitUsage, "flag provided but not defined"},
		{"simulate without brokers", []string{"simulate"}, exitUsage, "--kafka-brokers is required"},
		{"simulate bad start", []string{"simulate", "--kafka-brokers", "127.0.0.1:1", "--start", "yesterday"}, exitUsage, "--start"},
		{"simulate bad fleet", []string{"simulate", "--kafka-brokers", "127.0.0.1:1", "--sensors", "-1"}, exitUsage, "fleet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := dispatch(context.Background(), tt.args, stdio{in: strings.NewReader(""), out: &out, err: &errb})
			if code != tt.code || !strings.Contains(out.String()+errb.String(), tt.want) {
				t.Fatalf("exit %d (want %d), output %q %q: want %q", code, tt.code, out.String(), errb.String(), tt.want)
			}
		})
	}
}

// TestSimulateProvisionsAndProduces runs `legiond simulate` in-process: it
// provisions the fleet (once) and produces its uplinks and gateway stats.
func TestSimulateProvisionsAndProduces(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reg := startRegistry(t, ctx)
	b, err := devbroker.Start(ctx, devbroker.Config{Partitions: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := streams.EnsureTopics(ctx, streams.ClientConfig{Brokers: b.Addrs()}, streams.DefaultTopics(2, 1), nil); err != nil {
		t.Fatal(err)
	}
	args := []string{"simulate", "--kafka-brokers", b.Addrs()[0], "--database-url", reg.appDSN, "--master-key-file", reg.keyFile,
		"--sensors", "5", "--gateways", "2", "--seed", "3", "--duration", "2h", "--start", "2026-01-05T00:00:00Z"}
	for run := range 2 {
		var out, errb bytes.Buffer
		if code := dispatch(ctx, args, stdio{in: strings.NewReader(""), out: &out, err: &errb}); code != exitOK {
			t.Fatalf("run %d: exit %d: %s", run, code, errb.String())
		}
		if !strings.Contains(out.String(), "provisioned 5 sensors and 2 gateways") || !strings.Contains(out.String(), "and 48 gateway reports") {
			t.Fatalf("run %d: output %q", run, out.String())
		}
	}
	cache, stop := runCache(t, ctx, reg.store)
	defer stop()
	if got := cache.Stats().Devices; got != 5 {
		t.Fatalf("%d devices in the registry, want 5 (provisioned once)", got)
	}
	ends, err := endOffsets(ctx, b.Addrs(), streams.TopicUplink, 2)
	if err != nil {
		t.Fatal(err)
	}
	if ends[0]+ends[1] == 0 {
		t.Fatal("no uplinks produced")
	}
}

// TestSimulationContinues: a simulation run in steps produces what one run
// to the same instant produces, with no gateway report twice.
func TestSimulationContinues(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := devbroker.Start(ctx, devbroker.Config{Partitions: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	client := streams.ClientConfig{Brokers: b.Addrs()}
	if err := streams.EnsureTopics(ctx, client, streams.DefaultTopics(1, 1), nil); err != nil {
		t.Fatal(err)
	}
	p, err := streams.NewUplinkProducer(streams.ProducerConfig{Client: client, BatchTimeout: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Close() }()
	start := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	newSim := func() *simulation {
		fl, err := fleet.New(fleet.Config{Sensors: 4, Gateways: 2, Seed: 11, Start: start})
		if err != nil {
			t.Fatal(err)
		}
		return &simulation{fleet: fl, producer: p, statsEvery: 5 * time.Minute}
	}
	whole := newSim()
	n, err := whole.run(ctx, start.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	steps, total := newSim(), 0
	for _, at := range []time.Duration{40 * time.Minute, 41 * time.Minute, 2 * time.Hour, 3 * time.Hour, 3 * time.Hour} {
		k, err := steps.run(ctx, start.Add(at))
		if err != nil {
			t.Fatal(err)
		}
		total += k
	}
	if total != n || steps.stats != whole.stats || whole.stats != 36*2 {
		t.Fatalf("in steps: %d uplinks, %d reports; in one run: %d uplinks, %d reports (want 72)", total, steps.stats, n, whole.stats)
	}
}
