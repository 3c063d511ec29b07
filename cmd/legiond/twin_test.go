package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func twinCLI(t *testing.T, stdin string, args ...string) (int, []map[string]any, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := dispatch(context.Background(), append([]string{"twin"}, args...), stdio{in: strings.NewReader(stdin), out: &out, err: &errb})
	var lines []map[string]any
	for i, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("output line %d is not JSON: %q", i+1, l)
		}
		lines = append(lines, m)
	}
	return code, lines, errb.String()
}

func ofType(lines []map[string]any, typ string) []map[string]any {
	var r []map[string]any
	for _, l := range lines {
		if l["type"] == typ {
			r = append(r, l)
		}
	}
	return r
}

const replayInput = `{"at":"2025-01-06T08:00:00Z","fCnt":1,"gateway":"00800000a0000001","rssi":-90,"measurement":{"intervalS":60,"batteryMv":2800,"samples":[{"pipeC":21.5,"ambientC":21},{"pipeC":22,"ambientC":21}]}}
{"at":"2025-01-06T08:00:00.300Z","fCnt":1,"gateway":"00800000a0000002","rssi":-80,"measurement":{"intervalS":60,"batteryMv":2800,"samples":[{"pipeC":21.5,"ambientC":21},{"pipeC":22,"ambientC":21}]}}
{"at":"2025-01-06T08:30:00Z","tick":true}
{"at":"2025-01-06T08:40:00Z","ack":{"alarmType":"BATTERY_LOW","by":"jan","note":"ordered"}}
{"at":"2025-01-06T08:45:00Z","fCnt":2,"waterEvent":{"event":"flush","startedSAgo":300,"durationS":180,"startPipeC":22,"extremePipeC":56}}
{"at":"2025-01-06T08:50:00Z","fCnt":3,"status":{"detached":false,"probeFault":false,"rebooted":false,"batteryMv":2800}}
{"at":"2025-01-06T08:55:00Z","fCnt":2,"status":{"batteryMv":2800}}
`

func TestTwinReplayContract(t *testing.T) {
	code, lines, stderr := twinCLI(t, replayInput, "replay", "--tap-kind", "HOT_TAP", "--profile", "NL", "--interval-s", "600")
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	kinds := map[string]bool{"reading": true, "waterEvent": true, "alarm": true, "status": true, "rejected": true}
	for i, l := range lines {
		at, _ := l["at"].(string)
		if _, err := time.Parse(time.RFC3339, at); err != nil {
			t.Errorf("line %d: at %q is not RFC 3339", i+1, at)
		}
		if !kinds[l["type"].(string)] {
			t.Errorf("line %d: type %q", i+1, l["type"])
		}
		switch l["type"] {
		case "alarm":
			for _, k := range []string{"alarmType", "severity", "status"} {
				if _, ok := l[k].(string); !ok {
					t.Errorf("line %d: alarm without %s: %v", i+1, k, l)
				}
			}
		case "waterEvent":
			if _, ok := l["event"].(string); !ok {
				t.Errorf("line %d: waterEvent without event", i+1)
			}
			for _, k := range []string{"inferred", "compliant"} {
				if _, ok := l[k].(bool); !ok {
					t.Errorf("line %d: waterEvent without %s", i+1, k)
				}
			}
		}
	}
	// Two samples, applied once although two gateways heard the frame.
	if r := ofType(lines, "reading"); len(r) != 2 || r[0]["at"] != "2025-01-06T07:59:00Z" || r[1]["pipeC"] != 22.0 {
		t.Errorf("readings %v", r)
	}
	alarms := ofType(lines, "alarm")
	want := []struct{ typ, sev, status string }{
		{"BATTERY_LOW", "MINOR", "ACTIVE_UNACK"},
		{"SENSOR_OFFLINE", "MAJOR", "ACTIVE_UNACK"},
		{"BATTERY_LOW", "MINOR", "ACTIVE_ACK"},
		{"SENSOR_OFFLINE", "MAJOR", "CLEARED_UNACK"},
		{"FLUSH_FAILED", "MINOR", "ACTIVE_UNACK"},
	}
	if len(alarms) != len(want) {
		t.Fatalf("alarms %v", alarms)
	}
	for i, w := range want {
		a := alarms[i]
		if a["alarmType"] != w.typ || a["severity"] != w.sev || a["status"] != w.status {
			t.Errorf("alarm %d = %v %v %v, want %v", i, a["alarmType"], a["severity"], a["status"], w)
		}
	}
	if w := ofType(lines, "waterEvent"); len(w) != 1 || w[0]["event"] != "flush" || w[0]["inferred"] != false || w[0]["compliant"] != false {
		t.Errorf("water events %v", w)
	}
	if s := ofType(lines, "status"); len(s) != 1 || s[0]["batteryMv"] != 2800.0 {
		t.Errorf("status %v", s)
	}
	// Counter 2 again, 10 minutes after it was applied: a replay.
	if r := ofType(lines, "rejected"); len(r) != 1 || r[0]["reason"] != "REPLAY" {
		t.Errorf("rejected %v", r)
	}
}

func TestTwinReplayProfiles(t *testing.T) {
	in := `{"at":"2025-01-06T08:00:00Z","fCnt":1,"waterEvent":{"event":"flush","startedSAgo":300,"durationS":180,"startPipeC":22,"extremePipeC":56}}` + "\n"
	for _, tc := range []struct {
		profile   string
		compliant bool
	}{{"NL", false}, {"DE", true}, {"UK", true}} {
		code, lines, stderr := twinCLI(t, in, "replay", "--tap-kind", "HOT_TAP", "--profile", tc.profile)
		if code != exitOK || stderr != "" {
			t.Fatalf("%s: exit %d, stderr %q", tc.profile, code, stderr)
		}
		if w := ofType(lines, "waterEvent"); len(w) != 1 || w[0]["compliant"] != tc.compliant {
			t.Errorf("%s: %v", tc.profile, w)
		}
	}
}

func TestTwinReplayInvalidLines(t *testing.T) {
	in := `{"at":"2025-01-06T08:00:00Z","fCnt":1,"status":{"batteryMv":3000}}
not json
{"at":"2025-01-06T08:10:00Z","measurement":{"intervalS":60,"batteryMv":3000,"samples":[{"pipeC":60,"ambientC":20}]}}

{"at":"yesterday","tick":true}
{"at":"2025-01-06T08:20:00Z","tick":true,"ack":{"alarmType":"BATTERY_LOW"}}
{"at":"2025-01-06T08:30:00Z","ack":{"alarmType":"NO_SUCH_ALARM","by":"x"}}
{"at":"2025-01-06T08:40:00Z","fCnt":2,"waterEvent":{"event":"splash","startedSAgo":1,"durationS":1}}
{"at":"2025-01-06T08:50:00Z","fCnt":3,"status":{"batteryMv":3000},"bogus":1}
{"at":"2025-01-06T09:00:00Z","fCnt":4,"measurement":{"intervalS":60,"batteryMv":3000,"samples":[]}}
{"at":"2025-01-06T09:10:00Z","fCnt":5,"status":{"batteryMv":3000}}
`
	code, lines, stderr := twinCLI(t, in, "replay", "--tap-kind", "COLD_TAP")
	if code != exitFailure {
		t.Fatalf("exit %d, want %d", code, exitFailure)
	}
	for _, n := range []string{"line 2:", "line 3:", "line 5:", "line 6:", "line 7:", "line 8:", "line 9:", "line 10:"} {
		if !strings.Contains(stderr, n) {
			t.Errorf("stderr lacks %q:\n%s", n, stderr)
		}
	}
	for _, n := range []string{"line 1:", "line 4:", "line 11:"} {
		if strings.Contains(stderr, n) {
			t.Errorf("stderr reports valid %q:\n%s", n, stderr)
		}
	}
	// The valid lines around the invalid ones were applied.
	if s := ofType(lines, "status"); len(s) != 2 {
		t.Errorf("want 2 status lines, got %v", s)
	}
}

func TestTwinReplayUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"replay"},
		{"replay", "--tap-kind", "BATHTUB"},
		{"replay", "--tap-kind", "HOT_TAP", "--profile", "FR"},
		{"replay", "--tap-kind", "HOT_TAP", "--interval-s", "-5"},
		{"replay", "--tap-kind", "HOT_TAP", "extra"},
		{"replay", "--no-such-flag"},
	} {
		if code, _, stderr := twinCLI(t, "", args...); code != exitUsage || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
	if code, lines, _ := twinCLI(t, "", "replay", "--tap-kind", "MIXED_TAP"); code != exitOK || len(lines) != 0 {
		t.Errorf("empty input: exit %d, %d lines", code, len(lines))
	}
}
