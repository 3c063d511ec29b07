package pebblestore

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

const (
	tenantA = "8f14e45f-ceea-467f-a0e6-2a4f1c5b3f10"
	tenantB = "c9f0f895-fb98-4b91-9f1a-3d6f4b1e2a77"
)

var euiX = EUI{0x70, 0xb3, 0xd5, 0x7e, 0xd0, 0x00, 0x00, 0x01}

func TestTwinKeyRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		tenant string
		kind   Kind
		eui    EUI
		want   string
	}{
		{"sensor", tenantA, KindSensor, euiX, "t/" + tenantA + "/twin/sensor/\x70\xb3\xd5\x7e\xd0\x00\x00\x01"},
		{"gateway", "acme", KindGateway, EUI{}, "t/acme/twin/gateway/\x00\x00\x00\x00\x00\x00\x00\x00"},
		{"eui full of separators", "x", KindSensor, EUI{'/', '/', 't', 'w', 'i', 'n', '/', 0xff}, "t/x/twin/sensor///twin/\xff"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := TwinKey(tt.tenant, tt.kind, tt.eui)
			if err != nil {
				t.Fatal(err)
			}
			if string(k) != tt.want {
				t.Fatalf("key %q, want %q", k, tt.want)
			}
			tenant, kind, eui, err := ParseTwinKey(k)
			if err != nil || tenant != tt.tenant || kind != tt.kind || eui != tt.eui {
				t.Fatalf("parse = %q %v %v %v", tenant, kind, eui, err)
			}
		})
	}
}

func TestKeyValidation(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"empty tenant", ignore(TwinKey("", KindSensor, euiX))},
		{"slash in tenant", ignore(TwinKey("a/twin/sensor", KindSensor, euiX))},
		{"dot-dot path", ignore(TwinKey("a/../b", KindSensor, euiX))},
		{"upper case tenant", ignore(TwinKey("ACME", KindSensor, euiX))},
		{"long tenant", ignore(TwinKey(string(bytes.Repeat([]byte("a"), 65)), KindSensor, euiX))},
		{"zero kind", ignore(TwinKey(tenantA, 0, euiX))},
		{"empty event id", ignore(EventKey(tenantA, euiX, time.Unix(1, 0), ""))},
		{"event before 1678", ignore(EventKey(tenantA, euiX, time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), "e"))},
		{"topic with slash", ignore(OffsetKey(TopicPartition{"a/b", 0}))},
		{"negative partition", ignore(OffsetKey(TopicPartition{"lorawan.uplink", -1}))},
		{"tenant prefix", ignore(TenantPrefix("Bad"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", tt.err)
			}
		})
	}
}

func ignore(_ []byte, err error) error { return err }

func TestTenantPrefixesDoNotNest(t *testing.T) {
	a, _ := TenantPrefix("a")
	ab, _ := TenantPrefix("ab")
	k, _ := TwinKey("ab", KindSensor, euiX)
	if bytes.HasPrefix(k, a) || !bytes.HasPrefix(k, ab) {
		t.Fatalf("prefix %q / %q vs key %q", a, ab, k)
	}
}

func TestEventKeyRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		at   time.Time
		id   string
	}{
		{"now", time.Date(2026, 11, 27, 10, 0, 0, 123456789, time.UTC), "70B3D57ED0000001/42/0"},
		{"epoch", time.Unix(0, 0).UTC(), "e"},
		{"pre-1970", time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), "old"},
		{"id with slashes", time.Unix(1e9, 0).UTC(), "a/b/c"},
		{"max", time.Unix(0, math.MaxInt64).UTC(), "z"},
		{"min", time.Unix(0, math.MinInt64).UTC(), "z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := EventKey(tenantA, euiX, tt.at, tt.id)
			if err != nil {
				t.Fatal(err)
			}
			tenant, eui, at, id, err := ParseEventKey(k)
			if err != nil || tenant != tenantA || eui != euiX || !at.Equal(tt.at) || id != tt.id {
				t.Fatalf("parse = %q %v %v %q %v", tenant, eui, at, id, err)
			}
		})
	}
}

// TestEventKeysSortByTime is the ordering property the recent window relies
// on: for random instants (both signs of Unix time) and ids, byte order of the
// keys equals (time, id) order.
func TestEventKeysSortByTime(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	type ev struct {
		at  time.Time
		id  string
		key []byte
	}
	evs := make([]ev, 2000)
	for i := range evs {
		var ns int64
		switch i % 3 {
		case 0:
			ns = rng.Int64() - math.MaxInt64/2 // spans negative and positive
		case 1:
			ns = 1_800_000_000_000_000_000 + rng.Int64N(1e12) // close together
		default:
			ns = int64(i/3) * 1000 // many ties in the high bytes
		}
		evs[i].at = time.Unix(0, ns)
		evs[i].id = string([]byte{'a' + byte(rng.IntN(26)), 'a' + byte(rng.IntN(26))})
		k, err := EventKey(tenantA, euiX, evs[i].at, evs[i].id)
		if err != nil {
			t.Fatal(err)
		}
		evs[i].key = k
	}
	byKey := slices.Clone(evs)
	slices.SortStableFunc(byKey, func(a, b ev) int { return bytes.Compare(a.key, b.key) })
	for i := 1; i < len(byKey); i++ {
		p, c := byKey[i-1], byKey[i]
		if p.at.After(c.at) || p.at.Equal(c.at) && p.id > c.id {
			t.Fatalf("key order puts %v/%s before %v/%s", p.at, p.id, c.at, c.id)
		}
	}
}

func TestOffsetKeyRoundTrip(t *testing.T) {
	tests := []TopicPartition{
		{"lorawan.uplink", 0},
		{"lorawan.uplink", 47}, // 47 = '/' in the partition bytes
		{"a", math.MaxInt32},
		{"Twin_events-2", 0x2f2f2f2f},
	}
	for _, tp := range tests {
		k, err := OffsetKey(tp)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseOffsetKey(k)
		if err != nil || got != tp {
			t.Fatalf("%v: parse = %v %v", tp, got, err)
		}
	}
}

func TestParseRejectsForeignKeys(t *testing.T) {
	twin, _ := TwinKey(tenantA, KindSensor, euiX)
	event, _ := EventKey(tenantA, euiX, time.Unix(5, 0), "id")
	off, _ := OffsetKey(TopicPartition{"t", 1})
	for _, k := range [][]byte{nil, []byte("t/"), []byte(schemaKey), event, off, twin[:len(twin)-1]} {
		if _, _, _, err := ParseTwinKey(k); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseTwinKey(%q) err = %v", k, err)
		}
	}
	for _, k := range [][]byte{nil, twin, off, event[:len(event)-3]} {
		if _, _, _, _, err := ParseEventKey(k); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseEventKey(%q) err = %v", k, err)
		}
	}
	for _, k := range [][]byte{nil, twin, event, []byte("sys/offsets/a/b")} {
		if _, err := ParseOffsetKey(k); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseOffsetKey(%q) err = %v", k, err)
		}
	}
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct{ in, want []byte }{
		{[]byte("t/a/"), []byte("t/a0")},
		{[]byte{'a', 0xff}, []byte{'b'}},
		{[]byte{0xff, 0xff}, nil},
	}
	for _, tt := range tests {
		if got := prefixEnd(tt.in); !bytes.Equal(got, tt.want) {
			t.Errorf("prefixEnd(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzParseTwinKey(f *testing.F) {
	k, _ := TwinKey(tenantA, KindGateway, euiX)
	f.Add(k)
	f.Add([]byte("t/a/twin/sensor/12345678"))
	f.Fuzz(func(t *testing.T, key []byte) {
		tenant, kind, eui, err := ParseTwinKey(key)
		if err != nil {
			return
		}
		again, err := TwinKey(tenant, kind, eui)
		if err != nil || !bytes.Equal(again, key) {
			t.Fatalf("%q parsed but re-encodes to %q (%v)", key, again, err)
		}
	})
}

func FuzzParseEventKey(f *testing.F) {
	k, _ := EventKey(tenantA, euiX, time.Unix(1e9, 5), "id/1")
	f.Add(k)
	f.Fuzz(func(t *testing.T, key []byte) {
		tenant, eui, at, id, err := ParseEventKey(key)
		if err != nil {
			return
		}
		again, err := EventKey(tenant, eui, at, id)
		if err != nil {
			// A parsed key may carry an id longer than EventKey accepts;
			// that is the only admissible refusal.
			if len(id) > maxEventIDLen {
				return
			}
			t.Fatalf("%q parsed but does not re-encode: %v", key, err)
		}
		if !bytes.Equal(again, key) {
			t.Fatalf("%q re-encodes to %q", key, again)
		}
	})
}

func FuzzParseOffsetKey(f *testing.F) {
	k, _ := OffsetKey(TopicPartition{"lorawan.uplink", 3})
	f.Add(k)
	f.Fuzz(func(t *testing.T, key []byte) {
		tp, err := ParseOffsetKey(key)
		if err != nil {
			return
		}
		again, err := OffsetKey(tp)
		if err != nil || !bytes.Equal(again, key) {
			t.Fatalf("%q parsed but re-encodes to %q (%v)", key, again, err)
		}
	})
}

func FuzzDecodeValues(f *testing.F) {
	f.Add(appendTwinValue(nil, 3, 4, 5, []byte("snap")))
	f.Add(appendEventValue(nil, []byte("ev")))
	f.Fuzz(func(t *testing.T, v []byte) {
		if rec, err := decodeTwinValue(v); err == nil {
			again := appendTwinValue(nil, rec.Version, rec.Epoch, rec.AppliedSeq, rec.Snapshot)
			if !bytes.Equal(again, v) {
				t.Fatalf("twin value %x re-encodes to %x", v, again)
			}
		}
		if p, err := decodeEventValue(v); err == nil && !bytes.Equal(appendEventValue(nil, p), v) {
			t.Fatalf("event value %x does not round-trip", v)
		}
		_, _ = decodeOffset(v)
	})
}
