package backup

import (
	"sort"
	"strings"
	"testing"
	"time"
)

func objAt(kind Kind, ts string) Object {
	at, err := time.Parse("2006-01-02T15:04", ts)
	if err != nil {
		panic(err)
	}
	return Object{Name: ObjectName(kind, at, "n1")}
}

// days returns one db backup at 02:00 on every day from first to last.
func days(kind Kind, first, last string) []Object {
	a, _ := time.Parse("2006-01-02", first)
	b, _ := time.Parse("2006-01-02", last)
	var out []Object
	for d := a; !d.After(b); d = d.AddDate(0, 0, 1) {
		out = append(out, Object{Name: ObjectName(kind, d.Add(2*time.Hour), "n1")})
	}
	return out
}

// label renders objects as "kind@2006-01-02T15:04" (or the raw name).
func label(objs []Object) string {
	var out []string
	for _, o := range objs {
		if info, ok := ParseObjectName(o.Name); ok {
			out = append(out, string(info.Kind)+"@"+info.At.Format("2006-01-02T15:04"))
		} else {
			out = append(out, o.Name)
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestRetentionPrune(t *testing.T) {
	at := func(day string) string { return "db@" + day + "T02:00" }
	join := func(s ...string) string { sort.Strings(s); return strings.Join(s, " ") }
	cases := []struct {
		name    string
		r       Retention
		objs    []Object
		now     string
		keep    string
		removed int
	}{
		{"7 daily of 10", Retention{Daily: 7}, days(KindDatabase, "2025-03-01", "2025-03-10"), "2025-03-10T03:00",
			join(at("2025-03-04"), at("2025-03-05"), at("2025-03-06"), at("2025-03-07"), at("2025-03-08"), at("2025-03-09"), at("2025-03-10")), 3},
		{"default policy over 60 days", DefaultRetention(), days(KindDatabase, "2025-01-01", "2025-03-01"), "2025-03-01T03:00",
			join(at("2025-02-23"), at("2025-02-24"), at("2025-02-25"), at("2025-02-26"), at("2025-02-27"), at("2025-02-28"), at("2025-03-01"), // daily
				at("2025-02-16"), at("2025-02-09"), // weekly: ISO weeks 7 and 6 (8 and 9 are covered by daily)
				at("2025-01-31")), // monthly: January (February and March are covered)
			50},
		{"monthly reaches back a year", Retention{Daily: 1, Monthly: 12}, days(KindDatabase, "2024-01-01", "2025-01-31"), "2025-02-01T00:00",
			join(at("2025-01-31"), at("2024-12-31"), at("2024-11-30"), at("2024-10-31"), at("2024-09-30"), at("2024-08-31"), at("2024-07-31"),
				at("2024-06-30"), at("2024-05-31"), at("2024-04-30"), at("2024-03-31"), at("2024-02-29")), 385},
		{"gaps are skipped, not counted", Retention{Daily: 3}, []Object{objAt(KindDatabase, "2025-01-01T02:00"), objAt(KindDatabase, "2025-02-01T02:00"),
			objAt(KindDatabase, "2025-03-01T02:00"), objAt(KindDatabase, "2024-12-01T02:00")}, "2025-06-01T00:00",
			join(at("2025-01-01"), at("2025-02-01"), at("2025-03-01")), 1},
		{"newest of the day wins", Retention{Daily: 1}, []Object{objAt(KindDatabase, "2025-03-10T02:00"), objAt(KindDatabase, "2025-03-10T18:00"),
			objAt(KindDatabase, "2025-03-10T12:00")}, "2025-03-11T00:00", "db@2025-03-10T18:00", 2},
		{"kinds are pruned separately", Retention{Daily: 2}, append(days(KindDatabase, "2025-03-01", "2025-03-05"),
			objAt(KindFull, "2025-02-16T02:00"), objAt(KindFull, "2025-02-23T02:00"), objAt(KindFull, "2025-03-02T02:00")), "2025-03-05T03:00",
			join(at("2025-03-04"), at("2025-03-05"), "full@2025-02-23T02:00", "full@2025-03-02T02:00"), 4},
		{"weekly across a year boundary", Retention{Daily: 1, Weekly: 3}, days(KindDatabase, "2024-12-20", "2025-01-06"), "2025-01-06T03:00",
			// ISO 2025-W02 (Jan 6), 2025-W01 (Dec 30 – Jan 5), 2024-W52 (Dec 23–29)
			join(at("2025-01-06"), at("2025-01-05"), at("2024-12-29")), 15},
		{"future and foreign names are kept", Retention{Daily: 1}, []Object{objAt(KindDatabase, "2025-03-01T02:00"), objAt(KindDatabase, "2025-03-02T02:00"),
			objAt(KindDatabase, "2030-01-01T00:00"), {Name: "notes.txt"}}, "2025-03-02T03:00",
			join(at("2025-03-02"), "db@2030-01-01T00:00", "notes.txt"), 1},
		{"nothing to do", DefaultRetention(), nil, "2025-03-02T03:00", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now, err := time.Parse("2006-01-02T15:04", tc.now)
			if err != nil {
				t.Fatal(err)
			}
			keep, remove := tc.r.Prune(tc.objs, now)
			if got := label(keep); got != tc.keep {
				t.Errorf("keep:\n got  %s\n want %s", got, tc.keep)
			}
			if len(remove) != tc.removed || len(keep)+len(remove) != len(tc.objs) {
				t.Errorf("removed %d (want %d), kept %d, of %d", len(remove), tc.removed, len(keep), len(tc.objs))
			}
		})
	}
}

func TestRetentionValidate(t *testing.T) {
	for _, tc := range []struct {
		r  Retention
		ok bool
	}{
		{DefaultRetention(), true}, {Retention{Daily: 1}, true}, {Retention{}, false},
		{Retention{Daily: 7, Weekly: -1}, false}, {Retention{Daily: -1}, false},
	} {
		if err := tc.r.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.r, err)
		}
	}
}
