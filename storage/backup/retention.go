package backup

import (
	"fmt"
	"sort"
	"time"
)

// Retention is a grandfather-father-son policy, applied to each kind of
// backup separately: keep the newest backup of each of the last Daily
// days that have one, of each of the last Weekly ISO weeks, and of each of
// the last Monthly months (UTC calendar periods; one backup may count for
// all three). Periods without a backup are skipped rather than counted, so
// a node that failed to back up for a while never loses its older backups
// to the policy (restic's --keep-daily semantics).
type Retention struct {
	Daily   int `json:"daily"`
	Weekly  int `json:"weekly"`
	Monthly int `json:"monthly"`
}

// DefaultRetention keeps 7 daily, 4 weekly and 12 monthly backups.
func DefaultRetention() Retention { return Retention{Daily: 7, Weekly: 4, Monthly: 12} }

// Validate refuses negative counts and a policy that keeps nothing.
func (r Retention) Validate() error {
	if r.Daily < 0 || r.Weekly < 0 || r.Monthly < 0 {
		return fmt.Errorf("%w: retention counts must not be negative", ErrInvalid)
	}
	if r.Daily < 1 {
		return fmt.Errorf("%w: retention must keep at least one daily backup", ErrInvalid)
	}
	return nil
}

// Prune splits objects into those to keep and those to delete. It is
// pure: it looks only at the names (kind and time) and now. Objects whose
// names are not backup names, and backups dated after now (a clock
// step), are always kept; the newest backup of each kind is always kept.
func (r Retention) Prune(objects []Object, now time.Time) (keep, remove []Object) {
	type item struct {
		o    Object
		info ObjectInfo
	}
	byKind := map[Kind][]item{}
	for _, o := range objects {
		info, ok := ParseObjectName(o.Name)
		if !ok || info.At.After(now) {
			keep = append(keep, o)
			continue
		}
		byKind[info.Kind] = append(byKind[info.Kind], item{o, info})
	}
	kinds := make([]Kind, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool { return kinds[i] < kinds[j] })
	for _, k := range kinds {
		items := byKind[k]
		sort.SliceStable(items, func(i, j int) bool {
			if !items[i].info.At.Equal(items[j].info.At) {
				return items[i].info.At.After(items[j].info.At)
			}
			return items[i].o.Name > items[j].o.Name
		})
		kept := make([]bool, len(items))
		mark := func(n int, period func(time.Time) string) {
			seen := map[string]bool{}
			for i, it := range items {
				if len(seen) >= n {
					return
				}
				p := period(it.info.At.UTC())
				if !seen[p] {
					seen[p] = true
					kept[i] = true
				}
			}
		}
		mark(max(r.Daily, 1), func(t time.Time) string { return t.Format("2006-01-02") })
		mark(r.Weekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) })
		mark(r.Monthly, func(t time.Time) string { return t.Format("2006-01") })
		for i, it := range items {
			if kept[i] {
				keep = append(keep, it.o)
			} else {
				remove = append(remove, it.o)
			}
		}
	}
	sortObjects(keep)
	sortObjects(remove)
	return keep, remove
}

func sortObjects(o []Object) { sort.Slice(o, func(i, j int) bool { return o[i].Name < o[j].Name }) }
