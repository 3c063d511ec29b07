package backup

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/legionelladossier/legiond/storage/pgtest"
	"github.com/legionelladossier/legiond/storage/postgres"
)

const testAppPassword = "legiond-app-backup-test"

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m, pgtest.MainOptions{Template: func(ctx context.Context, dsn string) error {
		_, err := postgres.Migrate(ctx, postgres.MigrateConfig{DSN: dsn, AppPassword: testAppPassword})
		return err
	}}))
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// testKey returns a fresh X25519 identity and its recipient.
func testKey(t testing.TB) (*age.X25519Identity, age.Recipient) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id, id.Recipient()
}

// fakeDumper writes fixed bytes and reports fixed info.
type fakeDumper struct {
	data []byte
	info DumpInfo
	err  error
}

func (f *fakeDumper) Dump(_ context.Context, w io.Writer) (DumpInfo, error) {
	if f.err != nil {
		return DumpInfo{}, f.err
	}
	_, err := w.Write(f.data)
	return f.info, err
}

// fakeCheckpointer writes a few files into the checkpoint folder.
type fakeCheckpointer struct{ files map[string]string }

func (f *fakeCheckpointer) Checkpoint(_ context.Context, dir string) error {
	for name, content := range f.files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			return err
		}
	}
	return nil
}
