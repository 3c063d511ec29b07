package watermark

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// op is one step of a table test: fetch or complete an offset, then check
// the committable offset.
type op struct {
	fetch    bool
	offset   int64
	wantErr  error
	wantAdv  bool
	wantComm int64 // -1: not committable
}

func f(off int64) op { return op{fetch: true, offset: off, wantComm: -2} }
func c(off int64, adv bool, comm int64) op {
	return op{offset: off, wantAdv: adv, wantComm: comm}
}

func TestTrackerTable(t *testing.T) {
	tests := []struct {
		name  string
		limit int
		start int64
		ops   []op
	}{
		{
			name: "in order", limit: 4, start: 10,
			ops: []op{f(10), f(11), f(12), c(10, true, 11), c(11, true, 12), c(12, true, 13)},
		},
		{
			name: "out of order holds at first incomplete", limit: 4, start: 0,
			ops: []op{f(0), f(1), f(2), c(2, false, 0), c(1, false, 0), c(0, true, 3)},
		},
		{
			name: "gaps in offsets", limit: 4, start: 5,
			ops: []op{f(7), f(9), f(20), c(9, false, 7), c(7, true, 20), c(20, true, 21)},
		},
		{
			name: "unknown start becomes known at first fetch", limit: 2, start: -2,
			ops: []op{f(42), c(42, true, 43)},
		},
		{
			name: "full window refuses", limit: 2, start: 0,
			ops: []op{f(0), f(1), {fetch: true, offset: 2, wantErr: ErrFull, wantComm: 0},
				c(1, false, 0), {fetch: true, offset: 2, wantErr: ErrFull, wantComm: 0},
				c(0, true, 2), f(2), f(3)},
		},
		{
			name: "out of order fetch", limit: 4, start: 0,
			ops: []op{f(3), {fetch: true, offset: 3, wantErr: ErrOutOfOrder, wantComm: 3},
				{fetch: true, offset: 1, wantErr: ErrOutOfOrder, wantComm: 3}},
		},
		{
			name: "fetch before start", limit: 4, start: 10,
			ops: []op{{fetch: true, offset: 9, wantErr: ErrOutOfOrder, wantComm: 10}, f(10)},
		},
		{
			name: "negative fetch", limit: 4, start: 0,
			ops: []op{{fetch: true, offset: -1, wantErr: ErrNegativeOffset, wantComm: 0}},
		},
		{
			name: "double complete", limit: 4, start: 0,
			ops: []op{f(0), f(1), c(1, false, 0),
				{offset: 1, wantErr: ErrAlreadyComplete, wantComm: 0},
				c(0, true, 2),
				{offset: 0, wantErr: ErrNotInFlight, wantComm: 2}},
		},
		{
			name: "complete never fetched", limit: 4, start: 0,
			ops: []op{{offset: 0, wantErr: ErrNotInFlight, wantComm: 0}, f(0), {offset: 5, wantErr: ErrNotInFlight, wantComm: 0}},
		},
		{
			name: "unknown start not committable", limit: 4, start: -1,
			ops: []op{{offset: 0, wantErr: ErrNotInFlight, wantComm: -1}},
		},
		{
			name: "ring wraps", limit: 3, start: 0,
			ops: []op{f(0), f(1), f(2), c(0, true, 1), f(3), c(2, false, 1), c(1, true, 3),
				f(4), f(5), c(4, false, 3), c(3, true, 5), c(5, true, 6)},
		},
		{
			name: "zero limit acts as one", limit: 0, start: 0,
			ops: []op{f(0), {fetch: true, offset: 1, wantErr: ErrFull, wantComm: 0}, c(0, true, 1), f(1)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := New(tt.limit, tt.start)
			for i, o := range tt.ops {
				var err error
				var adv bool
				if o.fetch {
					err = tr.Fetch(o.offset)
				} else {
					adv, err = tr.Complete(o.offset)
				}
				if !errors.Is(err, o.wantErr) {
					t.Fatalf("op %d (%+v): err %v, want %v", i, o, err, o.wantErr)
				}
				if adv != o.wantAdv {
					t.Fatalf("op %d (%+v): advanced %v, want %v", i, o, adv, o.wantAdv)
				}
				if o.wantComm == -2 {
					continue
				}
				got, ok := tr.Committable()
				if o.wantComm == -1 {
					if ok {
						t.Fatalf("op %d: committable %d, want none", i, got)
					}
					continue
				}
				if !ok || got != o.wantComm {
					t.Fatalf("op %d (%+v): committable %d,%v want %d", i, o, got, ok, o.wantComm)
				}
			}
		})
	}
}

func TestTrackerCounters(t *testing.T) {
	tr := New(8, 0)
	for o := range int64(5) {
		if err := tr.Fetch(o); err != nil {
			t.Fatal(err)
		}
	}
	if tr.Len() != 5 || tr.Pending() != 5 || tr.Full() || tr.Limit() != 8 || tr.Last() != 4 {
		t.Fatalf("after fetch: len %d pending %d full %v limit %d last %d", tr.Len(), tr.Pending(), tr.Full(), tr.Limit(), tr.Last())
	}
	mustComplete(t, tr, 3)
	if tr.Len() != 5 || tr.Pending() != 4 {
		t.Fatalf("after complete 3: len %d pending %d", tr.Len(), tr.Pending())
	}
	mustComplete(t, tr, 0)
	if tr.Len() != 4 || tr.Pending() != 3 {
		t.Fatalf("after complete 0: len %d pending %d", tr.Len(), tr.Pending())
	}
	tr.Reset(100)
	if got, ok := tr.Committable(); !ok || got != 100 || tr.Len() != 0 || tr.Pending() != 0 || tr.Last() != -1 {
		t.Fatalf("after reset: committable %d,%v len %d", got, ok, tr.Len())
	}
}

func mustComplete(t *testing.T, tr *Tracker, off int64) {
	t.Helper()
	if _, err := tr.Complete(off); err != nil {
		t.Fatalf("complete %d: %v", off, err)
	}
}

// model is the obviously-correct reference: sets of fetched and completed
// offsets.
type model struct {
	start     int64
	fetched   []int64
	completed map[int64]bool
}

func (m *model) committable() (int64, bool) {
	for _, o := range m.fetched {
		if !m.completed[o] {
			return o, true
		}
	}
	if len(m.fetched) > 0 {
		return m.fetched[len(m.fetched)-1] + 1, true
	}
	return m.start, m.start >= 0
}

func (m *model) window() int {
	c, _ := m.committable()
	n := 0
	for _, o := range m.fetched {
		if o >= c {
			n++
		}
	}
	return n
}

// check compares the tracker with the model and asserts the safety
// property: the committable offset never passes an incomplete record.
func check(t *testing.T, tr *Tracker, m *model) {
	t.Helper()
	got, ok := tr.Committable()
	want, wok := m.committable()
	if got != want || ok != wok {
		t.Fatalf("committable %d,%v; model %d,%v", got, ok, want, wok)
	}
	for _, o := range m.fetched {
		if !m.completed[o] && ok && got > o {
			t.Fatalf("committable %d passes incomplete offset %d", got, o)
		}
	}
	if tr.Len() != m.window() {
		t.Fatalf("window %d; model %d", tr.Len(), m.window())
	}
}

// run drives a tracker and the model with random operations from rng and
// returns the tracker after completing everything.
func run(t *testing.T, rng *rand.Rand, limit, steps int) {
	start := int64(rng.IntN(100))
	tr := New(limit, start)
	m := &model{start: start, completed: map[int64]bool{}}
	next := start
	var incomplete []int64
	for range steps {
		if rng.IntN(2) == 0 {
			next += int64(rng.IntN(3)) // gaps of 0..2
			err := tr.Fetch(next)
			switch {
			case errors.Is(err, ErrFull):
				if m.window() < limit {
					t.Fatalf("ErrFull with window %d < %d", m.window(), limit)
				}
			case err != nil:
				t.Fatalf("fetch %d: %v", next, err)
			default:
				m.fetched = append(m.fetched, next)
				incomplete = append(incomplete, next)
				next++
			}
		} else if len(incomplete) > 0 {
			i := rng.IntN(len(incomplete))
			o := incomplete[i]
			incomplete = slices.Delete(incomplete, i, i+1)
			if _, err := tr.Complete(o); err != nil {
				t.Fatalf("complete %d: %v", o, err)
			}
			m.completed[o] = true
		}
		check(t, tr, m)
	}
	// Liveness: completing everything left, in random order, reaches the end.
	rng.Shuffle(len(incomplete), func(i, j int) { incomplete[i], incomplete[j] = incomplete[j], incomplete[i] })
	for _, o := range incomplete {
		if _, err := tr.Complete(o); err != nil {
			t.Fatalf("complete %d: %v", o, err)
		}
		m.completed[o] = true
		check(t, tr, m)
	}
	got, _ := tr.Committable()
	if len(m.fetched) > 0 && got != m.fetched[len(m.fetched)-1]+1 {
		t.Fatalf("final committable %d, want %d", got, m.fetched[len(m.fetched)-1]+1)
	}
	if tr.Len() != 0 || tr.Pending() != 0 {
		t.Fatalf("final window %d pending %d", tr.Len(), tr.Pending())
	}
}

// TestTrackerProperty checks random fetch/complete interleavings against
// the model: the committed offset never passes an incomplete record and
// reaches the end once everything completes.
func TestTrackerProperty(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		limit := 1 + rng.IntN(16)
		run(t, rng, limit, 400)
	}
}

// TestTrackerPermutations completes a full window in every random order.
func TestTrackerPermutations(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		n := 1 + rng.IntN(64)
		tr := New(n, 0)
		m := &model{completed: map[int64]bool{}}
		for o := range int64(n) {
			if err := tr.Fetch(o * 2); err != nil {
				t.Fatal(err)
			}
			m.fetched = append(m.fetched, o*2)
		}
		if err := tr.Fetch(int64(n) * 2); !errors.Is(err, ErrFull) {
			t.Fatalf("fetch into full window: %v", err)
		}
		order := rng.Perm(n)
		for _, i := range order {
			o := int64(i) * 2
			if _, err := tr.Complete(o); err != nil {
				t.Fatal(err)
			}
			m.completed[o] = true
			check(t, tr, m)
		}
		if got, _ := tr.Committable(); got != int64(n-1)*2+1 {
			t.Fatalf("seed %d: committable %d", seed, got)
		}
	}
}

// FuzzTracker drives the tracker with arbitrary operations: each byte is
// one fetch (with a gap) or one completion (of a chosen pending record).
func FuzzTracker(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 3, 5})
	f.Add([]byte{2, 4, 6, 8, 10, 1, 1, 1, 1, 1})
	f.Add([]byte{255, 254, 0, 7, 128, 3})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) == 0 {
			return
		}
		limit := 1 + int(ops[0]%32)
		tr := New(limit, 0)
		m := &model{completed: map[int64]bool{}}
		var next int64
		var incomplete []int64
		for _, b := range ops[1:] {
			if b&1 == 0 {
				next += int64(b>>1) % 4
				err := tr.Fetch(next)
				if errors.Is(err, ErrFull) {
					if m.window() != limit {
						t.Fatalf("ErrFull with window %d", m.window())
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				m.fetched = append(m.fetched, next)
				incomplete = append(incomplete, next)
				next++
			} else if len(incomplete) > 0 {
				i := int(b>>1) % len(incomplete)
				o := incomplete[i]
				incomplete = slices.Delete(incomplete, i, i+1)
				if _, err := tr.Complete(o); err != nil {
					t.Fatal(err)
				}
				m.completed[o] = true
				// A repeat must be refused and change nothing.
				if _, err := tr.Complete(o); err == nil {
					t.Fatalf("second complete of %d accepted", o)
				}
			}
			check(t, tr, m)
		}
		for _, o := range incomplete {
			if _, err := tr.Complete(o); err != nil {
				t.Fatal(err)
			}
			m.completed[o] = true
		}
		check(t, tr, m)
	})
}

// BenchmarkTrackerInOrder is the common case: records complete in fetch
// order.
func BenchmarkTrackerInOrder(b *testing.B) {
	tr := New(1024, 0)
	var off int64
	b.ReportAllocs()
	for b.Loop() {
		if err := tr.Fetch(off); err != nil {
			b.Fatal(err)
		}
		if _, err := tr.Complete(off); err != nil {
			b.Fatal(err)
		}
		off++
	}
}

// BenchmarkTrackerShuffled keeps a full window of 1024 and completes
// records in a random order (binary search plus batch pops).
func BenchmarkTrackerShuffled(b *testing.B) {
	const window = 1024
	tr := New(window, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	order := rng.Perm(window)
	var base int64
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == 0 {
			for o := range int64(window) {
				if err := tr.Fetch(base + o); err != nil {
					b.Fatal(err)
				}
			}
		}
		if _, err := tr.Complete(base + int64(order[i])); err != nil {
			b.Fatal(err)
		}
		i++
		if i == window {
			i = 0
			base += window
		}
	}
}
