package placement

import (
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cur        []string
		partitions int
		live       []string
		want       []string
	}{
		{"empty start", nil, 6, []string{"a", "b", "c"}, []string{"a", "b", "c", "a", "b", "c"}},
		{"no live member", []string{"a", "b"}, 3, nil, []string{"", "", ""}},
		{"no partitions", []string{"a"}, 0, []string{"a"}, []string{}},
		{"stable", []string{"b", "a", "c", "a", "b", "c"}, 6, []string{"c", "a", "b"}, []string{"b", "a", "c", "a", "b", "c"}},
		{"dead member's partitions to the least loaded", []string{"a", "b", "c", "a", "b", "c", "a"}, 7, []string{"a", "b"},
			[]string{"a", "b", "b", "a", "b", "a", "a"}},
		{"unknown and empty owners", []string{"x", "", "a", "a"}, 4, []string{"a", "b"}, []string{"b", "b", "a", "a"}},
		{"grow", []string{"a", "b"}, 4, []string{"a", "b"}, []string{"a", "b", "a", "b"}},
		{"shrink", []string{"a", "b", "a", "b", "a", "b"}, 3, []string{"a", "b"}, []string{"a", "b", "a"}},
		{"shrink then balance", []string{"a", "a", "a", "b", "b", "b"}, 4, []string{"a", "b"}, []string{"a", "a", "b", "b"}},
		{"new member gets the highest partitions of the most loaded", []string{"a", "b", "a", "b", "a", "b"}, 6, []string{"a", "b", "c"},
			[]string{"a", "b", "a", "b", "c", "c"}},
		{"balance ties take from the lowest id", []string{"a", "a", "b", "b"}, 4, []string{"a", "b", "c", "d"}, []string{"a", "c", "b", "d"}},
		{"duplicates and empty ids in live", []string{"a"}, 2, []string{"b", "", "b", "a"}, []string{"a", "b"}},
		{"one live member takes all", []string{"a", "b", "c"}, 3, []string{"c"}, []string{"c", "c", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := slices.Clone(tc.cur)
			got := Plan(tc.cur, tc.partitions, tc.live)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Plan(%q, %d, %q) = %q, want %q", tc.cur, tc.partitions, tc.live, got, tc.want)
			}
			if !slices.Equal(cur, tc.cur) {
				t.Fatalf("Plan modified cur: %q", tc.cur)
			}
			if again := Plan(got, tc.partitions, tc.live); !slices.Equal(again, got) {
				t.Fatalf("not a fixed point: %q → %q", got, again)
			}
		})
	}
}

func TestHandoff(t *testing.T) {
	cur := []string{"a", "b", "a", "b", "a", "b", "x", ""}
	live := []string{"a", "b", "c"}
	next := Plan(cur, len(cur), live)
	step := Handoff(cur, next, live)
	// Live-to-live moves wait one step; orphans move at once.
	for p := range cur {
		want := next[p] // orphans (from x or "") move at once
		if cur[p] != next[p] && (cur[p] == "a" || cur[p] == "b") {
			want = "" // live-to-live moves wait one step
		}
		if step[p] != want {
			t.Fatalf("partition %d: %q → %q, step %q (want %q)", p, cur[p], next[p], step[p], want)
		}
	}
	final := Plan(step, len(cur), live)
	if !slices.Equal(final, next) || !slices.Equal(Handoff(step, final, live), final) {
		t.Fatalf("second step %q, want %q without handoff", final, next)
	}
	if got := Moves(cur, next); len(got) == 0 {
		t.Fatal("no moves")
	}
}

// counts returns the partitions each live member owns.
func counts(owners, live []string) map[string]int {
	n := map[string]int{}
	for _, m := range live {
		n[m] = 0
	}
	for _, o := range owners {
		if _, ok := n[o]; ok {
			n[o]++
		}
	}
	return n
}

// minBalanceMoves is the fewest partitions that must leave live owners to
// balance: live members keep their live-owned partitions, orphans fill the
// others, and the r = N mod m members owning most may keep ⌈N/m⌉.
func minBalanceMoves(cur []string, partitions int, live []string) int {
	ls := liveSet(live)
	kept := counts(cur[:min(len(cur), partitions)], ls)
	cs := make([]int, 0, len(ls))
	for _, m := range ls {
		cs = append(cs, kept[m])
	}
	slices.Sort(cs)
	slices.Reverse(cs)
	floor, r := partitions/len(ls), partitions%len(ls)
	need := 0
	for i, c := range cs {
		target := floor
		if i < r {
			target++
		}
		need += max(0, c-target)
	}
	return need
}

func TestPlanProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ids := []string{"a", "b", "c", "d", "e", "f"}
		owner := rapid.SampledFrom(append([]string{"", "gone"}, ids...))
		cur := rapid.SliceOfN(owner, 0, 40).Draw(t, "cur")
		partitions := rapid.IntRange(0, 40).Draw(t, "partitions")
		live := rapid.SliceOfN(rapid.SampledFrom(ids), 0, 6).Draw(t, "live")
		next := Plan(cur, partitions, live)

		if len(next) != partitions {
			t.Fatalf("len %d, want %d", len(next), partitions)
		}
		ls := liveSet(live)
		if len(ls) == 0 {
			for p, o := range next {
				if o != "" {
					t.Fatalf("partition %d owned by %q with no live member", p, o)
				}
			}
			return
		}
		isLive := map[string]bool{}
		for _, m := range ls {
			isLive[m] = true
		}
		for p, o := range next {
			if !isLive[o] {
				t.Fatalf("partition %d owned by non-live %q", p, o)
			}
		}
		if partitions > 0 {
			lo, hi := partitions, 0
			for _, c := range counts(next, ls) {
				lo, hi = min(lo, c), max(hi, c)
			}
			if hi-lo > 1 {
				t.Fatalf("unbalanced: %v", counts(next, ls))
			}
		}
		moved := 0
		for p := range min(len(cur), partitions) {
			if isLive[cur[p]] && next[p] != cur[p] {
				moved++
			}
		}
		if need := minBalanceMoves(cur, partitions, live); moved != need {
			t.Fatalf("moved %d partitions away from live owners, balance needs %d: %q → %q", moved, need, cur, next)
		}
		if again := Plan(next, partitions, live); !slices.Equal(again, next) {
			t.Fatalf("not a fixed point: %q → %q", next, again)
		}
		// Handing off converges in two proposals at most, to a plan as
		// balanced, with the same live-to-live moves.
		step := Handoff(cur, next, live)
		final := Plan(step, partitions, live)
		if h := Handoff(step, final, live); !slices.Equal(h, final) {
			t.Fatalf("handoff does not converge: %q → %q → %q", cur, step, final)
		}
		if again := Plan(final, partitions, live); !slices.Equal(again, final) {
			t.Fatalf("handoff end is not a fixed point: %q", final)
		}
		if c := counts(final, ls); fmt.Sprint(sortedCounts(c)) != fmt.Sprint(sortedCounts(counts(next, ls))) {
			t.Fatalf("handoff ends with %v, plan with %v", c, counts(next, ls))
		}
	})
}

func sortedCounts(c map[string]int) []int {
	var out []int
	for _, n := range c {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
