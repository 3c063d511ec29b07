package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// fakeS3 starts an in-process S3 server (gofakes3) on 127.0.0.1 with one
// bucket and returns a config for it.
func fakeS3(t *testing.T, bucket string) S3Config {
	t.Helper()
	be := s3mem.New()
	if err := be.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(gofakes3.New(be).Server())
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return S3Config{Endpoint: srv.URL, Bucket: bucket, Prefix: "legiond/node-1", Region: "eu-central-1",
		AccessKey: "test-access", SecretKey: "test-secret", RootCAs: pool, PathStyle: true, PartSize: 5 << 20}
}

// failingReader returns n bytes, then an error.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("source broke")
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	f.n -= len(p)
	return len(p), nil
}

func testDestination(t *testing.T, d Destination) {
	ctx := testCtx(t)
	if objs, err := d.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Fatalf("empty list: %v %v", objs, err)
	}
	small := []byte("hello backup")
	big := make([]byte, 12<<20) // several multipart parts
	_, _ = rand.Read(big)
	if err := d.Put(ctx, "b-big.tar.age", bytes.NewReader(big)); err != nil {
		t.Fatalf("put big: %v", err)
	}
	if err := d.Put(ctx, "a-small.tar.age", bytes.NewReader(small)); err != nil {
		t.Fatalf("put small: %v", err)
	}
	objs, err := d.List(ctx, "")
	if err != nil || len(objs) != 2 || objs[0].Name != "a-small.tar.age" || objs[0].Size != int64(len(small)) ||
		objs[1].Name != "b-big.tar.age" || objs[1].Size != int64(len(big)) {
		t.Fatalf("list: %+v %v", objs, err)
	}
	if objs, _ := d.List(ctx, "b-"); len(objs) != 1 || objs[0].Name != "b-big.tar.age" {
		t.Fatalf("list with prefix: %+v", objs)
	}
	for name, want := range map[string][]byte{"a-small.tar.age": small, "b-big.tar.age": big} {
		rc, err := d.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("get %s: %d bytes, %v", name, len(got), err)
		}
	}
	if _, err := d.Get(ctx, "missing.tar.age"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	// A failed upload leaves nothing behind, small or multipart.
	for _, n := range []int{1000, 7 << 20} {
		if err := d.Put(ctx, "c-broken.tar.age", &failingReader{n: n}); err == nil {
			t.Fatalf("put from a failing reader (%d bytes) succeeded", n)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.Put(cctx, "d-cancelled.tar.age", bytes.NewReader(big)); err == nil {
		t.Fatal("put with a cancelled context succeeded")
	}
	if objs, _ := d.List(ctx, ""); len(objs) != 2 {
		t.Fatalf("after failed puts: %+v", objs)
	}
	if err := d.Put(ctx, "../escape", bytes.NewReader(small)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	if err := d.Delete(ctx, "a-small.tar.age"); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(ctx, "a-small.tar.age"); err != nil {
		t.Fatalf("delete twice: %v", err)
	}
	if objs, _ := d.List(ctx, ""); len(objs) != 1 {
		t.Fatalf("after delete: %+v", objs)
	}
}

func TestLocalDirDestination(t *testing.T) {
	dir := t.TempDir()
	d, err := NewLocalDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	testDestination(t, d)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name()[0] == '.' {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestS3Destination(t *testing.T) {
	cfg := fakeS3(t, "backups")
	d, err := NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	testDestination(t, d)
	// Plain HTTP works too when allowed (a loopback MinIO).
	be := s3mem.New()
	_ = be.CreateBucket("plain")
	plain := httptest.NewServer(gofakes3.New(be).Server())
	defer plain.Close()
	hd, err := NewS3(S3Config{Endpoint: plain.URL, Bucket: "plain", AccessKey: "a", SecretKey: "s", AllowHTTP: true, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := hd.Put(testCtx(t), "x.tar.age", bytes.NewReader([]byte("plain"))); err != nil {
		t.Fatal(err)
	}
	if objs, err := hd.List(testCtx(t), ""); err != nil || len(objs) != 1 || objs[0].Size != 5 {
		t.Fatalf("plain HTTP: %+v %v", objs, err)
	}
	// Another prefix in the same bucket is another destination.
	cfg.Prefix = "legiond/node-2/"
	d2, err := NewS3(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if objs, err := d2.List(testCtx(t), ""); err != nil || len(objs) != 0 {
		t.Fatalf("other prefix: %+v %v", objs, err)
	}
}

func TestS3ConfigValidate(t *testing.T) {
	good := S3Config{Endpoint: "https://s3.eu-central-1.amazonaws.com", Bucket: "b", AccessKey: "a", SecretKey: "s"}
	for _, tc := range []struct {
		name string
		mod  func(c *S3Config)
		ok   bool
	}{
		{"good", func(*S3Config) {}, true},
		{"plain http", func(c *S3Config) { c.Endpoint = "http://127.0.0.1:9000" }, false},
		{"plain http allowed", func(c *S3Config) { c.Endpoint = "http://127.0.0.1:9000"; c.AllowHTTP = true }, true},
		{"path in endpoint", func(c *S3Config) { c.Endpoint = "https://host/bucket" }, false},
		{"no bucket", func(c *S3Config) { c.Bucket = "" }, false},
		{"no keys", func(c *S3Config) { c.SecretKey = "" }, false},
		{"ftp", func(c *S3Config) { c.Endpoint = "ftp://host" }, false},
	} {
		c := good
		tc.mod(&c)
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestOpenDestination(t *testing.T) {
	dir := t.TempDir()
	for _, u := range []string{dir, "file://" + dir} {
		d, err := OpenDestination(u, S3Config{})
		if ld, ok := d.(*LocalDir); err != nil || !ok || ld.Dir() != dir {
			t.Errorf("%s: %T %v", u, d, err)
		}
	}
	cfg := fakeS3(t, "bkt")
	d, err := OpenDestination("s3://bkt/some/prefix", cfg)
	if s, ok := d.(*S3); err != nil || !ok || s.prefix != "some/prefix/" || s.bucket != "bkt" {
		t.Fatalf("s3: %T %v", d, err)
	}
	for _, bad := range []string{"", "ftp://x/y", "file://host/x"} {
		if _, err := OpenDestination(bad, S3Config{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestS3BackupRoundTrip writes, lists, verifies, restores and prunes
// through the S3 destination (registry and checkpoint are fakes here; the
// real ones are covered by TestBackupRestoreRoundTrip).
func TestS3BackupRoundTrip(t *testing.T) {
	ctx := testCtx(t)
	d, err := NewS3(fakeS3(t, "backups"))
	if err != nil {
		t.Fatal(err)
	}
	id, rcpt := testKey(t)
	dataDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dataDir, "storage"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "storage", "STORAGE-KEYS"), []byte("keystore"), 0o600); err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, 6<<20)
	_, _ = rand.Read(payload)
	cp := &fakeCheckpointer{files: map[string]string{"000001.sst": string(payload), "MANIFEST-000001": "m", "sub/OPTIONS": "o"}}
	now := time.Date(2025, 3, 2, 2, 0, 0, 0, time.UTC)
	cfg := Config{
		Database:    &fakeDumper{data: []byte("PGDMP"), info: DumpInfo{Format: dumpFormat, Tables: map[string]int64{"legiond.devices": 3}}},
		Node:        &NodeSource{Checkpointer: cp, DataDir: dataDir, StoreDir: "storage/twins", KeyStore: "storage/STORAGE-KEYS"},
		Recipients:  []age.Recipient{rcpt},
		Destination: d,
		NodeID:      "node-1",
		Now:         func() time.Time { return now },
	}
	res, err := Backup(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Backup(ctx, cfg); !errors.Is(err, ErrExists) {
		t.Fatalf("second backup in the same second: %v", err)
	}
	v, err := Verify(ctx, d, res.Name, []age.Identity{id})
	if err != nil || v.SHA256 != res.SHA256 || len(v.Manifest.Files) != 5 {
		t.Fatalf("verify: %+v %v", v, err)
	}
	obj, info, err := Latest(ctx, d, KindFull)
	if err != nil || obj.Name != res.Name || obj.Size != res.Size || !info.At.Equal(now) {
		t.Fatalf("latest: %+v %+v %v", obj, info, err)
	}
	target := filepath.Join(t.TempDir(), "restored")
	if _, err := Restore(ctx, d, res.Name, []age.Identity{id}, Target{DataDir: target}); err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]string{"storage/twins/000001.sst": string(payload), "storage/twins/sub/OPTIONS": "o", "storage/STORAGE-KEYS": "keystore"} {
		got, err := os.ReadFile(filepath.Join(target, filepath.FromSlash(rel)))
		if err != nil || string(got) != want {
			t.Fatalf("restored %s: %d bytes, %v", rel, len(got), err)
		}
		if st, _ := os.Stat(filepath.Join(target, filepath.FromSlash(rel))); st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", rel, st.Mode().Perm())
		}
	}
	// The work folder inside the data folder is gone.
	if ents, _ := os.ReadDir(dataDir); len(ents) != 1 {
		t.Fatalf("data folder after backup: %v", ents)
	}
}
