package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Node metrics the harness reads (cmd/legiond/node.go, actors/metrics.go).
const (
	mHandled      = "legiond_kafka_handled_total"
	mUplinksIn    = "legiond_kafka_uplinks_in_total"
	mCommitted    = "legiond_kafka_committed_records_total"
	mLag          = "legiond_kafka_consumer_lag"
	mInFlight     = "legiond_kafka_consumer_in_flight"
	mApplied      = "legiond_frames_applied_total"
	mRejected     = "legiond_frames_rejected_total"
	mRetried      = "legiond_frames_retried_total"
	mDeadLettered = "legiond_kafka_dead_lettered_total"
	mPublishErrs  = "legiond_publish_errors_total"
	mPersistErrs  = "legiond_persist_errors_total"
	mCommitErrs   = "legiond_kafka_commit_errors_total"
	mRestarts     = "legiond_twin_restarts_total"
	mActiveTwins  = "legiond_active_twins"
	mCPU          = "process_cpu_seconds_total"
	mRSS          = "process_resident_memory_bytes"
)

// errorMetrics are counters whose growth during the run is reported as
// errors of the node, by kind (and label value, where there is one).
var errorMetrics = []string{mRejected, mDeadLettered, mRetried, mPublishErrs, mPersistErrs, mCommitErrs, mRestarts}

// nodeSample is one scrape of one node: every sample of the metrics the
// harness reads, summed over label sets, plus the labelled error counters.
type nodeSample struct {
	at     time.Time
	values map[string]float64 // by metric name, summed over labels
	errors map[string]float64 // "<metric>{<label values>}" → value
}

// parseMetrics reads the Prometheus text format.
func parseMetrics(r io.Reader, at time.Time) (nodeSample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nodeSample{}, fmt.Errorf("%w: %w", ErrScrape, err)
	}
	s := nodeSample{at: at, values: map[string]float64{}, errors: map[string]float64{}}
	for name, fam := range fams {
		for _, m := range fam.GetMetric() {
			v := metricValue(fam.GetType(), m)
			s.values[name] += v
			for _, e := range errorMetrics {
				if name != e {
					continue
				}
				var lv []string
				for _, l := range m.GetLabel() {
					lv = append(lv, l.GetValue())
				}
				key := strings.TrimPrefix(strings.TrimSuffix(name, "_total"), "legiond_")
				if len(lv) > 0 {
					key += "{" + strings.Join(lv, ",") + "}"
				}
				s.errors[key] += v
			}
		}
	}
	return s, nil
}

func metricValue(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_UNTYPED:
		return m.GetUntyped().GetValue()
	}
	return 0
}

// scraper reads the nodes' metrics endpoints.
type scraper struct {
	urls   []string
	client *http.Client
}

func newScraper(urls []string) *scraper {
	return &scraper{urls: urls, client: &http.Client{Timeout: 5 * time.Second}}
}

// scrape reads every endpoint; a failed one keeps its sample from prev
// (nil: an empty one) and yields an error (counted by the caller), never
// stops the run.
func (s *scraper) scrape(ctx context.Context, now func() time.Time, prev []nodeSample) ([]nodeSample, error) {
	out := make([]nodeSample, len(s.urls))
	copy(out, prev)
	var first error
	for i, u := range s.urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			first = cmpOr(first, fmt.Errorf("%w: %w", ErrScrape, err))
			continue
		}
		req.Header.Set("Accept", "text/plain;version=0.0.4")
		res, err := s.client.Do(req)
		if err != nil {
			first = cmpOr(first, fmt.Errorf("%w: %w", ErrScrape, err))
			continue
		}
		if res.StatusCode != http.StatusOK {
			_ = res.Body.Close()
			first = cmpOr(first, fmt.Errorf("%w: %s: %s", ErrScrape, u, res.Status))
			continue
		}
		ns, err := parseMetrics(res.Body, now())
		_ = res.Body.Close()
		if err != nil {
			first = cmpOr(first, err)
			continue
		}
		out[i] = ns
	}
	return out, first
}

// procSample is the CPU time and resident memory of one process.
type procSample struct {
	at     time.Time
	cpu    time.Duration
	rssB   int64
	exists bool
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// readProc reads /proc/<pid>/stat (utime, stime) and /proc/<pid>/status
// (VmRSS).
func readProc(root string, pid int, at time.Time) (procSample, error) {
	ps := procSample{at: at}
	b, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", root, pid))
	if err != nil {
		return ps, err
	}
	// The command may hold spaces and parentheses: fields start after the
	// last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ps, fmt.Errorf("%s/%d/stat: malformed", root, pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): utime is field 14, stime 15.
	if len(f) < 13 {
		return ps, fmt.Errorf("%s/%d/stat: %d fields", root, pid, len(f)+2)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return ps, fmt.Errorf("%s/%d/stat: bad times", root, pid)
	}
	ps.cpu = time.Duration(ut+st) * time.Second / clockTicks
	fh, err := os.Open(fmt.Sprintf("%s/%d/status", root, pid))
	if err != nil {
		return ps, err
	}
	defer func() { _ = fh.Close() }()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fs := strings.Fields(rest)
			if len(fs) >= 1 {
				kb, err := strconv.ParseInt(fs[0], 10, 64)
				if err == nil {
					ps.rssB = kb * 1024
				}
			}
			break
		}
	}
	ps.exists = true
	return ps, sc.Err()
}
