package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/legionelladossier/legiond/storage/postgres"
)

func auditUsage(w io.Writer) {
	fmt.Fprintln(w, `usage: legiond audit verify [--database-url URL] [--anchor SEQ:SHA256]... [--json]

Reads the whole audit trail and recomputes its hash chain. Exits 0 when it
is intact, 1 naming the first bad entry (edited, deleted, or missing since
an anchor), 2 on a usage error. Anchors are (seq, hash) pairs kept outside
the database, e.g. the "audit anchor" printed by legiond backup run, or
the head printed by an earlier verify: they also catch the deletion of the
newest entries and a rewrite of the whole chain.

The role must see every entry: the application role (platform scope) or
the migration role.`)
}

func runAudit(ctx context.Context, args []string, s stdio) int {
	if len(args) == 0 || args[0] != "verify" {
		auditUsage(s.err)
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			return exitOK
		}
		return exitUsage
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(s.err)
	dbURL := fs.String("database-url", "", "registry (default $"+envDatabaseURL+")")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	var anchors []postgres.AuditAnchor
	fs.Func("anchor", "SEQ:SHA256HEX of an entry recorded elsewhere (repeatable)", func(v string) error {
		a, err := postgres.ParseAuditAnchor(v)
		if err == nil {
			anchors = append(anchors, a)
		}
		return err
	})
	fs.Usage = func() { auditUsage(s.err); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(s.err, "legiond audit verify: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	url := firstNonEmpty(*dbURL, os.Getenv(envDatabaseURL))
	if url == "" {
		fmt.Fprintln(s.err, "legiond audit verify: no database: pass --database-url or set "+envDatabaseURL)
		return exitUsage
	}
	// A read-only check: any role that sees every entry will do, including
	// the migration role or a superuser, which Open refuses by default.
	st, err := postgres.Open(ctx, postgres.Config{DSN: url, MaxConns: 1, AllowUnsafeRole: true})
	if err != nil {
		fmt.Fprintf(s.err, "legiond audit verify: %v\n", err)
		return exitFailure
	}
	defer st.Close()
	rep, err := st.VerifyAudit(ctx, anchors...)
	if err != nil {
		fmt.Fprintf(s.err, "legiond audit verify: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		if err := printJSON(s.out, rep); err != nil {
			return exitFailure
		}
	} else if rep.Intact() {
		fmt.Fprintf(s.out, "audit trail intact: %d entries, %d anchors checked\nhead: %s\n", rep.Entries, len(anchors), rep.Head)
	} else {
		fmt.Fprintf(s.out, "audit trail BROKEN: first bad entry %d: %s\n", rep.FirstBad, rep.Reason)
		for _, p := range rep.Problems {
			fmt.Fprintf(s.out, "  entry %d: %s\n", p.Seq, p.Reason)
		}
		if rep.Count > len(rep.Problems) {
			fmt.Fprintf(s.out, "  ... %d problems in all\n", rep.Count)
		}
		fmt.Fprintf(s.out, "%d entries read; head: %s\n", rep.Entries, rep.Head)
	}
	if !rep.Intact() {
		return exitFailure
	}
	return exitOK
}
