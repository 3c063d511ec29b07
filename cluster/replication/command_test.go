package replication

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/legionelladossier/legiond/storage/pebblestore"
)

func TestCommandRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		batches []Batch
	}{
		{"one twin", []Batch{{Twins: []TwinUpdate{update(tenantA, 1, 0, "s")}}}},
		{"offsets only", []Batch{{Offsets: []Offset{{Topic: "lorawan.uplink", Partition: 3, Next: 42}}}}},
		{"many batches", []Batch{
			{Twins: []TwinUpdate{update(tenantA, 1, 7, "a"), update(tenantB, 1, 0, "")}, Offsets: []Offset{{Topic: "t", Partition: 0, Next: 1}}},
			{Twins: []TwinUpdate{{Tenant: tenantA, Kind: pebblestore.KindGateway, EUI: eui(9), ExpectedVersion: math.MaxUint64 - 1, Epoch: math.MaxUint64, AppliedSeq: math.MaxUint64, Snapshot: bytes.Repeat([]byte{1}, 70000)}}},
			{Offsets: []Offset{{Topic: strings.Repeat("x", 249), Partition: math.MaxInt32, Next: math.MaxInt64}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := EncodeCommand(tt.batches...)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeCommand(data)
			if err != nil {
				t.Fatal(err)
			}
			for i := range got { // nil and empty snapshots are the same state
				for j := range got[i].Twins {
					if len(got[i].Twins[j].Snapshot) == 0 {
						got[i].Twins[j].Snapshot = tt.batches[i].Twins[j].Snapshot
					}
				}
			}
			if !reflect.DeepEqual(got, tt.batches) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, tt.batches)
			}
		})
	}
}

func TestBatchValidate(t *testing.T) {
	ok := update(tenantA, 1, 0, "s")
	tests := []struct {
		name string
		b    Batch
		ok   bool
	}{
		{"valid", Batch{Twins: []TwinUpdate{ok}, Offsets: []Offset{{Topic: "lorawan.uplink", Partition: 0, Next: 5}}}, true},
		{"empty", Batch{}, false},
		{"bad tenant", Batch{Twins: []TwinUpdate{update("UPPER", 1, 0, "")}}, false},
		{"tenant with a slash", Batch{Twins: []TwinUpdate{update("a/b", 1, 0, "")}}, false},
		{"zero kind", Batch{Twins: []TwinUpdate{{Tenant: tenantA}}}, false},
		{"same twin twice", Batch{Twins: []TwinUpdate{ok, update(tenantA, 1, 1, "t")}}, false},
		{"same EUI, other tenant", Batch{Twins: []TwinUpdate{ok, update(tenantB, 1, 0, "t")}}, true},
		{"version overflow", Batch{Twins: []TwinUpdate{update(tenantA, 1, math.MaxUint64, "")}}, false},
		{"oversized snapshot", Batch{Twins: []TwinUpdate{{Tenant: tenantA, Kind: pebblestore.KindSensor, Snapshot: make([]byte, maxSnapshotLen+1)}}}, false},
		{"negative offset", Batch{Offsets: []Offset{{Topic: "t", Next: -1}}}, false},
		{"negative partition", Batch{Offsets: []Offset{{Topic: "t", Partition: -1}}}, false},
		{"empty topic", Batch{Offsets: []Offset{{Topic: "", Next: 1}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.b.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestDecodeCommandRejects(t *testing.T) {
	good, _ := EncodeCommand(Batch{Twins: []TwinUpdate{update(tenantA, 1, 0, "snap")}, Offsets: []Offset{{Topic: "t", Next: 1}}})
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrInvalid},
		{"bad magic", append([]byte("XX"), good[2:]...), ErrInvalid},
		{"future version", append([]byte{'L', 'R', 2}, good[3:]...), ErrUnsupported},
		{"truncated", good[:len(good)-1], ErrInvalid},
		{"trailing byte", append(append([]byte{}, good...), 0), ErrInvalid},
		{"huge count", []byte{'L', 'R', 1, 0xff, 0xff, 0xff, 0xff, 0x0f}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeCommand(tt.data); !errors.Is(err, tt.want) {
				t.Fatalf("DecodeCommand = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestResponsesRoundTrip(t *testing.T) {
	rs := []Response{
		{Status: StatusApplied, Index: 12},
		{Status: StatusStale, Index: 12, Stale: []StaleTwin{{Tenant: tenantA, Kind: pebblestore.KindSensor, EUI: eui(3), Expected: 1, Current: 4}}},
		{Status: StatusInvalid, Index: 12, Reason: "bad tenant"},
	}
	got, err := decodeResponses(appendResponses(nil, rs))
	if err != nil || !reflect.DeepEqual(got, rs) {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	if _, err := decodeResponses([]byte{9}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad version: %v", err)
	}
}

func FuzzDecodeCommand(f *testing.F) {
	good, _ := EncodeCommand(
		Batch{Twins: []TwinUpdate{update(tenantA, 1, 0, "snap")}, Offsets: []Offset{{Topic: "t", Next: 1}}},
		Batch{Offsets: []Offset{{Topic: "u", Partition: 2, Next: 9}}},
	)
	f.Add(good)
	f.Add([]byte{'L', 'R', 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		bs, err := DecodeCommand(data)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v wraps neither ErrInvalid nor ErrUnsupported", err)
			}
			return
		}
		for i := range bs {
			if bs[i].Validate() != nil {
				continue
			}
			// A valid decoded batch re-encodes and decodes to itself.
			again, err := DecodeCommand(encodeCommand([][]byte{appendBatch(nil, &bs[i])}))
			if err != nil || len(again) != 1 || len(again[0].Twins) != len(bs[i].Twins) || len(again[0].Offsets) != len(bs[i].Offsets) {
				t.Fatalf("re-encoding batch %d: %+v, %v", i, again, err)
			}
		}
	})
}

func FuzzDecodeResponses(f *testing.F) {
	f.Add(appendResponses(nil, []Response{{Status: StatusStale, Index: 3, Stale: []StaleTwin{{Tenant: tenantA, Kind: 1, Current: 2}}}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := decodeResponses(data); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error %v does not wrap ErrInvalid", err)
		}
	})
}
