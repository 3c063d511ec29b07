package script

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/legionelladossier/legiond/devicetwin"
)

// DefaultDevEUI is the replayed sensor when the header names none.
const DefaultDevEUI = "0000000000000001"

// maxLine bounds one input line (a measurement is a few hundred bytes).
const maxLine = 1 << 20

// Runner drives one sensor twin, and a gateway twin per gateway when the
// header asks for them, through parsed lines.
type Runner struct {
	Sensor   devicetwin.SensorState
	gateways bool
	// Gateways in first-seen order, so ticks reach them deterministically.
	Gateways []devicetwin.GatewayState
}

// NewRunner configures the twins from the header.
func NewRunner(h Header) (*Runner, error) {
	if h.TapKind == "" {
		return nil, invalid("tap kind missing")
	}
	cfg, err := h.SensorConfig()
	if err != nil {
		return nil, err
	}
	dev := h.DevEUI
	if dev == "" {
		dev = DefaultDevEUI
	}
	eui, err := devicetwin.ParseEUI(dev)
	if err != nil {
		return nil, invalid("devEui: %v", err)
	}
	return &Runner{Sensor: devicetwin.NewSensor(eui, cfg), gateways: h.Gateways}, nil
}

func (r *Runner) gateway(eui devicetwin.EUI64) *devicetwin.GatewayState {
	for i := range r.Gateways {
		if r.Gateways[i].EUI() == eui {
			return &r.Gateways[i]
		}
	}
	r.Gateways = append(r.Gateways, devicetwin.NewGateway(eui, devicetwin.GatewayConfig{}))
	return &r.Gateways[len(r.Gateways)-1]
}

// Apply applies one input line and returns its events: the sensor's
// first, then the gateways'.
func (r *Runner) Apply(l *Line) []devicetwin.Event {
	var ev []devicetwin.Event
	if l.Input != nil {
		ev = r.Sensor.Apply(l.Input, ev)
	}
	if !r.gateways {
		return ev
	}
	if l.HasGateway {
		if u, ok := l.Input.(devicetwin.Uplink); ok {
			ev = r.gateway(l.Gateway).Apply(devicetwin.GatewayUplinkSeen{DevEUI: u.DevEUI, FCnt: u.FCnt, Rx: u.Rx}, ev)
		}
		if l.GatewayInput != nil {
			ev = r.gateway(l.Gateway).Apply(l.GatewayInput, ev)
		}
	}
	if t, ok := l.Input.(devicetwin.Tick); ok {
		for i := range r.Gateways {
			ev = r.Gateways[i].Apply(t, ev)
		}
	}
	return ev
}

// prepare fills in what a parsed line cannot know: the DevEUI of uplinks.
func (r *Runner) prepare(l *Line) {
	if u, ok := l.Input.(devicetwin.Uplink); ok {
		u.DevEUI = r.Sensor.DevEUI()
		l.Input = u
	}
}

// Replay is `legiond twin replay`: it reads input lines from in, applies
// them, and writes one output line per event to out. Invalid lines are
// reported on diag with their line number and skipped; blank lines are
// ignored. It returns how many lines were invalid, and an error only when
// reading or writing fails.
func Replay(h Header, in io.Reader, out, diag io.Writer) (int, error) {
	r, err := NewRunner(h)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64*1024), maxLine)
	w := bufio.NewWriter(out)
	bad, n := 0, 0
	for sc.Scan() {
		n++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		l, err := ParseLine(b, false)
		if err != nil {
			bad++
			fmt.Fprintf(diag, "line %d: %v\n", n, err)
			continue
		}
		r.prepare(&l)
		for _, ev := range r.Apply(&l) {
			o, err := FormatEvent(&ev)
			if err != nil {
				return bad, fmt.Errorf("line %d: format event: %w", n, err)
			}
			// bufio.Writer errors are sticky: Flush below reports them.
			_, _ = w.Write(o)
			_ = w.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		bad++
		fmt.Fprintf(diag, "line %d: %v\n", n+1, err)
	}
	return bad, w.Flush()
}

// Scenario is a parsed scenario file.
type Scenario struct {
	Header Header
	Lines  []NumberedLine
}

// NumberedLine is a line and its 1-based number in the file.
type NumberedLine struct {
	N int
	Line
}

// ParseScenario parses a scenario: a header line, then input and
// expectation lines; '#' lines and blank lines are skipped.
func ParseScenario(data []byte) (Scenario, error) {
	var sc Scenario
	header := false
	for i, raw := range bytes.Split(data, []byte("\n")) {
		b := bytes.TrimSpace(raw)
		if len(b) == 0 || b[0] == '#' {
			continue
		}
		if !header {
			h, err := ParseHeader(b)
			if err != nil {
				return sc, fmt.Errorf("line %d: %w", i+1, err)
			}
			sc.Header, header = h, true
			continue
		}
		l, err := ParseLine(b, true)
		if err != nil {
			return sc, fmt.Errorf("line %d: %w", i+1, err)
		}
		if l.IsExpectation() && (len(sc.Lines) == 0) {
			return sc, fmt.Errorf("line %d: expectation before any input: %w", i+1, ErrInvalidLine)
		}
		sc.Lines = append(sc.Lines, NumberedLine{i + 1, l})
	}
	if !header {
		return sc, fmt.Errorf("no header line: %w", ErrInvalidLine)
	}
	return sc, nil
}

// Run plays the scenario and returns one message per failed expectation.
// With checkIdempotent every input is applied a second time to a copy of
// the twins, which must emit nothing and end in the same state.
func (sc *Scenario) Run(checkIdempotent bool) ([]string, error) {
	r, err := NewRunner(sc.Header)
	if err != nil {
		return nil, err
	}
	var fails []string
	var last []map[string]any
	var lastN int
	for _, nl := range sc.Lines {
		l := nl.Line
		if l.IsExpectation() {
			if f := check(&l, last); f != "" {
				fails = append(fails, fmt.Sprintf("line %d (after input line %d): %s\n  events: %s", nl.N, lastN, f, dump(last)))
			}
			continue
		}
		r.prepare(&l)
		ev := r.Apply(&l)
		last, lastN = last[:0], nl.N
		for i := range ev {
			o, err := FormatEvent(&ev[i])
			if err != nil {
				return nil, err
			}
			var m map[string]any
			if err := json.Unmarshal(o, &m); err != nil {
				return nil, err
			}
			last = append(last, m)
		}
		if checkIdempotent {
			again := *r
			again.Gateways = append([]devicetwin.GatewayState(nil), r.Gateways...)
			if ev2 := again.Apply(&l); len(ev2) != 0 {
				fails = append(fails, fmt.Sprintf("line %d: applied twice, emitted %d more events (first %s)", nl.N, len(ev2), ev2[0].ID))
			}
			if again.Sensor != r.Sensor || !reflect.DeepEqual(again.Gateways, r.Gateways) {
				fails = append(fails, fmt.Sprintf("line %d: applied twice, state changed", nl.N))
			}
		}
	}
	return fails, nil
}

func dump(evs []map[string]any) string {
	var b strings.Builder
	for _, m := range evs {
		j, _ := json.Marshal(m)
		b.WriteString("\n    ")
		b.Write(j)
	}
	return b.String()
}

// check evaluates one expectation against the events of the input before.
func check(l *Line, evs []map[string]any) string {
	switch {
	case l.ExpectNone:
		if len(evs) != 0 {
			return fmt.Sprintf("expected no events, got %d", len(evs))
		}
	case l.Expect != nil:
		for _, m := range evs {
			if Matches(m, l.Expect) {
				return ""
			}
		}
		j, _ := json.Marshal(l.Expect)
		return "no event matches " + string(j)
	case l.ExpectNot != nil:
		for _, m := range evs {
			if Matches(m, l.ExpectNot) {
				j, _ := json.Marshal(m)
				return "unexpected event " + string(j)
			}
		}
	}
	return ""
}

// Matches reports whether every field of want is in got with an equal
// value (JSON equality).
func Matches(got, want map[string]any) bool {
	for k, w := range want {
		g, ok := got[k]
		if !ok || !reflect.DeepEqual(g, w) {
			return false
		}
	}
	return true
}
