package raftstore

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

func openMem(t *testing.T, fs vfs.FS) *Store {
	t.Helper()
	s, err := Open(Config{Dir: "/raft", FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func testLog(i uint64) *raft.Log {
	l := &raft.Log{
		Index: i,
		Term:  1 + i/4,
		Type:  raft.LogCommand,
		Data:  fmt.Appendf(nil, "entry %d", i),
	}
	if i%3 == 0 {
		l.Type = raft.LogConfiguration
		l.Extensions = []byte{byte(i), 0xff}
		l.AppendedAt = time.Unix(1700000000, int64(i)).UTC()
	}
	return l
}

func logs(from, to uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, testLog(i))
	}
	return out
}

func equalLog(a, b *raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type &&
		bytes.Equal(a.Data, b.Data) && bytes.Equal(a.Extensions, b.Extensions) &&
		a.AppendedAt.Equal(b.AppendedAt)
}

func checkRange(t *testing.T, s *Store, first, last uint64) {
	t.Helper()
	f, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if f != first || l != last {
		t.Fatalf("FirstIndex, LastIndex = %d, %d; want %d, %d", f, l, first, last)
	}
}

func TestEmptyStore(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	checkRange(t, s, 0, 0)
	var l raft.Log
	if err := s.GetLog(1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog on empty store: %v, want raft.ErrLogNotFound", err)
	}
}

func TestStoreAndGetLog(t *testing.T) {
	tests := []struct {
		name string
		in   []*raft.Log
	}{
		{"one entry", logs(1, 1)},
		{"a batch", logs(1, 10)},
		{"starting late", logs(100, 120)},
		{"empty data", []*raft.Log{{Index: 1, Term: 1, Type: raft.LogNoop}}},
		{"large data", []*raft.Log{{Index: 7, Term: 3, Data: bytes.Repeat([]byte{0xab}, 1<<20)}}},
		{"extreme index and term", []*raft.Log{{Index: math.MaxUint64, Term: math.MaxUint64, Type: raft.LogBarrier}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openMem(t, vfs.NewMem())
			if len(tt.in) == 1 {
				if err := s.StoreLog(tt.in[0]); err != nil {
					t.Fatal(err)
				}
			} else if err := s.StoreLogs(tt.in); err != nil {
				t.Fatal(err)
			}
			checkRange(t, s, tt.in[0].Index, tt.in[len(tt.in)-1].Index)
			for _, want := range tt.in {
				var got raft.Log
				if err := s.GetLog(want.Index, &got); err != nil {
					t.Fatal(err)
				}
				if !equalLog(&got, want) {
					t.Fatalf("GetLog(%d) = %+v, want %+v", want.Index, got, *want)
				}
			}
		})
	}
}

func TestStoreLogsOverwrites(t *testing.T) {
	// Raft overwrites a conflicting suffix after a leader change.
	s := openMem(t, vfs.NewMem())
	if err := s.StoreLogs(logs(1, 5)); err != nil {
		t.Fatal(err)
	}
	repl := &raft.Log{Index: 4, Term: 9, Data: []byte("new leader")}
	if err := s.StoreLog(repl); err != nil {
		t.Fatal(err)
	}
	var got raft.Log
	if err := s.GetLog(4, &got); err != nil || !equalLog(&got, repl) {
		t.Fatalf("GetLog(4) = %+v, %v", got, err)
	}
}

func TestDeleteRangeInclusive(t *testing.T) {
	tests := []struct {
		name        string
		min, max    uint64
		first, last uint64 // 0, 0: empty
		gone, kept  []uint64
	}{
		{"prefix (log compaction)", 1, 3, 4, 10, []uint64{1, 2, 3}, []uint64{4, 10}},
		{"suffix (conflict removal)", 8, 10, 1, 7, []uint64{8, 9, 10}, []uint64{7}},
		{"single entry", 5, 5, 1, 10, []uint64{5}, []uint64{4, 6}},
		{"middle", 4, 6, 1, 10, []uint64{4, 5, 6}, []uint64{3, 7}},
		{"everything", 1, 10, 0, 0, []uint64{1, 10}, nil},
		{"beyond both ends", 0, math.MaxUint64, 0, 0, []uint64{1, 5, 10}, nil},
		{"min > max is a no-op", 6, 5, 1, 10, nil, []uint64{5, 6}},
		{"outside the stored range", 20, 30, 1, 10, nil, []uint64{1, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openMem(t, vfs.NewMem())
			if err := s.StoreLogs(logs(1, 10)); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteRange(tt.min, tt.max); err != nil {
				t.Fatal(err)
			}
			checkRange(t, s, tt.first, tt.last)
			var l raft.Log
			for _, i := range tt.gone {
				if err := s.GetLog(i, &l); !errors.Is(err, raft.ErrLogNotFound) {
					t.Errorf("GetLog(%d) after DeleteRange(%d, %d): %v, want ErrLogNotFound", i, tt.min, tt.max, err)
				}
			}
			for _, i := range tt.kept {
				if err := s.GetLog(i, &l); err != nil || !equalLog(&l, testLog(i)) {
					t.Errorf("GetLog(%d) after DeleteRange(%d, %d): %+v, %v", i, tt.min, tt.max, l, err)
				}
			}
		})
	}
}

func TestStableStore(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, s *Store)
	}{
		{"set and get", func(t *testing.T, s *Store) {
			if err := s.Set([]byte("LastVoteCand"), []byte("node-2")); err != nil {
				t.Fatal(err)
			}
			v, err := s.Get([]byte("LastVoteCand"))
			if err != nil || string(v) != "node-2" {
				t.Fatalf("Get = %q, %v", v, err)
			}
		}},
		{"overwrite", func(t *testing.T, s *Store) {
			_ = s.Set([]byte("k"), []byte("a"))
			_ = s.Set([]byte("k"), []byte("b"))
			if v, err := s.Get([]byte("k")); err != nil || string(v) != "b" {
				t.Fatalf("Get = %q, %v", v, err)
			}
		}},
		{"empty value is not missing", func(t *testing.T, s *Store) {
			_ = s.Set([]byte("k"), nil)
			if v, err := s.Get([]byte("k")); err != nil || len(v) != 0 {
				t.Fatalf("Get = %q, %v", v, err)
			}
		}},
		{"missing key is exactly \"not found\"", func(t *testing.T, s *Store) {
			_, err := s.Get([]byte("never"))
			if err == nil || err.Error() != "not found" {
				t.Fatalf("Get(missing) = %v, want error text \"not found\"", err)
			}
		}},
		{"missing uint64 is exactly \"not found\"", func(t *testing.T, s *Store) {
			_, err := s.GetUint64([]byte("CurrentTerm"))
			if err == nil || err.Error() != "not found" {
				t.Fatalf("GetUint64(missing) = %v, want error text \"not found\"", err)
			}
		}},
		{"uint64 round trip", func(t *testing.T, s *Store) {
			for _, v := range []uint64{0, 1, 1 << 40, math.MaxUint64} {
				if err := s.SetUint64([]byte("CurrentTerm"), v); err != nil {
					t.Fatal(err)
				}
				if got, err := s.GetUint64([]byte("CurrentTerm")); err != nil || got != v {
					t.Fatalf("GetUint64 = %d, %v; want %d", got, err, v)
				}
			}
		}},
		{"uint64 of a non-uint64 value is corrupt", func(t *testing.T, s *Store) {
			_ = s.Set([]byte("k"), []byte("abc"))
			if _, err := s.GetUint64([]byte("k")); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("GetUint64 = %v, want ErrCorrupt", err)
			}
		}},
		{"stable keys do not touch the log", func(t *testing.T, s *Store) {
			_ = s.Set([]byte("\x00\x00\x00\x00\x00\x00\x00\x01"), []byte("x"))
			_ = s.SetUint64([]byte("l"), 3)
			checkRange(t, s, 0, 0)
		}},
		{"returned value is a copy", func(t *testing.T, s *Store) {
			_ = s.Set([]byte("k"), []byte("abc"))
			v, _ := s.Get([]byte("k"))
			v[0] = 'x'
			if w, _ := s.Get([]byte("k")); string(w) != "abc" {
				t.Fatalf("stored value changed through a returned slice: %q", w)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, openMem(t, vfs.NewMem())) })
	}
}

func TestReopenDurability(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(logs(1, 50)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, 20); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.LastIndex(); !errors.Is(err, ErrClosed) {
		t.Fatalf("LastIndex after Close: %v, want ErrClosed", err)
	}

	s, err = Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkRange(t, s, 21, 50)
	var l raft.Log
	for i := uint64(21); i <= 50; i++ {
		if err := s.GetLog(i, &l); err != nil || !equalLog(&l, testLog(i)) {
			t.Fatalf("GetLog(%d) after reopen = %+v, %v", i, l, err)
		}
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
		t.Fatalf("GetUint64 after reopen = %d, %v", v, err)
	}
}

// TestCrashSyncedSurvive simulates power loss right after a stream of writes:
// every write returned, so every write was synced, and the crashed copy must
// hold all of them whatever part of the unsynced data the crash keeps.
func TestCrashSyncedSurvive(t *testing.T) {
	for _, unsynced := range []int{0, 50, 100} {
		t.Run(fmt.Sprintf("keep %d%% of unsynced data", unsynced), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			s, err := Open(Config{Dir: "/raft", FS: fs})
			if err != nil {
				t.Fatal(err)
			}
			const n = 300
			for i := uint64(1); i <= n; i += 10 {
				if err := s.StoreLogs(logs(i, i+9)); err != nil {
					t.Fatal(err)
				}
				if err := s.SetUint64([]byte("CurrentTerm"), i); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.DeleteRange(1, 100); err != nil {
				t.Fatal(err)
			}
			if err := s.Set([]byte("LastVoteCand"), []byte("node-3")); err != nil {
				t.Fatal(err)
			}
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: unsynced, RNG: rand.New(rand.NewPCG(uint64(unsynced), 1))})
			_ = s.Close()

			r, err := Open(Config{Dir: "/raft", FS: crashed})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			checkRange(t, r, 101, n)
			var l raft.Log
			for i := uint64(101); i <= n; i++ {
				if err := r.GetLog(i, &l); err != nil || !equalLog(&l, testLog(i)) {
					t.Fatalf("entry %d lost in the crash: %+v, %v", i, l, err)
				}
			}
			if v, err := r.GetUint64([]byte("CurrentTerm")); err != nil || v != n-9 {
				t.Fatalf("CurrentTerm after crash = %d, %v; want %d", v, err, n-9)
			}
			if v, err := r.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-3" {
				t.Fatalf("LastVoteCand after crash = %q, %v", v, err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"minimal", Config{Dir: "/d"}, true},
		{"no dir", Config{}, false},
		{"negative cache", Config{Dir: "/d", CacheSize: -1}, false},
		{"huge memtable", Config{Dir: "/d", MemTableSize: 4 << 30}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestDecodeLogCorrupt(t *testing.T) {
	good := appendLog(nil, testLog(3))
	tests := []struct {
		name string
		v    []byte
	}{
		{"empty", nil},
		{"unknown format", append([]byte{9}, good[1:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing garbage", append(append([]byte{}, good...), 0)},
		{"huge data length", []byte{logFormatV1, 0, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l raft.Log
			if err := decodeLog(tt.v, &l); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeLog = %v, want ErrCorrupt", err)
			}
		})
	}
}

func FuzzDecodeLog(f *testing.F) {
	for i := uint64(1); i < 5; i++ {
		f.Add(appendLog(nil, testLog(i)))
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, v []byte) {
		var l raft.Log
		if err := decodeLog(v, &l); err != nil {
			return
		}
		// Whatever decodes survives a re-encoding unchanged (the bytes may
		// differ: a varint can be padded).
		var again raft.Log
		if err := decodeLog(appendLog(nil, &l), &again); err != nil || !equalLog(&again, &l) {
			t.Fatalf("re-encoding %x: %+v, %v; want %+v", v, again, err, l)
		}
	})
}
