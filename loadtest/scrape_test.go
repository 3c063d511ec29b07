package loadtest

import (
	"os"
	"strings"
	"testing"
	"time"
)

const metricsText = `# HELP legiond_kafka_handled_total Records the twins completed successfully.
# TYPE legiond_kafka_handled_total counter
legiond_kafka_handled_total 1234
# TYPE legiond_kafka_consumer_lag gauge
legiond_kafka_consumer_lag 56
# TYPE legiond_frames_rejected_total counter
legiond_frames_rejected_total{reason="bad_mic"} 2
legiond_frames_rejected_total{reason="replay"} 3
# TYPE legiond_kafka_dead_lettered_total counter
legiond_kafka_dead_lettered_total{reason="handler"} 5
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.5
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.048576e+08
`

func TestParseMetrics(t *testing.T) {
	s, err := parseMetrics(strings.NewReader(metricsText), time.Unix(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{mHandled: 1234, mLag: 56, mRejected: 5, mCPU: 12.5, mRSS: 104857600}
	for k, v := range want {
		if s.values[k] != v {
			t.Errorf("%s = %v, want %v", k, s.values[k], v)
		}
	}
	if s.errors["frames_rejected{replay}"] != 3 || s.errors["kafka_dead_lettered{handler}"] != 5 {
		t.Errorf("errors %v", s.errors)
	}
	if _, err := parseMetrics(strings.NewReader("garbage{{{ 1\n"), time.Now()); err == nil {
		t.Error("garbage parsed")
	}
	base := []nodeSample{{errors: map[string]float64{"frames_rejected{replay}": 1}}}
	if n := nodeErrorTotal(base, []nodeSample{s}); n != 2+2+5 {
		t.Errorf("error growth %d, want 9", n)
	}
}

func TestReadProcSelf(t *testing.T) {
	s, err := readProc("/proc", os.Getpid(), time.Now())
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if !s.exists || s.rssB <= 0 || s.cpu < 0 {
		t.Fatalf("self: %+v", s)
	}
	if _, err := readProc("/proc", 1<<30, time.Now()); err == nil {
		t.Fatal("a missing process must fail")
	}
}
