package replication

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
)

func assignLog(index, expected uint64, owners ...string) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: encodeAssignCommand(expected, owners)}
}

func assignStatus(t *testing.T, r any) Status {
	t.Helper()
	res, ok := r.(*applyResult)
	if !ok || res.err != nil || len(res.responses) != 1 {
		t.Fatalf("apply result %#v", r)
	}
	return res.responses[0].Status
}

// The assignment is compare-and-set on its epoch, survives a reopen of the
// store (meta) and travels in snapshots.
func TestFSMAssignment(t *testing.T) {
	s := memStateStore(t)
	box := newAssignBox()
	f, err := newFSM(t.Context(), s, testLogger(), 10, nil, box)
	if err != nil {
		t.Fatal(err)
	}
	changed := box.wait()
	out := f.ApplyBatch([]*raft.Log{
		assignLog(1, 0, "a", "b", "a"),
		assignLog(2, 0, "b", "b", "b"), // computed from epoch 0 too: stale
		cmdLog(t, 3, Batch{Offsets: []Offset{uplink(0, 7)}}),
		assignLog(4, 1, "a", "", "c"),
	})
	for i, want := range []Status{StatusApplied, StatusStale, 0, StatusApplied} {
		if want != 0 {
			if got := assignStatus(t, out[i]); got != want {
				t.Errorf("log %d: %s, want %s", i+1, got, want)
			}
		}
	}
	select {
	case <-changed:
	default:
		t.Fatal("assignment change not signalled")
	}
	want := Assignment{Epoch: 2, Owners: []string{"a", "", "c"}}
	if got := box.get(); got.Epoch != want.Epoch || !slices.Equal(got.Owners, want.Owners) {
		t.Fatalf("assignment %+v, want %+v", got, want)
	}
	if got := box.get().Owned("a"); !slices.Equal(got, []int{0}) {
		t.Errorf("Owned(a) = %v", got)
	}

	// Reopen over the same store: the meta carries it.
	box2 := newAssignBox()
	if _, err := newFSM(t.Context(), s, testLogger(), 10, nil, box2); err != nil {
		t.Fatal(err)
	}
	if got := box2.get(); got.Epoch != 2 || !slices.Equal(got.Owners, want.Owners) {
		t.Fatalf("reopened assignment %+v", got)
	}

	// A snapshot restores it on another member.
	snap := persist(t, f, nil)
	box3 := newAssignBox()
	g, err := newFSM(t.Context(), memStateStore(t), testLogger(), 10, nil, box3)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if got := box3.get(); got.Epoch != 2 || !slices.Equal(got.Owners, want.Owners) {
		t.Fatalf("restored assignment %+v", got)
	}
}

func TestAssignCommandDecode(t *testing.T) {
	good := encodeAssignCommand(3, []string{"n1", "n2"})
	if e, o, err := decodeAssignCommand(good); err != nil || e != 3 || !slices.Equal(o, []string{"n1", "n2"}) {
		t.Fatalf("decode = %d %v %v", e, o, err)
	}
	for name, data := range map[string][]byte{
		"truncated": good[:len(good)-1],
		"trailing":  append(bytes.Clone(good), 0),
		"version":   append([]byte{'L', 'A', 9}, good[3:]...),
		"empty":     encodeAssignCommand(0, nil),
	} {
		if _, _, err := decodeAssignCommand(data); !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: err = %v", name, err)
		}
		if err := checkCommand(data); err == nil {
			t.Errorf("%s: checkCommand accepted it", name)
		}
	}
}

func FuzzDecodeAssignCommand(f *testing.F) {
	f.Add(encodeAssignCommand(1, []string{"a", "b"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, owners, err := decodeAssignCommand(data)
		if err != nil {
			return
		}
		e2, owners2, err := decodeAssignCommand(encodeAssignCommand(e, owners))
		if err != nil || e2 != e || !slices.Equal(owners, owners2) {
			t.Fatalf("round trip: %d %v %v", e2, owners2, err)
		}
	})
}
