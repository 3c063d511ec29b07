package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"

	"github.com/legionelladossier/legiond/storage/postgres"
)

// adminCmd is one `legiond admin <entity> <verb>`. flags declares the
// verb's flags and returns the action, which runs in one scoped
// transaction and returns what to print.
type adminCmd struct {
	summary  string
	usage    string
	needKeys bool // the master key is required
	flags    func(fs *flag.FlagSet) func(ctx context.Context, tx *postgres.Tx) (any, error)
}

func adminCommands() map[string]adminCmd {
	cmds := registryCommands()
	for n, c := range staffCommands() {
		cmds[n] = c
	}
	return cmds
}

func registryCommands() map[string]adminCmd {
	return map[string]adminCmd{
		"partner create": {summary: "create a partner", usage: "--name NAME", flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
			name := fs.String("name", "", "partner name (required)")
			return func(ctx context.Context, tx *postgres.Tx) (any, error) {
				return tx.Partners().Create(ctx, postgres.NewPartner{Name: *name})
			}
		}},
		"partner list": {summary: "list partners", flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
			limit := fs.Int("limit", 1000, "at most this many rows")
			return func(ctx context.Context, tx *postgres.Tx) (any, error) {
				return tx.Partners().List(ctx, postgres.ListOptions{Limit: *limit})
			}
		}},
		"customer create": {summary: "create a customer (tenant)", usage: "--name NAME [--partner ID]", flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
			name := fs.String("name", "", "customer name (required)")
			partner := idFlag(fs, "partner", "managing partner (default: none, a direct customer)")
			return func(ctx context.Context, tx *postgres.Tx) (any, error) {
				return tx.Customers().Create(ctx, postgres.NewCustomer{Name: *name, PartnerID: partner.ptr()})
			}
		}},
		"customer list": {summary: "list customers", usage: "[--partner ID]", flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
			partner := idFlag(fs, "partner", "only this partner's customers")
			limit := fs.Int("limit", 1000, "at most this many rows")
			return func(ctx context.Context, tx *postgres.Tx) (any, error) {
				return tx.Customers().List(ctx, postgres.ListOptions{PartnerID: partner.id, Limit: *limit})
			}
		}},
		"site create": {summary: "create a site (EEA countries only)", usage: "--customer ID --name NAME --country CC [--street S] [--postal-code P] [--city C] [--profile NL|DE|UK] [--overrides JSON]",
			flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
				cust := idFlag(fs, "customer", "owning customer (required unless --as-customer)")
				name := fs.String("name", "", "site name (required)")
				street := fs.String("street", "", "street and number")
				postal := fs.String("postal-code", "", "postal code")
				city := fs.String("city", "", "city")
				country := fs.String("country", "", "ISO 3166-1 alpha-2 country code, EEA only (required)")
				profile := fs.String("profile", "", "rule profile NL, DE or UK (default: DE in Germany, else NL)")
				overrides := fs.String("overrides", "", `rule overrides as JSON, e.g. {"cold_max_c": 20}`)
				return func(ctx context.Context, tx *postgres.Tx) (any, error) {
					ov, err := postgres.ParseOverrides(*overrides)
					if err != nil {
						return nil, err
					}
					return tx.Sites().Create(ctx, postgres.NewSite{CustomerID: cust.id, Name: *name, Street: *street, PostalCode: *postal,
						City: *city, Country: *country, RuleProfile: postgres.RuleProfile(*profile), Overrides: ov})
				}
			}},
		"site list": {summary: "list sites", usage: "[--customer ID]", flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
			cust := idFlag(fs, "customer", "only this customer's sites")
			limit := fs.Int("limit", 1000, "at most this many rows")
			return func(ctx context.Context, tx *postgres.Tx) (any, error) {
				return tx.Sites().List(ctx, postgres.ListOptions{CustomerID: cust.id, Limit: *limit})
			}
		}},
		"tappoint create": {summary: "create a tap point", usage: "--site ID --name NAME --kind KIND [--flush-interval 168h] [--overrides JSON]",
			flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
				site := idFlag(fs, "site", "site (required)")
				name := fs.String("name", "", "tap point name (required)")
				kind := fs.String("kind", "", "HOT_TAP, COLD_TAP, MIXED_TAP, CIRCULATION_RETURN, HEATER_OUTLET or COLD_MAIN (required)")
				flush := fs.Duration("flush-interval", 0, "flush interval (default: the rule profile's)")
				overrides := fs.String("overrides", "", "rule overrides as JSON")
				return func(ctx context.Context, tx *postgres.Tx) (any, error) {
					ov, err := postgres.ParseOverrides(*overrides)
					if err != nil {
						return nil, err
					}
					return tx.TapPoints().Create(ctx, postgres.NewTapPoint{SiteID: site.id, Name: *name, Kind: postgres.TapKind(*kind),
						FlushInterval: *flush, Overrides: ov})
				}
			}},
		"tappoint list": {summary: "list tap points", usage: "[--site ID] [--customer ID]", flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
			site := idFlag(fs, "site", "only this site's tap points")
			cust := idFlag(fs, "customer", "only this customer's tap points")
			limit := fs.Int("limit", 1000, "at most this many rows")
			return func(ctx context.Context, tx *postgres.Tx) (any, error) {
				return tx.TapPoints().List(ctx, postgres.ListOptions{SiteID: site.id, CustomerID: cust.id, Limit: *limit})
			}
		}},
		"device create": {summary: "register a device", needKeys: true,
			usage: "--dev-eui EUI --activation OTAA|ABP [--tap-point ID | --site ID | --customer ID] [--join-eui EUI --app-key KEY] [--dev-addr ADDR --nwk-s-key KEY --app-s-key KEY] [--name N] [--interval 15m]",
			flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
				devEUI := fs.String("dev-eui", "", "DevEUI, 16 hex digits (required)")
				act := fs.String("activation", "", "OTAA or ABP (required)")
				tap := idFlag(fs, "tap-point", "tap point the device is clipped on")
				site := idFlag(fs, "site", "site (when not at a tap point yet)")
				cust := idFlag(fs, "customer", "customer (when not placed yet)")
				name := fs.String("name", "", "label")
				join := fs.String("join-eui", "", "JoinEUI/AppEUI (OTAA)")
				appKey := fs.String("app-key", "", "AppKey, 32 hex digits (OTAA); prefer $LEGIOND_APP_KEY, flags show in process lists")
				addr := fs.String("dev-addr", "", "DevAddr, 8 hex digits (ABP)")
				nwk := fs.String("nwk-s-key", "", "NwkSKey (ABP); prefer $LEGIOND_NWK_S_KEY")
				app := fs.String("app-s-key", "", "AppSKey (ABP); prefer $LEGIOND_APP_S_KEY")
				interval := fs.Duration("interval", postgres.DefaultExpectedInterval, "expected uplink interval")
				return func(ctx context.Context, tx *postgres.Tx) (any, error) {
					nd := postgres.NewDevice{Name: *name, ExpectedInterval: *interval, TapPointID: tap.ptr(), SiteID: site.ptr(), CustomerID: cust.id}
					var err error
					if nd.DevEUI, err = postgres.ParseEUI64(*devEUI); err != nil {
						return nil, &postgres.FieldError{Field: "dev_eui", Reason: err.Error()}
					}
					if nd.Activation, err = postgres.ParseActivation(*act); err != nil {
						return nil, &postgres.FieldError{Field: "activation", Reason: err.Error()}
					}
					if *join != "" {
						e, err := postgres.ParseEUI64(*join)
						if err != nil {
							return nil, &postgres.FieldError{Field: "join_eui", Reason: err.Error()}
						}
						nd.JoinEUI = &e
					}
					if *addr != "" {
						a, err := postgres.ParseDevAddr(*addr)
						if err != nil {
							return nil, &postgres.FieldError{Field: "dev_addr", Reason: err.Error()}
						}
						nd.DevAddr = &a
					}
					for _, k := range []struct {
						field, flagv, env string
						dst               **postgres.AES128Key
					}{
						{"app_key", *appKey, "LEGIOND_APP_KEY", &nd.AppKey},
						{"nwk_s_key", *nwk, "LEGIOND_NWK_S_KEY", &nd.NwkSKey},
						{"app_s_key", *app, "LEGIOND_APP_S_KEY", &nd.AppSKey},
					} {
						v := firstNonEmpty(k.flagv, os.Getenv(k.env))
						if v == "" {
							continue
						}
						key, err := postgres.ParseAES128Key(v)
						if err != nil {
							return nil, &postgres.FieldError{Field: k.field, Reason: err.Error()}
						}
						*k.dst = &key
					}
					return tx.Devices().Create(ctx, nd)
				}
			}},
		"device list": {summary: "list devices (no keys)", usage: "[--customer ID] [--site ID]", flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
			cust := idFlag(fs, "customer", "only this customer's devices")
			site := idFlag(fs, "site", "only this site's devices")
			limit := fs.Int("limit", 1000, "at most this many rows")
			return func(ctx context.Context, tx *postgres.Tx) (any, error) {
				return tx.Devices().List(ctx, postgres.ListOptions{CustomerID: cust.id, SiteID: site.id, Limit: *limit})
			}
		}},
		"device import": {summary: "bulk-register devices from CSV (all or nothing unless --skip-bad-rows)", needKeys: true,
			usage: "--file devices.csv [--skip-bad-rows] [--customer ID]   (columns: " + strings.Join(postgres.ImportColumns, ",") + ")",
			flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
				file := fs.String("file", "", "CSV file with a header line; - for standard input (required)")
				skip := fs.Bool("skip-bad-rows", false, "write the good rows and report the bad ones (default: write nothing if any row is bad)")
				cust := idFlag(fs, "customer", "customer of rows that name no customer, site or tap point")
				return func(ctx context.Context, tx *postgres.Tx) (any, error) {
					if *file == "" {
						return nil, &postgres.FieldError{Field: "file", Reason: "is required"}
					}
					var r io.Reader = os.Stdin
					if *file != "-" {
						f, err := os.Open(*file)
						if err != nil {
							return nil, err
						}
						defer func() { _ = f.Close() }()
						r = f
					}
					rep, err := tx.ImportDevices(ctx, r, postgres.ImportOptions{SkipBadRows: *skip, CustomerID: cust.id})
					return rep, err
				}
			}},
		"gateway create": {summary: "register a gateway", usage: "--gateway-eui EUI [--site ID | --customer ID | --partner ID] [--name N] [--stats-interval 5m]",
			flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
				eui := fs.String("gateway-eui", "", "gateway EUI, 16 hex digits (required)")
				site := idFlag(fs, "site", "site where it is installed (owner: the site's customer)")
				cust := idFlag(fs, "customer", "owning customer")
				partner := idFlag(fs, "partner", "owning partner")
				name := fs.String("name", "", "label")
				stats := fs.Duration("stats-interval", 5*time.Minute, "gateway stats interval")
				return func(ctx context.Context, tx *postgres.Tx) (any, error) {
					e, err := postgres.ParseEUI64(*eui)
					if err != nil {
						return nil, &postgres.FieldError{Field: "gateway_eui", Reason: err.Error()}
					}
					return tx.Gateways().Create(ctx, postgres.NewGateway{GatewayEUI: e, SiteID: site.ptr(), CustomerID: cust.ptr(),
						PartnerID: partner.ptr(), Name: *name, StatsInterval: *stats})
				}
			}},
		"gateway list": {summary: "list gateways", usage: "[--customer ID] [--partner ID]", flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
			cust := idFlag(fs, "customer", "only this customer's gateways")
			partner := idFlag(fs, "partner", "only this partner's own gateways")
			limit := fs.Int("limit", 1000, "at most this many rows")
			return func(ctx context.Context, tx *postgres.Tx) (any, error) {
				return tx.Gateways().List(ctx, postgres.ListOptions{CustomerID: cust.id, PartnerID: partner.id, Limit: *limit})
			}
		}},
	}
}

func adminUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: legiond admin <entity> <verb> [flags]")
	fmt.Fprintln(w, "\ncommon flags: --database-url URL (default $"+envDatabaseURL+", the "+postgres.AppRole+" role)")
	fmt.Fprintln(w, "              --master-key-file FILE (default $"+postgres.MasterKeyEnv+"; needed for device keys)")
	fmt.Fprintln(w, "              --json  --as-partner ID  --as-customer ID  --actor NAME")
	fmt.Fprintln(w, "\ncommands:")
	cmds := adminCommands()
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-16s %s\n", n, cmds[n].summary)
		if u := cmds[n].usage; u != "" {
			fmt.Fprintf(w, "  %-16s   %s\n", "", u)
		}
	}
}

func runAdmin(ctx context.Context, args []string, s stdio) int {
	if len(args) < 2 {
		adminUsage(s.err)
		if len(args) == 1 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			return exitOK
		}
		return exitUsage
	}
	name := args[0] + " " + args[1]
	cmd, ok := adminCommands()[name]
	if !ok {
		fmt.Fprintf(s.err, "legiond admin: unknown command %q\n\n", name)
		adminUsage(s.err)
		return exitUsage
	}
	fs := flag.NewFlagSet("admin "+name, flag.ContinueOnError)
	fs.SetOutput(s.err)
	dbURL := fs.String("database-url", "", "PostgreSQL URL as the "+postgres.AppRole+" role (default $"+envDatabaseURL+")")
	keyFile := fs.String("master-key-file", "", "master key file (default $"+postgres.MasterKeyEnv+")")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	asPartner := idFlag(fs, "as-partner", "act in this partner's scope (default: platform scope)")
	asCustomer := idFlag(fs, "as-customer", "act in this customer's scope (default: platform scope)")
	actor := fs.String("actor", defaultActor(), "who acts, for the audit columns")
	action := cmd.flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(s.err, "usage: legiond admin %s %s\n", name, cmd.usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[2:]); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(s.err, "legiond admin %s: unexpected argument %q\n", name, fs.Arg(0))
		return exitUsage
	}
	scope := postgres.PlatformScope(*actor)
	switch {
	case asPartner.id != uuid.Nil && asCustomer.id != uuid.Nil:
		fmt.Fprintln(s.err, "legiond admin: give --as-partner or --as-customer, not both")
		return exitUsage
	case asPartner.id != uuid.Nil:
		scope = postgres.PartnerScope(asPartner.id, *actor)
	case asCustomer.id != uuid.Nil:
		scope = postgres.CustomerScope(asCustomer.id, *actor)
	}
	url := firstNonEmpty(*dbURL, os.Getenv(envDatabaseURL))
	if url == "" {
		fmt.Fprintln(s.err, "legiond admin: no database: pass --database-url or set "+envDatabaseURL)
		return exitUsage
	}
	var kr *postgres.KeyRing
	if cmd.needKeys || *keyFile != "" || os.Getenv(postgres.MasterKeyEnv) != "" {
		mk, err := postgres.LoadMasterKey(*keyFile, os.Getenv)
		if err != nil {
			fmt.Fprintf(s.err, "legiond admin: %v\n", err)
			return exitFailure
		}
		if kr, err = postgres.NewKeyRing(mk); err != nil {
			fmt.Fprintf(s.err, "legiond admin: %v\n", err)
			return exitFailure
		}
	}
	store, err := postgres.Open(ctx, postgres.Config{DSN: url, KeyRing: kr, MaxConns: 2})
	if err != nil {
		fmt.Fprintf(s.err, "legiond admin: %v\n", err)
		return exitFailure
	}
	defer store.Close()

	var result any
	err = store.InTx(ctx, scope, func(tx *postgres.Tx) error {
		var err error
		if result, err = action(ctx, tx); err != nil || !adminChanges(name) {
			return err
		}
		return auditAdminCLI(ctx, tx, fs, name, *actor)
	})
	if result != nil && (err == nil || errors.Is(err, postgres.ErrImportRejected)) {
		if perr := printResult(s.out, result, *asJSON); perr != nil {
			fmt.Fprintf(s.err, "legiond admin: %v\n", perr)
			return exitFailure
		}
	}
	if err != nil {
		fmt.Fprintf(s.err, "legiond admin %s: %v\n", name, err)
		if errors.Is(err, postgres.ErrInvalidArgument) {
			return exitUsage
		}
		return exitFailure
	}
	return exitOK
}

func defaultActor() string {
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	return "cli"
}

// uuidFlag is an optional UUID flag.
type uuidFlag struct{ id uuid.UUID }

func idFlag(fs *flag.FlagSet, name, usage string) *uuidFlag {
	f := &uuidFlag{}
	fs.Var(f, name, usage)
	return f
}

func (f *uuidFlag) String() string {
	if f == nil || f.id == uuid.Nil {
		return ""
	}
	return f.id.String()
}

func (f *uuidFlag) Set(s string) error {
	id, err := uuid.Parse(s)
	if err != nil {
		return fmt.Errorf("not a UUID")
	}
	f.id = id
	return nil
}

func (f *uuidFlag) ptr() *uuid.UUID {
	if f.id == uuid.Nil {
		return nil
	}
	id := f.id
	return &id
}

// printResult writes JSON or a table.
func printResult(w io.Writer, v any, asJSON bool) error {
	if raw, ok := v.(json.RawMessage); ok { // already JSON (gdpr export)
		_, err := w.Write(append(raw, '\n'))
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	head, rows := tableOf(v)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func idStr(p *uuid.UUID) string {
	if p == nil {
		return "-"
	}
	return p.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func tableOf(v any) ([]string, [][]string) {
	switch x := v.(type) {
	case json.RawMessage:
		return []string{"JSON"}, [][]string{{string(x)}}
	case postgres.BreakGlassGrant:
		return tableOf([]postgres.BreakGlassGrant{x})
	case []postgres.BreakGlassGrant:
		rows := make([][]string, len(x))
		for i, g := range x {
			state := "until " + g.ExpiresAt.Format(time.RFC3339)
			if g.RevokedAt != nil {
				state = "revoked " + g.RevokedAt.Format(time.RFC3339)
			}
			rows[i] = []string{g.ID.String(), g.CustomerID.String(), g.Subject, state, g.Reason}
		}
		return []string{"ID", "CUSTOMER", "USER", "STATE", "REASON"}, rows
	case postgres.ErasureReport:
		return []string{"ERASURE", ""}, [][]string{{"user", x.UserID.String()}, {"pseudonym", x.Pseudonym},
			{"role grants revoked", strconv.FormatInt(x.RoleGrantsRevoked, 10)}, {"audit seq", strconv.FormatInt(x.AuditSeq, 10)}}
	case postgres.Partner:
		return tableOf([]postgres.Partner{x})
	case []postgres.Partner:
		rows := make([][]string, len(x))
		for i, p := range x {
			rows[i] = []string{p.ID.String(), p.Name, p.CreatedAt.Format(time.RFC3339)}
		}
		return []string{"ID", "NAME", "CREATED"}, rows
	case postgres.Customer:
		return tableOf([]postgres.Customer{x})
	case []postgres.Customer:
		rows := make([][]string, len(x))
		for i, c := range x {
			rows[i] = []string{c.ID.String(), c.Name, idStr(c.PartnerID), c.CreatedAt.Format(time.RFC3339)}
		}
		return []string{"ID", "NAME", "PARTNER", "CREATED"}, rows
	case postgres.Site:
		return tableOf([]postgres.Site{x})
	case []postgres.Site:
		rows := make([][]string, len(x))
		for i, s := range x {
			rows[i] = []string{s.ID.String(), s.Name, s.Country, string(s.RuleProfile), orDash(s.City), s.CustomerID.String()}
		}
		return []string{"ID", "NAME", "COUNTRY", "PROFILE", "CITY", "CUSTOMER"}, rows
	case postgres.TapPoint:
		return tableOf([]postgres.TapPoint{x})
	case []postgres.TapPoint:
		rows := make([][]string, len(x))
		for i, t := range x {
			fi := "profile"
			if t.FlushInterval > 0 {
				fi = t.FlushInterval.String()
			}
			rows[i] = []string{t.ID.String(), t.Name, string(t.Kind), fi, t.SiteID.String()}
		}
		return []string{"ID", "NAME", "KIND", "FLUSH", "SITE"}, rows
	case postgres.Device:
		return tableOf([]postgres.Device{x})
	case []postgres.Device:
		rows := make([][]string, len(x))
		for i, d := range x {
			addr := "-"
			if d.DevAddr != nil {
				addr = d.DevAddr.String()
			}
			rows[i] = []string{d.DevEUI.String(), string(d.Activation), addr, orDash(d.Name), d.CustomerID.String(), idStr(d.SiteID), idStr(d.TapPointID)}
		}
		return []string{"DEV_EUI", "ACTIVATION", "DEV_ADDR", "NAME", "CUSTOMER", "SITE", "TAP_POINT"}, rows
	case postgres.Gateway:
		return tableOf([]postgres.Gateway{x})
	case []postgres.Gateway:
		rows := make([][]string, len(x))
		for i, g := range x {
			rows[i] = []string{g.GatewayEUI.String(), orDash(g.Name), idStr(g.PartnerID), idStr(g.CustomerID), idStr(g.SiteID)}
		}
		return []string{"GATEWAY_EUI", "NAME", "PARTNER", "CUSTOMER", "SITE"}, rows
	case postgres.ImportReport:
		rows := [][]string{{"rows", strconv.Itoa(x.Rows)}, {"imported", strconv.Itoa(x.Imported)},
			{"skipped", strconv.Itoa(x.Skipped)}, {"duration", x.Duration.Round(time.Millisecond).String()}}
		for _, e := range x.Errors {
			rows = append(rows, []string{"error", e.String()})
		}
		return []string{"IMPORT", ""}, rows
	}
	return []string{"RESULT"}, [][]string{{fmt.Sprint(v)}}
}

// adminChanges reports the admin commands that change the registry.
func adminChanges(name string) bool {
	return strings.HasSuffix(name, " create") || name == "device import"
}

// auditAdminCLI records an operator's registry change made on the command
// line, in the change's transaction, like the API's admin changes: who,
// what, the tenant, and the names of the flags given (never their values:
// keys and personal data stay out of the trail).
func auditAdminCLI(ctx context.Context, tx *postgres.Tx, fs *flag.FlagSet, name, actor string) error {
	var set []string
	fs.Visit(func(f *flag.Flag) { set = append(set, f.Name) })
	e := postgres.AuditEntry{Actor: "cli:" + actor, ActorRole: "operator", Action: postgres.AuditAdminChange,
		Target:  "admin:" + strings.ReplaceAll(name, " ", "-"),
		Details: map[string]any{"op": "create", "command": "legiond admin " + name, "flags": set}}
	tenant := func(flagName string) *uuid.UUID {
		if f := fs.Lookup(flagName); f != nil {
			if id, err := uuid.Parse(f.Value.String()); err == nil {
				return &id
			}
		}
		return nil
	}
	if e.CustomerID = tenant("customer"); e.CustomerID == nil {
		e.PartnerID = tenant("partner")
	}
	if _, err := tx.AppendAudit(ctx, e); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}
