package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDevDemoShowsAlarms runs `legiond dev` (what `make run` starts) with a
// smaller fleet and waits until its live view has shown alarms of at least
// four types, as a newcomer would see within a minute.
func TestDevDemoShowsAlarms(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The private PostgreSQL server runs as an unprivileged account when the
	// tests run as root: it must be able to reach its folder.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	pr, pw := io.Pipe()
	var errBuf syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- dispatch(ctx, []string{"dev", "--data-dir", dir, "--api", "127.0.0.1:0", "--metrics", "",
			"--sensors", "80", "--gateways", "4", "--history", "120h"}, stdio{in: strings.NewReader(""), out: pw, err: &errBuf})
		_ = pw.Close()
	}()
	types := map[string]bool{}
	sawTokens := false
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "$LEGIOND_TOKEN_PLATFORM_ADMIN") {
			sawTokens = true
		}
		if f := strings.Fields(line); len(f) >= 5 && (f[4] == "ACTIVE_UNACK") {
			types[f[3]] = true
		}
		if len(types) >= 4 {
			break
		}
	}
	cancel()
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if code := <-done; code != exitOK && len(types) < 4 {
		t.Fatalf("legiond dev exited %d: %s", code, errBuf.String())
	}
	if !sawTokens {
		t.Error("the demo did not print the development tokens")
	}
	if len(types) < 4 {
		t.Fatalf("alarm types seen: %v; want at least four", types)
	}
	// The twin store is encrypted under the development storage key, and
	// backups go to the development backup identity.
	for _, f := range []string{filepath.Join("storage", "STORAGE-KEYS"), filepath.Join("storage", "twins"), devBackupIdentityFile, "backups"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("legiond dev made no %s: %v", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, plainTwinDir)); err == nil {
		t.Errorf("legiond dev made an unencrypted %s", plainTwinDir)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
