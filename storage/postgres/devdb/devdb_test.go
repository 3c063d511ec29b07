package devdb

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/legionelladossier/legiond/storage/postgres"
)

// TestStartTwiceKeepsData starts the private development registry, writes,
// stops, starts again on the same folder and reads back.
func TestStartTwiceKeepsData(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Not t.TempDir: its parent is closed to others, and the server runs
	// as "postgres" when tests run as root.
	tmp, err := os.MkdirTemp("", "devdb-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "dev")
	env := func(string) string { return "" }
	db, err := Start(ctx, Config{Dir: dir, Getenv: env})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(filepath.Base(db.MasterKeyPath), "DEVELOPMENT") {
		t.Errorf("dev master key path %q", db.MasterKeyPath)
	}
	st, err := db.Open(ctx, nil)
	if err != nil {
		_ = db.Stop()
		t.Fatal(err)
	}
	var id string
	err = st.InTx(ctx, postgres.PlatformScope("test"), func(tx *postgres.Tx) error {
		p, err := tx.Partners().Create(ctx, postgres.NewPartner{Name: "kept"})
		id = p.ID.String()
		return err
	})
	st.Close()
	if err := db.Stop(); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "database-url")); err != nil || !strings.Contains(string(b), postgres.AppRole) {
		t.Fatalf("database-url file: %q %v", b, err)
	}

	db, err = Start(ctx, Config{Dir: dir, Getenv: env})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Stop()
	st, err = db.Open(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.InTx(ctx, postgres.PlatformScope("test"), func(tx *postgres.Tx) error {
		ps, err := tx.Partners().List(ctx, postgres.ListOptions{})
		if err == nil && (len(ps) != 1 || ps[0].ID.String() != id) {
			t.Errorf("partners after restart: %+v", ps)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
