package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/api/auth"
	"github.com/legionelladossier/legiond/loadtest"
	"github.com/legionelladossier/legiond/streams"
)

// TestLoadtestSmoke runs `legiond loadtest` in seconds against a real node
// (embedded Kafka, PostgreSQL registry, twin actors, Pebble with fsync)
// and its TLS 1.3 Connect API, started in-process. It asserts only that
// numbers were produced and that nothing was lost; the capacity figures
// come from `make loadtest` (docs/benchmarks.md).
func TestLoadtestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reg := startRegistry(t, ctx)
	dir := t.TempDir()
	n, err := startNode(ctx, nodeConfig{
		DataDir: filepath.Join(dir, "node"), Partitions: 2, DatabaseURL: reg.appDSN, MasterKeyFile: reg.keyFile,
		StorageMasterKeyFile: reg.storageKeyFile,
		MetricsAddr:          "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	api, err := startAPI(ctx, apiConfig{Addr: "127.0.0.1:0"}, apiDeps{
		DataDir: filepath.Join(dir, "node"), Kafka: streams.ClientConfig{Brokers: n.brokers}, Registry: n.pg, Store: n.store,
		Logger: n.log,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer api.close(context.Background())
	token, err := api.issuer.Issue(auth.Claims{Subject: "loadtest", Role: auth.RolePlatformAdmin}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	common := []string{"loadtest", "--kafka-brokers", strings.Join(n.brokers, ","),
		"--database-url", reg.appDSN, "--master-key-file", reg.keyFile,
		"--metrics", n.metricsAddr, "--pids", strconv.Itoa(os.Getpid()), "--quiet", "--drain-timeout", "60s"}
	withAPI := []string{"--api", api.URL(), "--ca", api.caFile, "--token", token}

	// The backlog runs without the API stream: its burst overflows a
	// stream subscriber's queue by design (ResourceExhausted, then a
	// resume), which is the hub's business, not this smoke test's.
	tests := []struct {
		name string
		args []string
		api  bool
	}{
		{"steady", append([]string{"--scenario", "steady", "--sensors", "120", "--duration", "4s", "--warmup=1s", "--speed", "900"}, withAPI...), true},
		{"gateway-backlog", []string{"--scenario", "gateway-backlog", "--sensors", "150", "--backlog", "2h"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, tt.name)
			var stdout, stderr bytes.Buffer
			args := append(append(append([]string(nil), common...), tt.args...), "--out", out)
			code := dispatch(ctx, args, stdio{in: strings.NewReader(""), out: &stdout, err: &stderr})
			if code != exitOK {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), lastBytes(stderr.String(), 4000))
			}
			b, err := os.ReadFile(filepath.Join(out, loadtest.ReportJSON))
			if err != nil {
				t.Fatal(err)
			}
			var res loadtest.Result
			if err := json.Unmarshal(b, &res); err != nil {
				t.Fatal(err)
			}
			switch {
			case res.Production.Records == 0 || res.Production.ExpectedFrames == 0:
				t.Fatalf("nothing produced: %+v", res.Production)
			case !res.Loss.Checked || res.Loss.Lost != 0 || res.Loss.Seen != res.Loss.Expected:
				t.Fatalf("loss: %+v", res.Loss)
			case !res.Drain.Drained:
				t.Fatalf("not drained: %+v", res.Drain)
			case res.Latency.Kafka.Count == 0 || res.Latency.Kafka.P99Ms <= 0:
				t.Fatalf("no Kafka latency: %+v", res.Latency.Kafka)
			case tt.api && (res.Latency.API == nil || res.Latency.API.Count == 0 || !res.Loss.APIChecked || res.Loss.APILost != 0):
				t.Fatalf("API stream: latency %+v loss %+v errors %v", res.Latency.API, res.Loss, res.Errors)
			case res.Applied.RecordsHandled < float64(res.Production.Records):
				t.Fatalf("node handled %.0f of %d records", res.Applied.RecordsHandled, res.Production.Records)
			case res.Loss.DeadLettered != 0:
				t.Fatalf("%d records dead-lettered: %v", res.Loss.DeadLettered, res.Errors)
			case len(res.Timeline) == 0 || res.Resources.NodeCPUCoresMax <= 0:
				t.Fatalf("no timeline or CPU figures: %d points, %+v", len(res.Timeline), res.Resources)
			}
			for _, f := range []string{loadtest.ReportMarkdown, loadtest.PlotThroughput, loadtest.PlotLatency} {
				b, err := os.ReadFile(filepath.Join(out, f))
				if err != nil {
					t.Fatal(err)
				}
				if strings.HasSuffix(f, ".png") {
					if _, err := png.Decode(bytes.NewReader(b)); err != nil {
						t.Fatalf("%s: %v", f, err)
					}
				}
			}
			t.Logf("%s", strings.TrimSpace(stdout.String()))
		})
	}
}

func lastBytes(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
