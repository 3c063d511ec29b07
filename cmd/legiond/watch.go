package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/legionelladossier/legiond/api/tlsconf"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/proto/legiond/api/v1/apiv1connect"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
)

const envToken = "LEGIOND_TOKEN"

// watchOptions are the parsed flags of `legiond watch`.
type watchOptions struct {
	what        string // alarms, readings, all
	api         string
	token       string
	ca          string
	site        string
	device      string
	color       bool
	idleTimeout time.Duration
	maxBackoff  time.Duration
}

func watchUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, `usage: legiond watch alarms|readings|all [flags]

Streams live alarms or readings (with water events) from the API, in colour on
a terminal, and resumes after a dropped connection with the last resume token:
nothing is missed and nothing is printed twice. Stops on Ctrl-C.

flags:
`)
	fs.PrintDefaults()
}

// runWatch is `legiond watch`.
func runWatch(ctx context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(s.err)
	o := watchOptions{}
	fs.StringVar(&o.api, "api", "https://127.0.0.1:8443", "API base URL")
	fs.StringVar(&o.token, "token", "", "access token (default $"+envToken+")")
	fs.StringVar(&o.ca, "ca", "", "CA certificate (PEM) to trust (default: the dev CA of $"+envDataDir+" or .dev when present, else the system roots)")
	fs.StringVar(&o.site, "site", "", "only this site (id)")
	fs.StringVar(&o.device, "device", "", "only this device (DevEUI)")
	colorFlag := fs.String("color", "auto", "colours: auto (on a terminal, unless $NO_COLOR), always, never")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 45*time.Second, "reconnect when nothing (not even a heartbeat) arrived for this long")
	fs.DurationVar(&o.maxBackoff, "max-backoff", 10*time.Second, "longest pause between reconnection attempts")
	fs.Usage = func() { watchUsage(s.err, fs) }
	// The kind may come before or after the flags.
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		o.what, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	rest := fs.Args()
	if o.what == "" && len(rest) > 0 {
		o.what, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		fmt.Fprintf(s.err, "legiond watch: unexpected argument %q\n", rest[0])
		return exitUsage
	}
	kinds, ok := map[string][]apiv1.EventKind{
		"alarms":   {apiv1.EventKind_EVENT_KIND_ALARM},
		"readings": {apiv1.EventKind_EVENT_KIND_READING, apiv1.EventKind_EVENT_KIND_WATER_EVENT},
		"all":      nil,
	}[o.what]
	if !ok {
		fs.Usage()
		return exitUsage
	}
	if o.token == "" {
		o.token = os.Getenv(envToken)
	}
	if o.token == "" {
		fmt.Fprintf(s.err, "legiond watch: no token: pass --token or set $%s (legiond token issue ...)\n", envToken)
		return exitUsage
	}
	switch *colorFlag {
	case "always":
		o.color = true
	case "never":
		o.color = false
	case "auto":
		o.color = isTerminal(s.out) && os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
	default:
		fmt.Fprintf(s.err, "legiond watch: --color must be auto, always or never\n")
		return exitUsage
	}
	if o.ca == "" {
		if f := filepath.Join(defaultDataDir(), "tls", tlsconf.CAFileName); fileExists(f) {
			o.ca = f
		}
	}
	tlsCfg, err := tlsconf.ClientConfig(o.ca)
	if err != nil {
		fmt.Fprintf(s.err, "legiond watch: %v\n", err)
		return exitUsage
	}
	httpClient := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true}}
	defer httpClient.CloseIdleConnections()
	client := apiv1connect.NewTelemetryServiceClient(httpClient, strings.TrimRight(o.api, "/"))
	req := &apiv1.StreamEventsRequest{SiteId: o.site, DevEui: o.device, Kinds: kinds}
	return watch(ctx, client, req, o, s)
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// watch streams until ctx ends or the server refuses for good, reconnecting
// with backoff and the last resume token after anything else.
func watch(ctx context.Context, client apiv1connect.TelemetryServiceClient, req *apiv1.StreamEventsRequest, o watchOptions, s stdio) int {
	p := printer{w: s.out, status: s.err, color: o.color}
	token := ""
	backoff := time.Duration(0)
	for attempt := 0; ; attempt++ {
		req.ResumeToken = token
		got, err := watchOnce(ctx, client, req, o, &p, &token)
		if ctx.Err() != nil {
			return exitOK
		}
		if got {
			backoff = 0
		}
		switch code := connect.CodeOf(err); code {
		case connect.CodeUnauthenticated, connect.CodePermissionDenied, connect.CodeInvalidArgument, connect.CodeNotFound:
			fmt.Fprintf(s.err, "legiond watch: %v\n", err)
			if code == connect.CodeUnauthenticated {
				fmt.Fprintln(s.err, "legiond watch: get a fresh token and run again; pass --token or $"+envToken)
			}
			return exitFailure
		case connect.CodeOutOfRange:
			fmt.Fprintf(s.err, "legiond watch: %v\nlegiond watch: events may have been missed; continuing live\n", err)
			token = ""
			continue
		default:
			backoff = min(max(2*backoff, 250*time.Millisecond), o.maxBackoff)
			// Jitter, so that many clients of a restarted node spread out.
			wait := backoff/2 + rand.N(backoff/2+1)
			fmt.Fprintf(s.err, "legiond watch: stream ended (%v); reconnecting in %v\n", err, wait.Round(time.Millisecond))
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return exitOK
			case <-t.C:
			}
		}
	}
}

// watchOnce runs one stream; token follows every message. got reports
// whether anything arrived.
func watchOnce(ctx context.Context, client apiv1connect.TelemetryServiceClient, msg *apiv1.StreamEventsRequest, o watchOptions, p *printer, token *string) (got bool, err error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req := connect.NewRequest(msg)
	req.Header().Set("Authorization", "Bearer "+o.token)
	stream, err := client.StreamEvents(sctx, req)
	if err != nil {
		return false, err
	}
	defer func() { _ = stream.Close() }()
	errIdle := fmt.Errorf("nothing received for %v", o.idleTimeout)
	idle := time.AfterFunc(o.idleTimeout, func() { cancel(errIdle) })
	defer idle.Stop()
	for stream.Receive() {
		idle.Reset(o.idleTimeout)
		if !got {
			fmt.Fprintf(p.status, "legiond watch: connected to %s\n", o.api)
		}
		got = true
		m := stream.Msg()
		if ev := m.GetEvent(); ev != nil {
			p.event(ev)
		}
		// The token moves only after the event is printed: a resume never
		// skips what was not shown.
		if m.GetResumeToken() != "" {
			*token = m.GetResumeToken()
		}
	}
	if errors.Is(context.Cause(sctx), errIdle) {
		return got, errIdle
	}
	if err := stream.Err(); err != nil {
		return got, err
	}
	return got, errors.New("server closed the stream")
}

// ANSI colours.
const (
	ansiReset   = "\x1b[0m"
	ansiBoldRed = "\x1b[1;31m"
	ansiRed     = "\x1b[31m"
	ansiYellow  = "\x1b[33m"
	ansiGreen   = "\x1b[32m"
	ansiCyan    = "\x1b[36m"
	ansiDim     = "\x1b[2m"
)

// printer renders events as one line each on w; connection news go to
// status (standard error), so that w holds events only.
type printer struct {
	w      io.Writer
	status io.Writer
	color  bool
}

func (p *printer) paint(code, s string) string {
	if !p.color || code == "" {
		return s
	}
	return code + s + ansiReset
}

func (p *printer) event(ev *twinv1.TwinEvent) {
	at := ev.GetEventTime().AsTime().Local().Format("2006-01-02 15:04:05")
	head := p.paint(ansiDim, at) + "  " + ev.GetDeviceEui()
	var line string
	switch pl := ev.GetPayload().(type) {
	case *twinv1.TwinEvent_Alarm:
		line = p.alarm(pl.Alarm)
	case *twinv1.TwinEvent_Reading:
		line = p.reading(pl.Reading, ev.GetFCnt())
	case *twinv1.TwinEvent_WaterEvent:
		line = p.water(pl.WaterEvent)
	case *twinv1.TwinEvent_DeviceStatus:
		st := pl.DeviceStatus
		line = fmt.Sprintf("status    battery %.2f V, firmware %s", float64(st.GetBatteryMv())/1000, st.GetFirmware())
		if st.GetDetached() {
			line += p.paint(ansiRed, ", clip detached")
		}
		if st.GetProbeFault() {
			line += p.paint(ansiRed, ", probe fault")
		}
	case *twinv1.TwinEvent_GatewayStatus:
		line = "gateway   " + map[bool]string{true: p.paint(ansiGreen, "online"), false: p.paint(ansiRed, "offline")}[pl.GatewayStatus.GetOnline()]
	default:
		line = "event " + ev.GetEventId()
	}
	fmt.Fprintf(p.w, "%s  %s\n", head, line)
}

func short(name, prefix string) string { return strings.TrimPrefix(name, prefix) }

func severityColor(s twinv1.Severity) string {
	switch s {
	case twinv1.Severity_SEVERITY_CRITICAL:
		return ansiBoldRed
	case twinv1.Severity_SEVERITY_MAJOR:
		return ansiRed
	case twinv1.Severity_SEVERITY_MINOR:
		return ansiYellow
	case twinv1.Severity_SEVERITY_WARNING:
		return ansiCyan
	}
	return ""
}

func (p *printer) alarm(a *twinv1.AlarmTransition) string {
	sev := short(a.GetSeverity().String(), "SEVERITY_")
	status := short(a.GetToStatus().String(), "ALARM_STATUS_")
	color := severityColor(a.GetSeverity())
	switch a.GetToStatus() {
	case twinv1.AlarmStatus_ALARM_STATUS_CLEARED_ACK, twinv1.AlarmStatus_ALARM_STATUS_CLEARED_UNACK:
		color = ansiGreen
	}
	line := fmt.Sprintf("%s  %s  %s", p.paint(color, fmt.Sprintf("%-8s", sev)), fmt.Sprintf("%-13s", status),
		short(a.GetType().String(), "ALARM_TYPE_"))
	if a.GetMessage() != "" {
		line += "  " + a.GetMessage()
	}
	if by := a.GetBy(); by != "" && by != "system" {
		line += "  (by " + by + ")"
	}
	return line
}

// tempColor colours a pipe temperature by what it means for Legionella:
// cold (< 20 °C) is safe, 25–50 °C is the growth range, ≥ 60 °C kills.
func tempColor(c float64) string {
	switch {
	case c < 20:
		return ansiCyan
	case c < 25:
		return ""
	case c < 50:
		return ansiRed
	case c < 60:
		return ansiYellow
	}
	return ansiGreen
}

func (p *printer) reading(r *twinv1.Reading, fcnt uint32) string {
	line := "reading   pipe "
	if r.PipeC != nil {
		line += p.paint(tempColor(r.GetPipeC()), fmt.Sprintf("%6.2f °C", r.GetPipeC()))
	} else {
		line += "     — °C"
	}
	if r.AmbientC != nil {
		line += fmt.Sprintf("  ambient %6.2f °C", r.GetAmbientC())
	}
	return line + fmt.Sprintf("  (fcnt %d)", fcnt)
}

func (p *printer) water(w *twinv1.WaterEvent) string {
	kind := strings.ToLower(short(w.GetKind().String(), "WATER_EVENT_KIND_"))
	line := fmt.Sprintf("%-9s %d s", kind, w.GetDurationS())
	if w.StartPipeC != nil && w.ExtremePipeC != nil {
		line += fmt.Sprintf(", %.1f → %.1f °C", w.GetStartPipeC(), w.GetExtremePipeC())
	}
	if w.GetInferred() {
		line += " (inferred)"
	}
	if w.GetCompliant() {
		return line + ", " + p.paint(ansiGreen, "compliant")
	}
	reason := "not compliant"
	if w.GetReason() != "" {
		reason += ": " + w.GetReason()
	}
	return line + ", " + p.paint(ansiYellow, reason)
}
