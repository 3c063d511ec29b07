package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/legionelladossier/legiond/devicetwin/script"
)

const twinUsage = `usage: legiond twin replay --tap-kind KIND [--profile NL|DE|UK] [--interval-s N]
                           [--reset-policy REJECT|ON_REBOOT] [--dev-eui HEX] [--gateways]
                           < inputs.jsonl > events.jsonl

Replays input lines through a sensor twin and prints its events, one JSON
object per line. KIND is HOT_TAP, COLD_TAP, MIXED_TAP, CIRCULATION_RETURN,
HEATER_OUTLET or COLD_MAIN. Invalid lines are reported on stderr with their
line number and skipped; the exit code is then 1. The line format is
documented in docs/rules.md ("Replaying inputs").`

func runTwin(ctx context.Context, args []string, s stdio) int {
	if len(args) == 0 || args[0] != "replay" {
		fmt.Fprintln(s.err, twinUsage)
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			return exitOK
		}
		return exitUsage
	}
	return runTwinReplay(ctx, args[1:], s)
}

func runTwinReplay(_ context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("twin replay", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	tapKind := fs.String("tap-kind", "", "tap point kind (required)")
	profile := fs.String("profile", "NL", "rule profile: NL, DE or UK")
	intervalS := fs.Int64("interval-s", 0, "expected uplink interval in seconds (0: from the measurements)")
	resetPolicy := fs.String("reset-policy", "REJECT", "counter reset policy: REJECT or ON_REBOOT")
	devEUI := fs.String("dev-eui", script.DefaultDevEUI, "DevEUI of the replayed sensor")
	gateways := fs.Bool("gateways", false, "also run a gateway twin per gateway in the input")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(s.err, twinUsage)
			return exitOK
		}
		fmt.Fprintf(s.err, "legiond twin replay: %v\n%s\n", err, twinUsage)
		return exitUsage
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(s.err, "legiond twin replay: unexpected argument %q (inputs come on stdin)\n%s\n", fs.Arg(0), twinUsage)
		return exitUsage
	}
	if *tapKind == "" {
		fmt.Fprintf(s.err, "legiond twin replay: --tap-kind is required\n%s\n", twinUsage)
		return exitUsage
	}
	h := script.Header{
		DevEUI:   *devEUI,
		Gateways: *gateways,
		ConfigJSON: script.ConfigJSON{
			TapKind: *tapKind, Profile: *profile, IntervalS: *intervalS, ResetPolicy: *resetPolicy,
		},
	}
	if _, err := script.NewRunner(h); err != nil {
		fmt.Fprintf(s.err, "legiond twin replay: %v\n", err)
		return exitUsage
	}
	bad, err := script.Replay(h, s.in, s.out, s.err)
	if err != nil {
		fmt.Fprintf(s.err, "legiond twin replay: %v\n", err)
		return exitFailure
	}
	if bad > 0 {
		fmt.Fprintf(s.err, "legiond twin replay: %d invalid line(s) skipped\n", bad)
		return exitFailure
	}
	return exitOK
}
