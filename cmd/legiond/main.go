// Command legiond is the one Legiond binary: the node itself and the
// operators' tools. This package only wires packages together.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// Exit codes shared by every subcommand.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// stdio bundles the streams a subcommand may use, so tests can run
// subcommands in-process.
type stdio struct {
	in  io.Reader
	out io.Writer
	err io.Writer
}

// command is one top-level subcommand. run gets the arguments after its name.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, io stdio) int
}

// commands lists every top-level subcommand. Add new ones here.
func commands() map[string]command {
	return map[string]command{
		"frame":    {summary: "decode LoRaWAN frames (operator tool)", run: runFrame},
		"admin":    {summary: "provision partners, customers, sites, tap points, devices, gateways", run: runAdmin},
		"migrate":  {summary: "create or upgrade the PostgreSQL registry schema", run: runMigrate},
		"twin":     {summary: "replay inputs through a device twin (support, rule tuning)", run: runTwin},
		"dev":      {summary: "the whole system on one machine with a simulated fleet (make run)", run: runDev},
		"run":      {summary: "run a node: Kafka in, device twins, twin.events out", run: runRun},
		"broker":   {summary: "run the embedded development Kafka broker as its own process", run: runBroker},
		"simulate": {summary: "produce a simulated Clip'R fleet's uplinks to Kafka (and provision it)", run: runSimulate},
		"keys":     {summary: "storage encryption keys: status, rotate, rewrap, generate-master-key", run: runKeys},
		"token":    {summary: "issue or check development access tokens (dev issuer key)", run: runToken},
		"watch":    {summary: "stream live alarms or readings from the API (resumes after drops)", run: runWatch},
		"backup":   {summary: "encrypted backups: run, verify, list, prune, keygen", run: runBackup},
		"restore":  {summary: "restore a backup into an empty data folder and database", run: runRestore},
		"audit":    {summary: "verify the hash-chained audit trail", run: runAudit},
		"loadtest": {summary: "capacity harness: drive a deployment with the simulated fleet, measure, report", run: runLoadtest},
		"cluster":  {summary: "cluster members: status, join, leave", run: runCluster},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := dispatch(ctx, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr})
	stop()
	os.Exit(code)
}

func dispatch(ctx context.Context, args []string, s stdio) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(s.err, cmds)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(s.err, "legiond: unknown command %q\n", args[0])
		usage(s.err, cmds)
		return exitUsage
	}
	return c.run(ctx, args[1:], s)
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: legiond <command> [arguments]\n\ncommands:")
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
}
