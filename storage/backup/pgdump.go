package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/legionelladossier/legiond/storage/postgres"
)

// DatabaseDumper writes a transactionally consistent dump of the registry
// to w (the Backup side).
type DatabaseDumper interface {
	Dump(ctx context.Context, w io.Writer) (DumpInfo, error)
}

// DatabaseRestorer loads a dump into an empty database (the Restore side).
type DatabaseRestorer interface {
	// CheckEmpty returns an error wrapping ErrNotEmpty unless the database
	// holds no schema or table of its own.
	CheckEmpty(ctx context.Context) error
	// Restore loads the dump read from r, all or nothing, and checks the
	// result against info (row counts).
	Restore(ctx context.Context, r io.Reader, info DumpInfo) error
}

// PgConfig configures PgDump.
type PgConfig struct {
	// DSN connects to the registry database (required), as a URL
	// (postgres://user:password@host/db?sslmode=verify-full) or in
	// key=value form. A URL's password is handed to pg_dump/pg_restore in
	// the environment, not on the command line.
	//
	// Dump: a role that can read every row: a superuser, a BYPASSRLS role,
	// or the migration role (a member of legiond_owner). The dump runs with
	// row security on under the platform scope, so a non-bypassing member of
	// legiond_owner sees every row too; the row counts taken in the same
	// snapshot and checked on restore prove that nothing was filtered out.
	//
	// Restore: a superuser, or a BYPASSRLS role with CREATEROLE that may
	// create schemas in the database (COPY into tables with forced row
	// security needs to bypass it).
	DSN string
	// BinDir holds pg_dump and pg_restore. Default: $PG_BINDIR, else the
	// newest /usr/lib/postgresql/*/bin that has them, else PATH. pg_dump
	// must be at least the server's major version.
	BinDir string
	// AppPassword, on restore, sets the legiond_app role's password (roles
	// are cluster-wide and not part of a dump). Default "": left as it is.
	AppPassword string
	// LockWaitTimeout bounds pg_dump's wait for table locks (a running
	// migration). Default 1 minute.
	LockWaitTimeout time.Duration
	// Logger receives one line per dump or restore. Default: discard.
	Logger *slog.Logger
}

// PgDump dumps with pg_dump (custom format, compressed) inside a snapshot
// exported by a REPEATABLE READ transaction that also records the schema
// version, the row count of every table and the audit-chain head, so the
// manifest describes exactly the dumped state. It restores with
// pg_restore --single-transaction into an empty database.
type PgDump struct {
	cfg              PgConfig
	dumpBin, restBin string
	dsnArg, password string
	log              *slog.Logger
}

// dumpFormat names the format in manifests.
const dumpFormat = "pg_dump-custom"

// NewPgDump finds the tools and returns a PgDump. It does not connect.
func NewPgDump(cfg PgConfig) (*PgDump, error) {
	if cfg.DSN == "" {
		return nil, fmt.Errorf("%w: database URL is required", ErrInvalid)
	}
	if cfg.LockWaitTimeout == 0 {
		cfg.LockWaitTimeout = time.Minute
	}
	p := &PgDump{cfg: cfg, log: cfg.Logger}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if p.dumpBin, err = findPgTool(cfg.BinDir, "pg_dump"); err != nil {
		return nil, err
	}
	if p.restBin, err = findPgTool(cfg.BinDir, "pg_restore"); err != nil {
		return nil, err
	}
	p.dsnArg, p.password = splitPassword(cfg.DSN)
	return p, nil
}

// findPgTool looks for a PostgreSQL client program.
func findPgTool(binDir, name string) (string, error) {
	var dirs []string
	if binDir != "" {
		dirs = []string{binDir}
	} else if d := os.Getenv("PG_BINDIR"); d != "" {
		dirs = []string{d}
	} else {
		found, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
		sort.Slice(found, func(i, j int) bool { return majorOf(found[i]) > majorOf(found[j]) })
		dirs = found
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	if binDir == "" && os.Getenv("PG_BINDIR") == "" {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s not found (install the PostgreSQL client, or set PG_BINDIR)", ErrInvalid, name)
}

func majorOf(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// splitPassword moves a URL's password out of the DSN given to the tools.
func splitPassword(dsn string) (arg, password string) {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return dsn, ""
	}
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn, ""
	}
	pw, ok := u.User.Password()
	if !ok {
		return dsn, ""
	}
	u.User = url.User(u.User.Username())
	return u.String(), pw
}

// env is the tools' environment: the platform scope for row security, the
// password, and no password prompt.
func (p *PgDump) env() []string {
	env := append(os.Environ(), "PGOPTIONS=-c legiond.tenant=platform -c legiond.actor=backup", "PGAPPNAME=legiond-backup", "PGCONNECT_TIMEOUT=30")
	if p.password != "" {
		env = append(env, "PGPASSWORD="+p.password)
	}
	return env
}

// Dump implements DatabaseDumper.
func (p *PgDump) Dump(ctx context.Context, w io.Writer) (DumpInfo, error) {
	info := DumpInfo{Format: dumpFormat}
	conn, err := pgx.Connect(ctx, p.cfg.DSN)
	if err != nil {
		return info, fmt.Errorf("%w: connect: %w", ErrTool, err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return info, fmt.Errorf("%w: begin: %w", ErrTool, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var snapshot string
	if err := tx.QueryRow(ctx, `SELECT set_config('legiond.tenant', 'platform', true), pg_export_snapshot()`).Scan(new(string), &snapshot); err != nil {
		return info, fmt.Errorf("%w: export snapshot: %w", ErrTool, err)
	}
	if err := describe(ctx, tx, &info); err != nil {
		return info, err
	}
	if info.Tool, err = toolVersion(ctx, p.dumpBin); err != nil {
		return info, err
	}
	if err := checkToolVersion(info.Tool, info.ServerVersion); err != nil {
		return info, err
	}
	args := []string{"--format=custom", "--no-password", "--enable-row-security",
		"--snapshot=" + snapshot, "--lock-wait-timeout=" + strconv.FormatInt(p.cfg.LockWaitTimeout.Milliseconds(), 10),
		"--dbname=" + p.dsnArg}
	if err := p.run(ctx, p.dumpBin, args, nil, w); err != nil {
		return info, err
	}
	p.log.Info("registry dumped", "schema_version", info.SchemaVersion, "tables", len(info.Tables))
	return info, nil
}

// describe fills the schema version, server version, table row counts and
// audit head from the transaction's snapshot.
func describe(ctx context.Context, tx pgx.Tx, info *DumpInfo) error {
	if err := tx.QueryRow(ctx, `SHOW server_version`).Scan(&info.ServerVersion); err != nil {
		return fmt.Errorf("%w: server version: %w", ErrTool, err)
	}
	var err error
	if info.Tables, err = countTables(ctx, tx); err != nil {
		return err
	}
	if _, ok := info.Tables[postgres.Schema+".goose_db_version"]; ok {
		var v *int64
		if err := tx.QueryRow(ctx, `SELECT max(version_id) FROM `+postgres.Schema+`.goose_db_version WHERE is_applied`).Scan(&v); err != nil {
			return fmt.Errorf("%w: schema version: %w", ErrTool, err)
		}
		if v != nil {
			info.SchemaVersion = *v
		}
	}
	if _, ok := info.Tables[postgres.Schema+".audit_log"]; ok {
		var a postgres.AuditAnchor
		err := tx.QueryRow(ctx, `SELECT seq, hash FROM `+postgres.Schema+`.audit_log ORDER BY seq DESC LIMIT 1`).Scan(&a.Seq, &a.Hash)
		switch {
		case err == nil:
			info.AuditHead = a.String()
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("%w: audit head: %w", ErrTool, err)
		}
	}
	return nil
}

// countTables counts the rows of every ordinary table outside the system
// schemas.
func countTables(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
	QueryRow(context.Context, string, ...any) pgx.Row
}) (map[string]int64, error) {
	rows, err := q.Query(ctx, `SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
		ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("%w: list tables: %w", ErrTool, err)
	}
	type tbl struct{ schema, name string }
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tbl, error) {
		var t tbl
		return t, r.Scan(&t.schema, &t.name)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: list tables: %w", ErrTool, err)
	}
	out := make(map[string]int64, len(tables))
	for _, t := range tables {
		var n int64
		if err := q.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{t.schema, t.name}.Sanitize()).Scan(&n); err != nil {
			return nil, fmt.Errorf("%w: count %s.%s: %w", ErrTool, t.schema, t.name, err)
		}
		out[t.schema+"."+t.name] = n
	}
	return out, nil
}

// CheckEmpty implements DatabaseRestorer: the database may hold the empty
// public schema and nothing else.
func (p *PgDump) CheckEmpty(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, p.cfg.DSN)
	if err != nil {
		return fmt.Errorf("%w: connect: %w", ErrTool, err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	return checkEmpty(ctx, conn)
}

func checkEmpty(ctx context.Context, conn *pgx.Conn) error {
	var db string
	var schemas []string
	var objects int
	err := conn.QueryRow(ctx, `SELECT current_database(),
		  coalesce((SELECT array_agg(nspname ORDER BY nspname) FROM pg_namespace
		            WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\_%'), '{}'),
		  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public')
		    + (SELECT count(*) FROM pg_proc f JOIN pg_namespace n ON n.oid = f.pronamespace WHERE n.nspname = 'public')`).
		Scan(&db, &schemas, &objects)
	if err != nil {
		return fmt.Errorf("%w: inspect database: %w", ErrTool, err)
	}
	if len(schemas) > 0 || objects > 0 {
		return fmt.Errorf("%w: database %s holds schemas %v and %d objects in public: restore into a new, empty database (createdb)", ErrNotEmpty, db, schemas, objects)
	}
	return nil
}

// Restore implements DatabaseRestorer.
func (p *PgDump) Restore(ctx context.Context, r io.Reader, info DumpInfo) error {
	if info.Format != dumpFormat {
		return fmt.Errorf("%w: dump format %q", ErrIncompatible, info.Format)
	}
	if info.SchemaVersion > postgres.LatestVersion() {
		return fmt.Errorf("%w: registry schema %d, this binary knows up to %d", ErrIncompatible, info.SchemaVersion, postgres.LatestVersion())
	}
	if err := p.CheckEmpty(ctx); err != nil {
		return err
	}
	if err := postgres.EnsureRoles(ctx, p.cfg.DSN, p.cfg.AppPassword); err != nil {
		return fmt.Errorf("%w: %w", ErrTool, err)
	}
	args := []string{"--no-password", "--exit-on-error", "--single-transaction", "--dbname=" + p.dsnArg}
	if err := p.run(ctx, p.restBin, args, r, nil); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, p.cfg.DSN)
	if err != nil {
		return fmt.Errorf("%w: connect: %w", ErrTool, err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("%w: begin: %w", ErrTool, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT set_config('legiond.tenant', 'platform', true)`); err != nil {
		return fmt.Errorf("%w: %w", ErrTool, err)
	}
	got, err := countTables(ctx, tx)
	if err != nil {
		return err
	}
	if diff := diffCounts(info.Tables, got); diff != "" {
		return fmt.Errorf("%w: restored row counts differ: %s", ErrChecksum, diff)
	}
	p.log.Info("registry restored", "schema_version", info.SchemaVersion, "tables", len(got))
	return nil
}

func diffCounts(want, got map[string]int64) string {
	var diffs []string
	for t, n := range want {
		if g, ok := got[t]; !ok {
			diffs = append(diffs, t+" missing")
		} else if g != n {
			diffs = append(diffs, fmt.Sprintf("%s has %d rows, want %d", t, g, n))
		}
	}
	for t := range got {
		if _, ok := want[t]; !ok {
			diffs = append(diffs, t+" unexpected")
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "; ")
}

// run runs a tool with stdin/stdout, keeping the end of its stderr for the
// error message.
func (p *PgDump) run(ctx context.Context, bin string, args []string, stdin io.Reader, stdout io.Writer) error {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = p.env()
	var in *recordingReader
	if stdin != nil {
		in = &recordingReader{r: stdin}
		cmd.Stdin = in
	}
	cmd.Stdout = stdout
	var stderr tailBuffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A failure to read what we feed the tool (a decryption error) is
		// the root cause of the tool's failure: return it.
		if in != nil && in.err != nil {
			return fmt.Errorf("feed %s: %w", filepath.Base(bin), in.err)
		}
		msg := strings.TrimSpace(stderr.String())
		return fmt.Errorf("%w: %s: %w: %s", ErrTool, filepath.Base(bin), err, msg)
	}
	return nil
}

// toolVersion returns "pg_dump (PostgreSQL) 15.8" or similar.
func toolVersion(ctx context.Context, bin string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s --version: %w", ErrTool, bin, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// checkToolVersion refuses a pg_dump older than the server's major
// version, which pg_dump itself would refuse with a less clear message.
func checkToolVersion(tool, server string) error {
	tm, sm := leadingMajor(lastField(tool)), leadingMajor(server)
	if tm > 0 && sm > 0 && tm < sm {
		return fmt.Errorf("%w: %s is older than the server (%s): install the PostgreSQL %d client or set PG_BINDIR", ErrTool, tool, server, sm)
	}
	return nil
}

func lastField(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	// "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)": the version is
	// the third field.
	if len(f) >= 3 {
		return f[2]
	}
	return f[len(f)-1]
}

func leadingMajor(v string) int {
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(v[:end])
	return n
}

// tailBuffer keeps the last 8 KiB written to it.
type tailBuffer struct{ b bytes.Buffer }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b.Write(p)
	if t.b.Len() > 8<<10 {
		keep := t.b.Bytes()[t.b.Len()-(8<<10):]
		t.b = *bytes.NewBuffer(append([]byte(nil), keep...))
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return t.b.String() }

// recordingReader remembers the first read error other than EOF.
type recordingReader struct {
	r   io.Reader
	err error
}

func (r *recordingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}
