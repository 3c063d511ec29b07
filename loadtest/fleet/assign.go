package fleet

import "math/rand/v2"

// quotas splits n items over weights by the largest-remainder method, so
// that small fleets still get every kind whose share rounds to one.
func quotas(n int, ws []float64) []int {
	sum := 0.0
	for _, w := range ws {
		sum += w
	}
	q := make([]int, len(ws))
	rem := make([]float64, len(ws))
	left := n
	for i, w := range ws {
		exact := float64(n) * w / sum
		q[i] = int(exact)
		rem[i] = exact - float64(q[i])
		left -= q[i]
	}
	for ; left > 0; left-- {
		best := 0
		for i := range rem {
			if rem[i] > rem[best] {
				best = i
			}
		}
		q[best]++
		rem[best] = -1
	}
	return q
}

// assignKinds gives each sensor a tap kind: exact quotas, shuffled.
func assignKinds(rng *rand.Rand, n int, m TapMix) []TapKind {
	kinds := []TapKind{HotTap, ColdTap, MixedTap, CirculationReturn, HeaterOutlet, ColdMain}
	q := quotas(n, []float64{m.HotTap, m.ColdTap, m.MixedTap, m.CirculationReturn, m.HeaterOutlet, m.ColdMain})
	out := make([]TapKind, 0, n)
	for i, k := range kinds {
		for range q[i] {
			out = append(out, k)
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// assignBehaviours gives each sensor a behaviour. Profiles tied to a kind
// of line are placed first among eligible sensors; the others among the
// rest; unplaced quota and everything left is Normal.
func assignBehaviours(rng *rand.Rand, kinds []TapKind, m BehaviourMix) []Behaviour {
	n := len(kinds)
	out := make([]Behaviour, n)
	for i := range out {
		out[i] = BehaviourNormal
	}
	q := quotas(n, []float64{m.Normal, m.RarelyUsed, m.HotLineCooling, m.ColdLineWarming, m.LowBattery, m.Detached, m.Silent})
	plan := []struct {
		b        Behaviour
		quota    int
		eligible func(TapKind) bool
	}{
		{BehaviourHotLineCooling, q[2], TapKind.IsHot},
		{BehaviourColdLineWarming, q[3], func(k TapKind) bool { return !k.IsHot() }},
		{BehaviourRarelyUsed, q[1], func(k TapKind) bool { return !k.IsContinuous() }},
		{BehaviourLowBattery, q[4], nil},
		{BehaviourDetached, q[5], nil},
		{BehaviourSilent, q[6], nil},
	}
	order := rng.Perm(n)
	for _, p := range plan {
		for _, i := range order {
			if p.quota == 0 {
				break
			}
			if out[i] == BehaviourNormal && (p.eligible == nil || p.eligible(kinds[i])) {
				out[i] = p.b
				p.quota--
			}
		}
	}
	return out
}
