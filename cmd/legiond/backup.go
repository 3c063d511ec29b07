package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"filippo.io/age"

	"github.com/legionelladossier/legiond/storage/backup"
	"github.com/legionelladossier/legiond/storage/encfs"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// Environment variables of the backup commands.
const (
	// envBackupDatabaseURL is the registry as a role that may read every
	// row (the migration role), for pg_dump; restore uses it too.
	envBackupDatabaseURL = "LEGIOND_BACKUP_DATABASE_URL"
	// envBackupRecipient is the backup public key (age1…).
	envBackupRecipient = "LEGIOND_BACKUP_RECIPIENT"
	// S3 credentials, under the names every S3 tool reads.
	envS3AccessKey    = "AWS_ACCESS_KEY_ID"
	envS3SecretKey    = "AWS_SECRET_ACCESS_KEY"
	envS3SessionToken = "AWS_SESSION_TOKEN"
)

// Node data-folder layouts the backup commands understand: the encrypted
// one every node uses (encfs keystore in DATA/storage, twin store in
// DATA/storage/twins; see encryption.go) and the plaintext one of folders
// from before encryption at rest and of tests (DATA/twins).
const (
	encryptedTwinDir = "storage/twins"
	encryptedKeyRel  = "storage/" + encfs.KeyStoreFile
	plainTwinDir     = "twins"
)

type backupCmd struct {
	summary, usage string
	run            func(ctx context.Context, args []string, s stdio) int
}

func backupCommands() map[string]backupCmd {
	return map[string]backupCmd{
		"run": {summary: "back up the registry (and, with --data-dir, the stopped node's data), encrypted, then read it back",
			usage: "--to DEST --database-url URL [--data-dir DIR [--master-key-file F | --dev-master-key]] (--recipient AGE1… | --recipient-file F) [--identity F]",
			run:   runBackupRun},
		"verify": {summary: "read a backup back and check it (fully with --identity, else its trailer only)",
			usage: "NAME|latest --from DEST [--identity F]", run: runBackupVerify},
		"list":   {summary: "list the backups at a destination", usage: "--from DEST [--json]", run: runBackupList},
		"prune":  {summary: "apply the retention policy (7 daily, 4 weekly, 12 monthly by default)", usage: "--from DEST [--keep-daily N --keep-weekly N --keep-monthly N] [--dry-run]", run: runBackupPrune},
		"keygen": {summary: "create a backup key pair: writes the identity (mode 0600), prints the public recipient", usage: "--out FILE [--dev] [--post-quantum]", run: runBackupKeygen},
	}
}

func backupUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: legiond backup <command> [flags]\n\ncommands:")
	cmds := backupCommands()
	for _, n := range []string{"run", "verify", "list", "prune", "keygen"} {
		fmt.Fprintf(w, "  %-8s %s\n           legiond backup %s %s\n", n, cmds[n].summary, n, cmds[n].usage)
	}
	fmt.Fprintln(w, "\nDEST is file:///path, a plain path, or s3://bucket/prefix (with --s3-endpoint; credentials from $"+envS3AccessKey+" and $"+envS3SecretKey+").")
	fmt.Fprintln(w, "Restore with `legiond restore`; the runbook is docs/disaster-recovery.md.")
}

func runBackup(ctx context.Context, args []string, s stdio) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		backupUsage(s.err)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	c, ok := backupCommands()[args[0]]
	if !ok {
		fmt.Fprintf(s.err, "legiond backup: unknown command %q\n\n", args[0])
		backupUsage(s.err)
		return exitUsage
	}
	return c.run(ctx, args[1:], s)
}

// parseInterspersed parses flags that may come before or after positional
// arguments and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// s3Flags configure an s3:// destination.
type s3Flags struct {
	endpoint, region, caFile string
	allowHTTP, pathStyle     bool
}

func (f *s3Flags) register(fs *flag.FlagSet, prefix string) {
	fs.StringVar(&f.endpoint, prefix+"s3-endpoint", "", "S3 service URL for s3:// destinations, e.g. https://s3.eu-central-1.amazonaws.com")
	fs.StringVar(&f.region, prefix+"s3-region", "", "bucket region (default: asked from the service); keep backups in the EEA")
	fs.StringVar(&f.caFile, prefix+"s3-ca-file", "", "PEM bundle of CAs for the S3 endpoint (default: system pool)")
	fs.BoolVar(&f.allowHTTP, prefix+"s3-allow-http", false, "allow a plain-HTTP S3 endpoint (loopback test servers only)")
	fs.BoolVar(&f.pathStyle, prefix+"s3-path-style", false, "path-style S3 requests (MinIO and most non-AWS services)")
}

func (f *s3Flags) config() (backup.S3Config, error) {
	c := backup.S3Config{Endpoint: f.endpoint, Region: f.region, AllowHTTP: f.allowHTTP, PathStyle: f.pathStyle,
		AccessKey: os.Getenv(envS3AccessKey), SecretKey: os.Getenv(envS3SecretKey), SessionToken: os.Getenv(envS3SessionToken)}
	if f.caFile != "" {
		pem, err := os.ReadFile(f.caFile)
		if err != nil {
			return c, err
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return c, fmt.Errorf("%s holds no PEM certificate", f.caFile)
		}
	}
	return c, nil
}

// destination opens DEST.
func (f *s3Flags) destination(dest string) (backup.Destination, error) {
	if dest == "" {
		return nil, errors.New("no destination: pass --to/--from file:///path or s3://bucket/prefix")
	}
	var c backup.S3Config
	if strings.HasPrefix(dest, "s3://") {
		var err error
		if c, err = f.config(); err != nil {
			return nil, err
		}
	}
	return backup.OpenDestination(dest, c)
}

// recipientFlags collect the backup public keys.
type recipientFlags struct {
	keys  []string
	files []string
}

func (r *recipientFlags) register(fs *flag.FlagSet, prefix string) {
	fs.Func(prefix+"recipient", "backup public key age1… (repeatable; default $"+envBackupRecipient+")", func(v string) error {
		r.keys = append(r.keys, v)
		return nil
	})
	fs.Func(prefix+"recipient-file", "file of backup public keys, one per line (or the identity file itself; repeatable)", func(v string) error {
		r.files = append(r.files, v)
		return nil
	})
}

func (r *recipientFlags) load() ([]age.Recipient, error) {
	keys := r.keys
	if len(keys) == 0 && len(r.files) == 0 {
		if env := os.Getenv(envBackupRecipient); env != "" {
			keys = []string{env}
		}
	}
	var out []age.Recipient
	if len(keys) > 0 {
		rs, err := backup.ParseRecipients(keys...)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	for _, f := range r.files {
		rs, err := backup.LoadRecipients(f)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	if len(out) == 0 {
		return nil, errors.New("no backup recipient: pass --recipient age1…, --recipient-file F or set " + envBackupRecipient)
	}
	return out, nil
}

// openTwinStore opens the stopped node's twin store for a checkpoint: the
// encrypted layout when DATA/storage holds a keystore (master key from
// masterKeyFile, $LEGIOND_STORAGE_MASTER_KEY or, with dev, the development
// key file), else the plaintext DATA/twins. The returned close function
// closes the store and the encrypted FS.
func openTwinStore(dataDir, masterKeyFile string, dev bool) (*pebblestore.Store, backup.NodeSource, func(), error) {
	src := backup.NodeSource{DataDir: dataDir}
	keyStore := filepath.Join(dataDir, filepath.FromSlash(encryptedKeyRel))
	if _, err := os.Stat(keyStore); err == nil {
		if dev {
			masterKeyFile = filepath.Join(dataDir, "storage", encfs.DevMasterKeyFile)
		}
		mk, err := encfs.LoadMasterKey(masterKeyFile, os.Getenv)
		if err != nil {
			return nil, src, nil, fmt.Errorf("storage master key: %w", err)
		}
		efs, err := encfs.Open(encfs.Config{Dir: filepath.Join(dataDir, "storage"), MasterKey: mk, MustExist: true})
		if err != nil {
			return nil, src, nil, err
		}
		st, err := pebblestore.Open(pebblestore.Config{Dir: filepath.Join(dataDir, filepath.FromSlash(encryptedTwinDir)), FS: efs})
		if err != nil {
			_ = efs.Close()
			return nil, src, nil, fmt.Errorf("twin store (is the node stopped?): %w", err)
		}
		src.Checkpointer, src.StoreDir, src.KeyStore = st, encryptedTwinDir, encryptedKeyRel
		return st, src, func() { _ = st.Close(); _ = efs.Close() }, nil
	}
	dir := filepath.Join(dataDir, plainTwinDir)
	if _, err := os.Stat(dir); err != nil {
		return nil, src, nil, fmt.Errorf("no twin store in %s (neither %s nor %s): %w", dataDir, encryptedKeyRel, plainTwinDir, err)
	}
	st, err := pebblestore.Open(pebblestore.Config{Dir: dir})
	if err != nil {
		return nil, src, nil, fmt.Errorf("twin store (is the node stopped?): %w", err)
	}
	src.Checkpointer, src.StoreDir = st, plainTwinDir
	return st, src, func() { _ = st.Close() }, nil
}

// appendAuditEntry records a backup or restore in the registry's audit
// trail, through a role that may write it (the backup role: a superuser or
// a member of legiond_owner).
func appendAuditEntry(ctx context.Context, dsn, actor string, e postgres.AuditEntry) error {
	st, err := postgres.Open(ctx, postgres.Config{DSN: dsn, MaxConns: 1, AllowUnsafeRole: true, SkipVersionCheck: true})
	if err != nil {
		return err
	}
	defer st.Close()
	_, err = st.AppendAudit(ctx, postgres.PlatformScope(actor), e)
	return err
}

func backupDatabaseURL(flagValue string) string {
	return firstNonEmpty(flagValue, os.Getenv(envBackupDatabaseURL), os.Getenv(envMigrateDatabaseURL), os.Getenv(envDatabaseURL))
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runBackupRun(ctx context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("backup run", flag.ContinueOnError)
	fs.SetOutput(s.err)
	to := fs.String("to", "", "destination: file:///path, a path, or s3://bucket/prefix (required)")
	dbURL := fs.String("database-url", "", "registry as a role that reads every row, e.g. the migration role (default $"+envBackupDatabaseURL+", $"+envMigrateDatabaseURL+", $"+envDatabaseURL+")")
	dataDir := fs.String("data-dir", "", "the stopped node's data folder: makes a full backup (default: registry only)")
	kind := fs.String("kind", "", "db or full (default: full with --data-dir, else db)")
	keyFile := fs.String("master-key-file", "", "storage master key of an encrypted data folder (default $"+encfs.EnvMasterKey+")")
	devKey := fs.Bool("dev-master-key", false, "use the development storage master key kept in the data folder")
	identity := fs.String("identity", "", "backup identity: verify the new backup completely (default: check its trailer only)")
	node := fs.String("node", "", "node name for the object name (default: host name)")
	workDir := fs.String("work-dir", "", "folder for the checkpoint and dump while the archive is written (default: inside --data-dir, else the temp folder)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	var rf recipientFlags
	rf.register(fs, "")
	var sf s3Flags
	sf.register(fs, "")
	fs.Usage = func() {
		fmt.Fprintln(s.err, "usage: legiond backup run "+backupCommands()["run"].usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(s.err, "legiond backup run: "+format+"\n", a...)
		return code
	}
	if fs.NArg() > 0 {
		return fail(exitUsage, "unexpected argument %q", fs.Arg(0))
	}
	url := backupDatabaseURL(*dbURL)
	if url == "" {
		return fail(exitUsage, "no database: pass --database-url or set %s", envBackupDatabaseURL)
	}
	k := backup.Kind(*kind)
	switch {
	case k == "" && *dataDir != "":
		k = backup.KindFull
	case k == "":
		k = backup.KindDatabase
	case !k.Valid():
		return fail(exitUsage, "--kind must be db or full")
	case k == backup.KindFull && *dataDir == "":
		return fail(exitUsage, "a full backup needs --data-dir")
	}
	rcpts, err := rf.load()
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	var ids []age.Identity
	if *identity != "" {
		if ids, err = backup.LoadIdentities(*identity); err != nil {
			return fail(exitUsage, "%v", err)
		}
	}
	dest, err := sf.destination(*to)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	log := slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dumper, err := backup.NewPgDump(backup.PgConfig{DSN: url, Logger: log})
	if err != nil {
		return fail(exitFailure, "%v", err)
	}
	cfg := backup.Config{Kind: k, Database: dumper, Recipients: rcpts, Destination: dest, NodeID: *node, WorkDir: *workDir, Logger: log}
	if k == backup.KindFull {
		_, src, closeStore, err := openTwinStore(*dataDir, *keyFile, *devKey)
		if err != nil {
			return fail(exitFailure, "%v", err)
		}
		defer closeStore()
		cfg.Node = &src
	}
	res, err := backup.Backup(ctx, cfg)
	if err != nil {
		return fail(exitFailure, "%v", err)
	}
	var v backup.Verification
	if len(ids) > 0 {
		v, err = backup.Verify(ctx, dest, res.Name, ids)
	} else {
		v, err = backup.VerifyIntegrity(ctx, dest, res.Name)
	}
	if err != nil {
		return fail(exitFailure, "backup %s written but does not read back: %v", res.Name, err)
	}
	auditErr := appendAuditEntry(ctx, url, "cli:backup", postgres.AuditEntry{
		Action: postgres.AuditBackupCreated, Target: res.Name,
		Details: map[string]any{"kind": k, "bytes": res.Size, "sha256": res.SHA256, "audit_head": res.Manifest.Registry.AuditHead},
	})
	if *asJSON {
		if err := printJSON(s.out, res); err != nil {
			return exitFailure
		}
	} else {
		fmt.Fprintf(s.out, "wrote %s (%d bytes, sha256 %s)\n", res.Name, res.Size, res.SHA256)
		fmt.Fprintf(s.out, "  checkpoint %v, registry dump %v, encrypt+store %v, total %v\n",
			res.Checkpoint.Round(time.Millisecond), res.Dump.Round(time.Millisecond), res.Upload.Round(time.Millisecond), res.Took.Round(time.Millisecond))
		if v.Manifest != nil {
			fmt.Fprintf(s.out, "  verified: decrypted and checked %d files\n", len(v.Manifest.Files))
		} else {
			fmt.Fprintln(s.out, "  read back: length and checksum ok (pass --identity to verify the content)")
		}
		if h := res.Manifest.Registry.AuditHead; h != "" {
			fmt.Fprintf(s.out, "  audit anchor: %s\n", h)
		}
	}
	if auditErr != nil {
		return fail(exitFailure, "backup %s is fine, but recording it in the audit trail failed: %v", res.Name, auditErr)
	}
	return exitOK
}

// resolveName turns "latest" into the newest backup holding what is asked.
func resolveName(ctx context.Context, d backup.Destination, name string, kinds ...backup.Kind) (string, error) {
	if name != "latest" {
		return name, nil
	}
	o, _, err := backup.Latest(ctx, d, kinds...)
	return o.Name, err
}

func runBackupVerify(ctx context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("backup verify", flag.ContinueOnError)
	fs.SetOutput(s.err)
	from := fs.String("from", "", "destination holding the backup (required)")
	identity := fs.String("identity", "", "backup identity file: decrypt and check every file (default: trailer only)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	var sf s3Flags
	sf.register(fs, "")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return exitUsage
	}
	if len(pos) != 1 {
		fmt.Fprintln(s.err, "usage: legiond backup verify "+backupCommands()["verify"].usage)
		return exitUsage
	}
	dest, err := sf.destination(*from)
	if err != nil {
		fmt.Fprintf(s.err, "legiond backup verify: %v\n", err)
		return exitUsage
	}
	name, err := resolveName(ctx, dest, pos[0])
	if err != nil {
		fmt.Fprintf(s.err, "legiond backup verify: %v\n", err)
		return exitFailure
	}
	var v backup.Verification
	if *identity != "" {
		ids, lerr := backup.LoadIdentities(*identity)
		if lerr != nil {
			fmt.Fprintf(s.err, "legiond backup verify: %v\n", lerr)
			return exitUsage
		}
		v, err = backup.Verify(ctx, dest, name, ids)
	} else {
		v, err = backup.VerifyIntegrity(ctx, dest, name)
	}
	if err != nil {
		fmt.Fprintf(s.err, "legiond backup verify: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		if err := printJSON(s.out, v); err != nil {
			return exitFailure
		}
		return exitOK
	}
	fmt.Fprintf(s.out, "%s: ok (%d bytes, sha256 %s)\n", name, v.Size, v.SHA256)
	if m := v.Manifest; m != nil {
		fmt.Fprintf(s.out, "  kind %s, created %s on %s by legiond %s, %d files checked\n", m.Kind, m.CreatedAt.Format(time.RFC3339), m.Node, m.LegiondVersion, len(m.Files))
		if r := m.Registry; r != nil {
			fmt.Fprintf(s.out, "  registry: schema %d, PostgreSQL %s, %d tables, audit anchor %s\n", r.SchemaVersion, r.ServerVersion, len(r.Tables), r.AuditHead)
		}
		if n := m.NodeData; n != nil {
			fmt.Fprintf(s.out, "  node data: pebble schema %d in %s, keystore %q\n", n.PebbleSchema, n.StoreDir, n.KeyStore)
		}
	} else {
		fmt.Fprintln(s.out, "  trailer checked only; pass --identity to decrypt and check the content")
	}
	return exitOK
}

func runBackupList(ctx context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("backup list", flag.ContinueOnError)
	fs.SetOutput(s.err)
	from := fs.String("from", "", "destination (required)")
	asJSON := fs.Bool("json", false, "print JSON")
	var sf s3Flags
	sf.register(fs, "")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return exitUsage
	}
	dest, err := sf.destination(*from)
	if err != nil {
		fmt.Fprintf(s.err, "legiond backup list: %v\n", err)
		return exitUsage
	}
	objs, err := dest.List(ctx, "legiond-")
	if err != nil {
		fmt.Fprintf(s.err, "legiond backup list: %v\n", err)
		return exitFailure
	}
	if *asJSON {
		if objs == nil {
			objs = []backup.Object{}
		}
		if err := printJSON(s.out, objs); err != nil {
			return exitFailure
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tTIME (UTC)\tNODE\tBYTES")
	for _, o := range objs {
		info, ok := backup.ParseObjectName(o.Name)
		if !ok {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", o.Name, info.Kind, info.At.Format(time.RFC3339), info.Node, o.Size)
	}
	if err := tw.Flush(); err != nil {
		return exitFailure
	}
	return exitOK
}

func runBackupPrune(ctx context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("backup prune", flag.ContinueOnError)
	fs.SetOutput(s.err)
	from := fs.String("from", "", "destination (required)")
	def := backup.DefaultRetention()
	daily := fs.Int("keep-daily", def.Daily, "days with a backup to keep one of")
	weekly := fs.Int("keep-weekly", def.Weekly, "ISO weeks with a backup to keep one of")
	monthly := fs.Int("keep-monthly", def.Monthly, "months with a backup to keep one of")
	dry := fs.Bool("dry-run", false, "only print what would be deleted")
	var sf s3Flags
	sf.register(fs, "")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return exitUsage
	}
	r := backup.Retention{Daily: *daily, Weekly: *weekly, Monthly: *monthly}
	if err := r.Validate(); err != nil {
		fmt.Fprintf(s.err, "legiond backup prune: %v\n", err)
		return exitUsage
	}
	dest, err := sf.destination(*from)
	if err != nil {
		fmt.Fprintf(s.err, "legiond backup prune: %v\n", err)
		return exitUsage
	}
	objs, err := dest.List(ctx, "legiond-")
	if err != nil {
		fmt.Fprintf(s.err, "legiond backup prune: %v\n", err)
		return exitFailure
	}
	keep, remove := r.Prune(objs, time.Now())
	code := exitOK
	for _, o := range remove {
		if *dry {
			fmt.Fprintf(s.out, "would delete %s\n", o.Name)
			continue
		}
		if err := dest.Delete(ctx, o.Name); err != nil {
			fmt.Fprintf(s.err, "legiond backup prune: %v\n", err)
			code = exitFailure
			continue
		}
		fmt.Fprintf(s.out, "deleted %s\n", o.Name)
	}
	fmt.Fprintf(s.out, "kept %d backups\n", len(keep))
	return code
}

func runBackupKeygen(_ context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("backup keygen", flag.ContinueOnError)
	fs.SetOutput(s.err)
	out := fs.String("out", "", "identity file to create (required; never overwritten)")
	dev := fs.Bool("dev", false, "mark the identity as DEVELOPMENT ONLY")
	pq := fs.Bool("post-quantum", false, "hybrid ML-KEM-768 + X25519 key (age ≥ v1.3 decrypts it)")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *out == "" {
		fmt.Fprintln(s.err, "usage: legiond backup keygen "+backupCommands()["keygen"].usage)
		return exitUsage
	}
	rcpt, err := backup.WriteIdentityFile(*out, *dev, *pq, time.Now())
	if err != nil {
		fmt.Fprintf(s.err, "legiond backup keygen: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(s.err, "wrote the backup identity to %s: keep it offline, it decrypts every backup.\n", *out)
	fmt.Fprintln(s.err, "configure the node with the public recipient:")
	fmt.Fprintln(s.out, rcpt)
	return exitOK
}

// ---- restore ----

const restoreUsage = `usage: legiond restore --from DEST --name NAME|latest --identity FILE
                       [--data-dir NEW_DIR] [--database-url URL_OF_EMPTY_DB] [--app-password-file F]

Restores a backup into a new (or empty) data folder and/or a new, empty
database, after checking the whole archive. "latest" picks the newest full
backup when --data-dir is given, else the newest backup of any kind.
The database role must be a superuser (or BYPASSRLS with CREATEROLE).
Then: legiond migrate (if this binary is newer), start the node with the
storage master key of the node that made the backup. See
docs/disaster-recovery.md.`

func runRestore(ctx context.Context, args []string, s stdio) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(s.err)
	from := fs.String("from", "", "destination holding the backup (required)")
	name := fs.String("name", "", "backup object name, or latest (required)")
	identity := fs.String("identity", "", "backup identity file (required)")
	dataDir := fs.String("data-dir", "", "new or empty data folder for the node's data")
	dbURL := fs.String("database-url", "", "empty database for the registry, as a superuser (never taken from the environment)")
	pwFile := fs.String("app-password-file", "", "set the "+postgres.AppRole+" password from this file (default $"+envAppPassword+"; none: unchanged)")
	spool := fs.String("spool-dir", "", "folder for the downloaded, still encrypted archive (default: temp folder)")
	var sf s3Flags
	sf.register(fs, "")
	fs.Usage = func() {
		fmt.Fprintln(s.err, restoreUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(s.err, "legiond restore: "+format+"\n", a...)
		return code
	}
	url := *dbURL
	switch {
	case fs.NArg() > 0:
		return fail(exitUsage, "unexpected argument %q", fs.Arg(0))
	case *name == "" || *identity == "":
		return fail(exitUsage, "--name and --identity are required")
	case *dataDir == "" && url == "":
		return fail(exitUsage, "nothing to restore into: give --data-dir, --database-url or both")
	}
	ids, err := backup.LoadIdentities(*identity)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	dest, err := sf.destination(*from)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	pw := os.Getenv(envAppPassword)
	if *pwFile != "" {
		b, err := os.ReadFile(*pwFile)
		if err != nil {
			return fail(exitFailure, "%v", err)
		}
		pw = strings.TrimSpace(string(b))
	}
	log := slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: slog.LevelInfo}))
	target := backup.Target{DataDir: *dataDir, SpoolDir: *spool, Logger: log}
	var kinds []backup.Kind
	if *dataDir != "" {
		kinds = []backup.Kind{backup.KindFull}
	}
	if url != "" {
		pg, err := backup.NewPgDump(backup.PgConfig{DSN: url, AppPassword: pw, Logger: log})
		if err != nil {
			return fail(exitFailure, "%v", err)
		}
		target.Database = pg
	}
	n, err := resolveName(ctx, dest, *name, kinds...)
	if err != nil {
		return fail(exitFailure, "%v", err)
	}
	res, err := backup.Restore(ctx, dest, n, ids, target)
	if err != nil {
		code := fail(exitFailure, "%v", err)
		switch {
		case errors.Is(err, backup.ErrNotEmpty):
			fmt.Fprintln(s.err, "hint: restore into a new data folder and a new database (createdb); nothing was changed")
		case errors.Is(err, backup.ErrWrongKey):
			fmt.Fprintln(s.err, "hint: this archive was made for another backup key; nothing was changed")
		case errors.Is(err, backup.ErrTampered), errors.Is(err, backup.ErrTruncated), errors.Is(err, backup.ErrChecksum):
			fmt.Fprintln(s.err, "hint: this archive is damaged; nothing was changed: restore the previous backup (legiond backup list)")
		}
		return code
	}
	m := res.Manifest
	fmt.Fprintf(s.out, "restored %s (%s backup of %s, made %s by legiond %s)\n", n, m.Kind, m.Node, m.CreatedAt.Format(time.RFC3339), m.LegiondVersion)
	fmt.Fprintf(s.out, "  download %v, verify %v, restore %v, total %v\n",
		res.Download.Round(time.Millisecond), res.Verify.Round(time.Millisecond), res.Restore.Round(time.Millisecond), res.Took.Round(time.Millisecond))
	if url != "" {
		if err := appendAuditEntry(ctx, url, "cli:restore", postgres.AuditEntry{Action: postgres.AuditBackupRestored, Target: n,
			Details: map[string]any{"kind": m.Kind, "created_at": m.CreatedAt, "node": m.Node, "data_dir": *dataDir != ""}}); err != nil {
			return fail(exitFailure, "restored, but recording it in the audit trail failed: %v", err)
		}
		fmt.Fprintf(s.out, "  registry: schema %d; check the audit trail with: legiond audit verify --anchor %s\n", m.Registry.SchemaVersion, m.Registry.AuditHead)
	}
	if m.NodeData != nil && *dataDir != "" {
		if m.NodeData.KeyStore != "" {
			fmt.Fprintf(s.out, "  node data in %s: start the node with the storage master key of %s ($%s or legiond run --storage-master-key-file)\n", *dataDir, m.Node, encfs.EnvMasterKey)
		} else {
			fmt.Fprintf(s.out, "  node data in %s (plaintext store)\n", *dataDir)
		}
	}
	return exitOK
}

// ---- the schedule inside `legiond run` ----

// backupScheduleFlags are the `legiond run` flags of the backup schedule.
// The node runs the scheduler they build (backupsched.go); `legiond dev`
// fills them in itself (devBackupFlags).
type backupScheduleFlags struct {
	to, dbURL, identity string
	dailyAt, weeklyOn   string
	keepD, keepW, keepM int
	rf                  recipientFlags
	sf                  s3Flags
	// clock is the scheduler's clock (tests); nil: the system clock.
	clock backup.Clock
}

func (b *backupScheduleFlags) register(fs *flag.FlagSet) {
	def := backup.DefaultRetention()
	fs.StringVar(&b.to, "backup-to", "", "scheduled backups to file:///path or s3://bucket/prefix (empty: no schedule)")
	fs.StringVar(&b.dbURL, "backup-database-url", "", "registry as the migration role, for pg_dump (default $"+envBackupDatabaseURL+")")
	fs.StringVar(&b.identity, "backup-identity", "", "backup identity, to verify each backup completely (default: the node holds only the public key and checks the trailer)")
	fs.StringVar(&b.dailyAt, "backup-daily-at", "02:00", "time of the daily registry backup (HH:MM, UTC)")
	fs.StringVar(&b.weeklyOn, "backup-weekly-on", "sunday", "day of the weekly full backup (registry and node data)")
	fs.IntVar(&b.keepD, "backup-keep-daily", def.Daily, "retention: days to keep a backup of")
	fs.IntVar(&b.keepW, "backup-keep-weekly", def.Weekly, "retention: weeks to keep a backup of")
	fs.IntVar(&b.keepM, "backup-keep-monthly", def.Monthly, "retention: months to keep a backup of")
	b.rf.register(fs, "backup-")
	b.sf.register(fs, "backup-")
}

// scheduler builds the schedule for a running node whose open twin store
// lives at storeDir (relative to dataDir), with keyStore the encfs
// keystore relative to dataDir ("" for a plaintext store). Every successful
// run is recorded in the audit trail (backup.create) and then handed to
// onRun, when set. It returns nil when --backup-to is not set.
func (b *backupScheduleFlags) scheduler(store backup.PebbleCheckpointer, dataDir, storeDir, keyStore string, log *slog.Logger, onRun func(backup.RunReport)) (*backup.Scheduler, error) {
	if b.to == "" {
		return nil, nil
	}
	url := firstNonEmpty(b.dbURL, os.Getenv(envBackupDatabaseURL))
	if url == "" {
		return nil, errors.New("--backup-to needs --backup-database-url (or $" + envBackupDatabaseURL + "): the application role cannot dump the registry")
	}
	at, err := time.Parse("15:04", b.dailyAt)
	if err != nil {
		return nil, fmt.Errorf("--backup-daily-at %q: want HH:MM", b.dailyAt)
	}
	dailyAt := time.Duration(at.Hour())*time.Hour + time.Duration(at.Minute())*time.Minute
	if dailyAt == 0 {
		dailyAt = 24 * time.Hour // midnight (0 would mean the default)
	}
	day, ok := map[string]time.Weekday{"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
		"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday}[strings.ToLower(b.weeklyOn)]
	if !ok {
		return nil, fmt.Errorf("--backup-weekly-on %q: want a weekday name", b.weeklyOn)
	}
	rcpts, err := b.rf.load()
	if err != nil {
		return nil, err
	}
	var ids []age.Identity
	if b.identity != "" {
		if ids, err = backup.LoadIdentities(b.identity); err != nil {
			return nil, err
		}
	}
	dest, err := b.sf.destination(b.to)
	if err != nil {
		return nil, err
	}
	dumper, err := backup.NewPgDump(backup.PgConfig{DSN: url, Logger: log})
	if err != nil {
		return nil, err
	}
	audit := func(r backup.RunReport) {
		if r.OK() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := appendAuditEntry(ctx, url, "node:backup", postgres.AuditEntry{
				Action: postgres.AuditBackupCreated, Target: r.Result.Name,
				Details: map[string]any{"kind": r.Kind, "bytes": r.Result.Size, "sha256": r.Result.SHA256}}); err != nil && log != nil {
				log.Error("backup not recorded in the audit trail", "name", r.Result.Name, "err", err)
			}
		}
		if onRun != nil {
			onRun(r)
		}
	}
	return backup.NewScheduler(backup.ScheduleConfig{
		Backup: backup.Config{
			Database:    dumper,
			Node:        &backup.NodeSource{Checkpointer: store, DataDir: dataDir, StoreDir: storeDir, KeyStore: keyStore},
			Recipients:  rcpts,
			Destination: dest,
			Logger:      log,
		},
		Identities: ids,
		Retention:  backup.Retention{Daily: b.keepD, Weekly: b.keepW, Monthly: b.keepM},
		DailyAt:    dailyAt,
		WeeklyOn:   day,
		Logger:     log,
		OnRun:      audit,
		Clock:      b.clock,
	})
}
