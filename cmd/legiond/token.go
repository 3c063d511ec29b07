package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/legionelladossier/legiond/api/auth"
	"github.com/legionelladossier/legiond/storage/postgres"
)

const envDataDir = "LEGIOND_DATA_DIR"

// defaultDataDir is $LEGIOND_DATA_DIR, else .dev (what `make run` uses).
func defaultDataDir() string {
	if d := os.Getenv(envDataDir); d != "" {
		return d
	}
	return ".dev"
}

func tokenUsage(w io.Writer) {
	fmt.Fprint(w, `usage: legiond token <command> [flags]

commands:
  issue    sign a development access token with the data folder's dev issuer key
  verify   check a token (argument or standard input) against that key and print its claims

Run "legiond token <command> -h" for the flags.
`)
}

// runToken is `legiond token`.
func runToken(ctx context.Context, args []string, s stdio) int {
	if len(args) == 0 {
		tokenUsage(s.err)
		return exitUsage
	}
	switch args[0] {
	case "issue":
		return runTokenIssue(ctx, args[1:], s)
	case "verify":
		return runTokenVerify(ctx, args[1:], s)
	case "help", "-h", "--help":
		tokenUsage(s.err)
		return exitOK
	}
	fmt.Fprintf(s.err, "legiond token: unknown command %q\n\n", args[0])
	tokenUsage(s.err)
	return exitUsage
}

// listFlag collects a repeatable flag; values may also be separated by
// commas or spaces.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, part := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
		*l = append(*l, part)
	}
	return nil
}

func parseIDs(flagName string, vals []string) ([]uuid.UUID, error) {
	var out []uuid.UUID
	for _, v := range vals {
		id, err := uuid.Parse(v)
		if err != nil {
			return nil, fmt.Errorf("--%s %q: not a UUID", flagName, v)
		}
		out = append(out, id)
	}
	return out, nil
}

// issuerFlags are shared by issue and verify.
type issuerFlags struct {
	dataDir, issuer, audience *string
}

func addIssuerFlags(fs *flag.FlagSet) issuerFlags {
	return issuerFlags{
		dataDir:  fs.String("data-dir", defaultDataDir(), "data folder holding auth/dev-issuer-es256-key.pem (default $"+envDataDir+", else .dev)"),
		issuer:   fs.String("issuer", auth.DefaultDevIssuer, "issuer URL (iss); must match the server's"),
		audience: fs.String("audience", auth.DefaultAudience, "audience (aud)"),
	}
}

func (f issuerFlags) open(s stdio) (*auth.Issuer, error) {
	return auth.NewIssuer(auth.IssuerConfig{
		Issuer: *f.issuer, Audience: *f.audience, KeyFile: auth.DevKeyFile(*f.dataDir),
		MaxTTL: 30 * 24 * time.Hour, Logger: slog.New(slog.NewTextHandler(s.err, nil)),
	})
}

func runTokenIssue(ctx context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("token issue", flag.ContinueOnError)
	fs.SetOutput(s.err)
	roles := make([]string, 0, len(auth.Roles()))
	for _, r := range auth.Roles() {
		roles = append(roles, string(r))
	}
	role := fs.String("role", "", "role: "+strings.Join(roles, ", ")+" (required)")
	partner := fs.String("partner", "", "partner id (partner_admin, partner-wide viewer)")
	var customers, sites, scopes listFlag
	fs.Var(&customers, "customer", "customer id; repeatable")
	fs.Var(&sites, "site", "site id (technicians, narrowed viewers); repeatable")
	fs.Var(&scopes, "scope", "OAuth scope (integration), e.g. readings:read; repeatable")
	subject := fs.String("subject", "", "subject (sub) (default dev-<role>, or the client id for integration)")
	clientID := fs.String("client-id", "dev-client", "client id (integration)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime, at most 720h")
	dbURL := fs.String("database-url", "", "registry whose audit trail records the token (default $"+envDatabaseURL+"); without one the token is not recorded (development only)")
	iflags := addIssuerFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(s.err, "usage: legiond token issue --role ROLE [--partner ID] [--customer ID]... [--site ID]... [--scope S]... [--subject S] [--ttl 1h] [--data-dir DIR]")
		fmt.Fprintln(s.err, "\nSigns a DEVELOPMENT token with the data folder's dev issuer key (created if missing) and prints it.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(s.err, "legiond token issue: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if *role == "" {
		fmt.Fprintln(s.err, "legiond token issue: --role is required")
		fs.Usage()
		return exitUsage
	}
	c := auth.Claims{Role: auth.Role(*role), Subject: *subject, Scopes: scopes}
	var err error
	if *partner != "" {
		if c.PartnerID, err = uuid.Parse(*partner); err != nil {
			fmt.Fprintf(s.err, "legiond token issue: --partner %q: not a UUID\n", *partner)
			return exitUsage
		}
	}
	if c.CustomerIDs, err = parseIDs("customer", customers); err != nil {
		fmt.Fprintf(s.err, "legiond token issue: %v\n", err)
		return exitUsage
	}
	if c.SiteIDs, err = parseIDs("site", sites); err != nil {
		fmt.Fprintf(s.err, "legiond token issue: %v\n", err)
		return exitUsage
	}
	if c.Role == auth.RoleIntegration {
		c.ClientID = *clientID
		if c.Subject == "" {
			c.Subject = *clientID
		}
	}
	if c.Subject == "" {
		c.Subject = "dev-" + *role
	}
	if err := c.Validate(); err != nil {
		fmt.Fprintf(s.err, "legiond token issue: %v\n", err)
		return exitUsage
	}
	iss, err := iflags.open(s)
	if err != nil {
		fmt.Fprintf(s.err, "legiond token issue: %v\n", err)
		return exitFailure
	}
	if url := firstNonEmpty(*dbURL, os.Getenv(envDatabaseURL)); url != "" {
		store, err := postgres.Open(ctx, postgres.Config{DSN: url, MaxConns: 1})
		if err != nil {
			fmt.Fprintf(s.err, "legiond token issue: %v\n", err)
			return exitFailure
		}
		defer store.Close()
		iss = iss.WithOnIssue(tokenAudit(store, defaultActor()))
	} else {
		fmt.Fprintln(s.err, "legiond token issue: no database: this token is not recorded in the audit trail (development only)")
	}
	tok, err := iss.IssueContext(ctx, c, *ttl)
	if err != nil {
		fmt.Fprintf(s.err, "legiond token issue: %v\n", err)
		return exitUsage
	}
	fmt.Fprintln(s.out, tok)
	return exitOK
}

func runTokenVerify(ctx context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("token verify", flag.ContinueOnError)
	fs.SetOutput(s.err)
	iflags := addIssuerFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(s.err, "usage: legiond token verify [--data-dir DIR] [TOKEN]   (TOKEN from standard input if absent)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	var tok string
	switch fs.NArg() {
	case 0:
		line, err := bufio.NewReader(io.LimitReader(s.in, auth.DefaultMaxTokenBytes+2)).ReadString('\n')
		if err != nil && err != io.EOF {
			fmt.Fprintf(s.err, "legiond token verify: %v\n", err)
			return exitFailure
		}
		tok = strings.TrimSpace(line)
	case 1:
		tok = fs.Arg(0)
	default:
		fs.Usage()
		return exitUsage
	}
	iss, err := iflags.open(s)
	if err != nil {
		fmt.Fprintf(s.err, "legiond token verify: %v\n", err)
		return exitFailure
	}
	v, err := auth.NewVerifier(iss.VerifierConfig())
	if err != nil {
		fmt.Fprintf(s.err, "legiond token verify: %v\n", err)
		return exitFailure
	}
	p, err := v.Verify(ctx, tok)
	if err != nil {
		fmt.Fprintf(s.err, "legiond token verify: %v\n", err)
		return exitFailure
	}
	enc := json.NewEncoder(s.out)
	enc.SetIndent("", "  ")
	_ = enc.Encode(p)
	return exitOK
}
