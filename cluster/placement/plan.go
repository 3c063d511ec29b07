package placement

import (
	"errors"
	"slices"
)

// ErrInvalid: a configuration that Run* refuses (see the Validate methods).
var ErrInvalid = errors.New("placement: invalid")

// Plan returns the next owner of each of partitions partitions, given their
// current owners cur (any length: missing entries are unowned, extra ones
// are dropped) and the live members. It is a pure, deterministic function:
//
//  1. Stability: a partition stays with its current owner while that owner
//     is live.
//  2. Orphans: a partition whose owner is not live (unknown, dead, or "")
//     goes, in ascending partition order, to the live member that owns the
//     fewest partitions at that moment (ties: the lowest member id).
//  3. Balance: while the most loaded live member (ties: the lowest id) owns
//     at least 2 more than the least loaded one (ties: the lowest id), its
//     highest-index partition moves to the least loaded one.
//
// With no live member every owner is "". Empty ids in live are ignored,
// duplicates count once. The result is always a new slice of length
// partitions (none if partitions ≤ 0); cur is not modified.
//
// Step 2 fills the least loaded first, so step 3 moves only what balance
// requires: with N partitions over m live members, the moves away from a
// live owner are exactly the excess of the members above their fair share
// (⌈N/m⌉ for the r = N mod m most loaded, ⌊N/m⌋ for the others).
func Plan(cur []string, partitions int, live []string) []string {
	if partitions <= 0 {
		return []string{}
	}
	next := make([]string, partitions)
	members := liveSet(live)
	if len(members) == 0 {
		return next
	}
	// owned[i] lists the partitions of members[i], ascending.
	owned := make([][]int, len(members))
	index := make(map[string]int, len(members))
	for i, m := range members {
		index[m] = i
	}
	var orphans []int
	for p := range partitions {
		var o string
		if p < len(cur) {
			o = cur[p]
		}
		if i, ok := index[o]; ok {
			next[p] = o
			owned[i] = append(owned[i], p)
			continue
		}
		orphans = append(orphans, p)
	}
	for _, p := range orphans {
		i := leastLoaded(owned)
		next[p] = members[i]
		owned[i] = insertSorted(owned[i], p)
	}
	for {
		hi, lo := mostLoaded(owned), leastLoaded(owned)
		if len(owned[hi])-len(owned[lo]) < 2 {
			return next
		}
		last := len(owned[hi]) - 1
		p := owned[hi][last]
		owned[hi] = owned[hi][:last]
		owned[lo] = insertSorted(owned[lo], p)
		next[p] = members[lo]
	}
}

// liveSet returns live sorted, without duplicates or empty ids.
func liveSet(live []string) []string {
	ms := make([]string, 0, len(live))
	for _, m := range live {
		if m != "" {
			ms = append(ms, m)
		}
	}
	slices.Sort(ms)
	return slices.Compact(ms)
}

// leastLoaded returns the index of the member with the fewest partitions,
// the lowest index (id) on ties.
func leastLoaded(owned [][]int) int {
	best := 0
	for i := range owned {
		if len(owned[i]) < len(owned[best]) {
			best = i
		}
	}
	return best
}

// mostLoaded returns the index of the member with the most partitions, the
// lowest index (id) on ties.
func mostLoaded(owned [][]int) int {
	best := 0
	for i := range owned {
		if len(owned[i]) > len(owned[best]) {
			best = i
		}
	}
	return best
}

func insertSorted(ps []int, p int) []int {
	i, _ := slices.BinarySearch(ps, p)
	return slices.Insert(ps, i, p)
}

// Moves returns the partitions whose owner differs between cur and next
// (entries missing from either count as ""), ascending.
func Moves(cur, next []string) []int {
	n := max(len(cur), len(next))
	var moved []int
	for p := range n {
		if ownerAt(cur, p) != ownerAt(next, p) {
			moved = append(moved, p)
		}
	}
	return moved
}

func ownerAt(owners []string, p int) string {
	if p < len(owners) {
		return owners[p]
	}
	return ""
}

// Handoff returns the step the coordinator proposes on the way from cur to
// next: next itself, except that every partition next moves from one live
// member to another is first left unowned (""), so that its old owner
// revokes it before a later step gives it to the new one. Moves from
// non-live or no owners (failover) are not delayed. live need not be
// sorted.
func Handoff(cur, next, live []string) []string {
	isLive := make(map[string]bool, len(live))
	for _, m := range live {
		if m != "" {
			isLive[m] = true
		}
	}
	step := slices.Clone(next)
	for p := range step {
		from := ownerAt(cur, p)
		if from != step[p] && isLive[from] && step[p] != "" {
			step[p] = ""
		}
	}
	return step
}
