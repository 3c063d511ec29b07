package pgserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Errors returned by this package.
var (
	// ErrNoBinaries means no PostgreSQL server binaries were found.
	ErrNoBinaries = errors.New("pgserver: PostgreSQL server binaries not found (run scripts/ensure-postgres.sh as root, set PG_BINDIR, or set DATABASE_URL)")
	// ErrStart means the server did not start or did not become ready.
	ErrStart = errors.New("pgserver: server did not start")
)

// Superuser is the name of the bootstrap superuser of a private server.
const Superuser = "postgres"

// Config describes a private server. The zero value is usable.
type Config struct {
	// BinDir holds initdb and postgres. Default: $PG_BINDIR, else the
	// newest /usr/lib/postgresql/*/bin, else the folder of initdb in PATH.
	BinDir string
	// DataDir is the cluster folder. Default "": a fresh temporary folder
	// that Stop removes. When set, the folder is kept, and reused when it
	// already holds a cluster (its password is kept in DataDir/../).
	DataDir string
	// Port is the TCP port on 127.0.0.1. Default 0: no TCP listener, only
	// the unix socket (no port clashes between concurrent test runs).
	Port int
	// RunAs is the account the server runs as when the caller is root.
	// Default "postgres", falling back to "nobody".
	RunAs string
	// StartTimeout bounds initdb plus start-up. Default 90s.
	StartTimeout time.Duration
	// Durable keeps fsync on. Default false: fsync, synchronous_commit and
	// full_page_writes are off, which is right for throw-away servers.
	Durable bool
	// Settings are extra server settings (-c name=value).
	Settings map[string]string
	// Logger receives start/stop messages. Default: discard.
	Logger *slog.Logger
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.StartTimeout == 0 {
		out.StartTimeout = 90 * time.Second
	}
	if out.RunAs == "" {
		out.RunAs = "postgres"
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	return out
}

// Validate reports an invalid configuration.
func (c *Config) Validate() error {
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("pgserver: port %d out of range", c.Port)
	}
	if c.StartTimeout < 0 {
		return errors.New("pgserver: negative start timeout")
	}
	return nil
}

// Server is a running PostgreSQL server: private (started by Start) or
// external (wrapped by External).
type Server struct {
	cfg      Config
	external *url.URL // set for external servers

	base     string // folder holding data/, sock/, password, log
	tempBase bool   // base is ours to remove
	dataDir  string
	sockDir  string
	password string
	logPath  string

	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error

	stopOnce sync.Once
	stopErr  error
}

// External wraps an existing server reached through dsn (URL form). The
// role in dsn is used for administration (CREATE DATABASE and the like).
// Stop does nothing to the server.
func External(dsn string) (*Server, error) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("pgserver: external DSN must be a postgres:// URL")
	}
	return &Server{external: u}, nil
}

// FindBinDir returns the folder with the PostgreSQL server binaries.
func FindBinDir() (string, error) {
	if d := os.Getenv("PG_BINDIR"); d != "" {
		if isExec(filepath.Join(d, "initdb")) {
			return d, nil
		}
		return "", fmt.Errorf("%w: PG_BINDIR=%s has no initdb", ErrNoBinaries, d)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", ErrNoBinaries
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Start initialises (when needed) and starts a private server, and waits
// until it accepts connections.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.BinDir == "" {
		d, err := FindBinDir()
		if err != nil {
			return nil, err
		}
		cfg.BinDir = d
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()

	s := &Server{cfg: cfg, exited: make(chan struct{})}
	if cfg.DataDir == "" {
		base, err := os.MkdirTemp("", "legiond-pg-")
		if err != nil {
			return nil, fmt.Errorf("pgserver: temp dir: %w", err)
		}
		s.base, s.tempBase = base, true
		s.dataDir = filepath.Join(base, "data")
	} else {
		abs, err := filepath.Abs(cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("pgserver: data dir: %w", err)
		}
		s.dataDir = abs
		s.base = filepath.Dir(abs)
		if err := os.MkdirAll(s.base, 0o755); err != nil {
			return nil, fmt.Errorf("pgserver: data dir parent: %w", err)
		}
	}
	s.sockDir = filepath.Join(s.base, "sock")
	s.logPath = filepath.Join(s.base, "postgres.log")

	cred, err := credentialFor(cfg.RunAs)
	if err != nil {
		s.cleanup()
		return nil, err
	}
	if err := checkTraversable(cred, s.base); err != nil {
		s.cleanup()
		return nil, err
	}
	if err := s.prepare(ctx, cred); err != nil {
		s.cleanup()
		return nil, err
	}
	if err := s.launch(cred); err != nil {
		s.cleanup()
		return nil, err
	}
	if err := s.waitReady(ctx); err != nil {
		_ = s.Stop()
		return nil, err
	}
	cfg.Logger.Info("private postgres started", "data_dir", s.dataDir, "socket_dir", s.sockDir, "port", cfg.Port)
	return s, nil
}

// credentialFor returns the credential to run the server with, or nil
// when the caller is not root.
func credentialFor(name string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, n := range []string{name, "nobody"} {
		u, err := user.Lookup(n)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
	}
	return nil, fmt.Errorf("pgserver: running as root and neither %q nor \"nobody\" exists to run the server", name)
}

// checkTraversable fails clearly when the server's account could not reach
// dir because an ancestor folder is closed to others.
func checkTraversable(cred *syscall.Credential, dir string) error {
	if cred == nil {
		return nil
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("pgserver: %w", err)
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != cred.Uid && st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("pgserver: folder %s is not accessible to the server's account (uid %d); chmod o+x it or choose another data folder", d, cred.Uid)
		}
		if d == "/" || d == "." {
			return nil
		}
	}
}

func (s *Server) chown(cred *syscall.Credential, paths ...string) error {
	if cred == nil {
		return nil
	}
	for _, p := range paths {
		if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("pgserver: chown %s: %w", p, err)
		}
	}
	return nil
}

// prepare creates the folders, the password and, when missing, the cluster.
func (s *Server) prepare(ctx context.Context, cred *syscall.Credential) error {
	pwPath := filepath.Join(s.base, "superuser.password")
	if err := os.MkdirAll(s.sockDir, 0o700); err != nil {
		return fmt.Errorf("pgserver: socket dir: %w", err)
	}
	if err := s.chown(cred, s.sockDir); err != nil {
		return err
	}
	if s.tempBase {
		if err := os.Chmod(s.base, 0o711); err != nil {
			return fmt.Errorf("pgserver: chmod: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(s.dataDir, "PG_VERSION")); err == nil {
		pw, err := os.ReadFile(pwPath)
		if err != nil {
			return fmt.Errorf("pgserver: existing cluster in %s but no password file: %w", s.dataDir, err)
		}
		s.password = strings.TrimSpace(string(pw))
		return nil
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("pgserver: password: %w", err)
	}
	s.password = hex.EncodeToString(b[:])
	if err := os.WriteFile(pwPath, []byte(s.password+"\n"), 0o600); err != nil {
		return fmt.Errorf("pgserver: password file: %w", err)
	}
	if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
		return fmt.Errorf("pgserver: data dir: %w", err)
	}
	if err := s.chown(cred, pwPath, s.dataDir); err != nil {
		return err
	}
	args := []string{
		"-D", s.dataDir, "-U", Superuser, "--pwfile=" + pwPath,
		"--auth=scram-sha-256", "--locale=C", "--encoding=UTF8", "--no-instructions",
	}
	if !s.cfg.Durable {
		args = append(args, "--no-sync")
	}
	cmd := exec.CommandContext(ctx, filepath.Join(s.cfg.BinDir, "initdb"), args...)
	cmd.Env = childEnv()
	cmd.Dir = s.base
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: initdb: %w\n%s", ErrStart, err, tail(out, 2000))
	}
	return nil
}

func childEnv() []string {
	return []string{"LC_ALL=C", "LANG=C", "TZ=UTC", "PATH=/usr/local/bin:/usr/bin:/bin"}
}

func (s *Server) launch(cred *syscall.Credential) error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgserver: log file: %w", err)
	}
	settings := map[string]string{
		"listen_addresses":        "",
		"unix_socket_directories": s.sockDir,
		"unix_socket_permissions": "0700",
		"port":                    "5432",
		"max_connections":         "200",
		"shared_buffers":          "64MB",
		"log_min_messages":        "warning",
		"timezone":                "UTC",
	}
	if s.cfg.Port > 0 {
		settings["listen_addresses"] = "127.0.0.1"
		settings["port"] = strconv.Itoa(s.cfg.Port)
	}
	if !s.cfg.Durable {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range s.cfg.Settings {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := []string{"-D", s.dataDir}
	for _, k := range keys {
		args = append(args, "-c", k+"="+settings[k])
	}
	cmd := exec.Command(filepath.Join(s.cfg.BinDir, "postgres"), args...)
	cmd.Env = childEnv()
	cmd.Dir = s.base
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Setpgid keeps a terminal's ^C away from the server (Stop shuts it
	// down); Pdeathsig stops it if this process dies without calling Stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("%w: %w", ErrStart, err)
	}
	s.cmd = cmd
	go func() {
		s.exitErr = cmd.Wait()
		_ = logf.Close()
		close(s.exited)
	}()
	return nil
}

// waitReady polls with a connection attempt until the server answers, the
// process exits, or ctx ends.
func (s *Server) waitReady(ctx context.Context) error {
	backoff := 20 * time.Millisecond
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, s.DSN("postgres"))
		if err == nil {
			err = conn.Ping(cctx)
			_ = conn.Close(context.Background())
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		t := time.NewTimer(backoff)
		select {
		case <-s.exited:
			t.Stop()
			return fmt.Errorf("%w: postgres exited (%w); log:\n%s", ErrStart, s.exitErr, s.logTail())
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: not ready in time (last error: %w); log:\n%s", ErrStart, last, s.logTail())
		case <-t.C:
		}
		if backoff < 250*time.Millisecond {
			backoff *= 2
		}
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	return tail(b, 4000)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Stop shuts a private server down (fast shutdown, then kill after 30s)
// and removes a temporary data folder. It is safe to call more than once.
// It does nothing for an external server.
func (s *Server) Stop() error {
	if s.external != nil {
		return nil
	}
	s.stopOnce.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			_ = s.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-s.exited:
			case <-time.After(30 * time.Second):
				_ = s.cmd.Process.Kill()
				<-s.exited
				s.stopErr = fmt.Errorf("pgserver: server did not stop in 30s; killed")
			}
		}
		s.cleanup()
		s.cfg.Logger.Info("private postgres stopped", "data_dir", s.dataDir)
	})
	return s.stopErr
}

func (s *Server) cleanup() {
	if s.tempBase && s.base != "" {
		_ = os.RemoveAll(s.base)
	}
}

// Private reports whether the server was started by this package.
func (s *Server) Private() bool { return s.external == nil }

// DataDir returns the cluster folder of a private server ("" if external).
func (s *Server) DataDir() string { return s.dataDir }

// LogPath returns the server log of a private server ("" if external).
func (s *Server) LogPath() string { return s.logPath }

// DSN returns an administrative (superuser for private servers) URL for
// the given database.
func (s *Server) DSN(database string) string {
	if s.external != nil {
		u := *s.external
		u.Path = "/" + database
		return u.String()
	}
	return s.UserDSN(database, Superuser, s.password)
}

// UserDSN returns a URL for database as user with password.
func (s *Server) UserDSN(database, user, password string) string {
	if s.external != nil {
		u := *s.external
		u.Path = "/" + database
		u.User = url.UserPassword(user, password)
		return u.String()
	}
	q := url.Values{}
	port := "5432"
	if s.cfg.Port > 0 {
		port = strconv.Itoa(s.cfg.Port)
	}
	q.Set("host", s.sockDir)
	q.Set("port", port)
	q.Set("sslmode", "disable")
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Path: "/" + database, RawQuery: q.Encode()}
	return u.String()
}

// TCPDSN returns a URL over TCP (only when Config.Port was set).
func (s *Server) TCPDSN(database string) (string, error) {
	if s.external != nil || s.cfg.Port == 0 {
		return "", errors.New("pgserver: server has no TCP listener of its own")
	}
	u := url.URL{
		Scheme: "postgres", User: url.UserPassword(Superuser, s.password),
		Host: "127.0.0.1:" + strconv.Itoa(s.cfg.Port), Path: "/" + database, RawQuery: "sslmode=disable",
	}
	return u.String(), nil
}

// maintenanceDB is the database administrative statements run in.
func (s *Server) maintenanceDB() string {
	if s.external != nil {
		if db := strings.TrimPrefix(s.external.Path, "/"); db != "" {
			return db
		}
	}
	return "postgres"
}

// Exec runs statements in the maintenance database as the admin role.
func (s *Server) Exec(ctx context.Context, sql string, args ...any) error {
	conn, err := pgx.Connect(ctx, s.DSN(s.maintenanceDB()))
	if err != nil {
		return fmt.Errorf("pgserver: connect: %w", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("pgserver: %w", err)
	}
	return nil
}

// CreateDatabase creates database name, copied from template when set.
func (s *Server) CreateDatabase(ctx context.Context, name, template string) error {
	q := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		q += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if err := s.Exec(ctx, q); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// DropDatabase drops database name, disconnecting its sessions.
func (s *Server) DropDatabase(ctx context.Context, name string) error {
	if err := s.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}
