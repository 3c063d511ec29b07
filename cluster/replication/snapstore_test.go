package replication

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

func writeSnap(t *testing.T, s *snapStore, index uint64, data []byte) string {
	t.Helper()
	sink, err := s.Create(1, index, 2, raft.Configuration{Servers: []raft.Server{{ID: "m1", Address: "a:1"}}}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	return sink.ID()
}

func TestSnapStore(t *testing.T) {
	fs := vfs.NewMem()
	s, err := newSnapStore(fs, "/raft/snapshots", 2)
	if err != nil {
		t.Fatal(err)
	}
	writeSnap(t, s, 10, []byte("ten"))
	writeSnap(t, s, 30, bytes.Repeat([]byte("thirty"), 100000))
	id20 := writeSnap(t, s, 20, []byte("twenty"))

	// A cancelled snapshot and an unfinished one (a crash) are never listed.
	sink, err := s.Create(1, 40, 2, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = sink.Write([]byte("partial"))
	if err := sink.Cancel(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(1, 50, 2, raft.Configuration{}, 1, nil); err != nil {
		t.Fatal(err)
	}

	metas, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(metas) != 2 || metas[0].Index != 30 || metas[1].Index != 20 {
		t.Fatalf("List = %+v, want indexes 30, 20 (10 reaped)", metas)
	}
	meta, rc, err := s.Open(id20)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil || string(got) != "twenty" || meta.Size != 6 || len(meta.Configuration.Servers) != 1 {
		t.Fatalf("Open = %q, %v, meta %+v", got, err, meta)
	}

	// A flipped byte in the state fails the read.
	path := fs.PathJoin("/raft/snapshots", id20, snapStateFile)
	f, err := fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("T"), 0); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	_, rc, err = s.Open(id20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read of a damaged snapshot: %v, want ErrCorrupt", err)
	}
	_ = rc.Close()

	// Reopening clears the unfinished one.
	if _, err := newSnapStore(fs, "/raft/snapshots", 2); err != nil {
		t.Fatal(err)
	}
	names, _ := fs.List("/raft/snapshots")
	if len(names) != 2 {
		t.Fatalf("after reopen: %v", names)
	}
}
