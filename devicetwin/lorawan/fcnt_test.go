package lorawan

import (
	"errors"
	"math"
	"testing"
)

func TestFullFCnt(t *testing.T) {
	tests := []struct {
		name     string
		last     uint32
		hasLast  bool
		wire     uint16
		want     uint32
		wantKind FCntKind
		wantErr  error
	}{
		{"first frame", 0, false, 0, 0, FCntFirst, nil},
		{"first frame mid-life ABP", 0, false, 40000, 40000, FCntFirst, nil},
		{"next", 0, true, 1, 1, FCntNew, nil},
		{"lost frames", 10, true, 15, 15, FCntNew, nil},
		{"retransmission", 10, true, 10, 10, FCntRetransmission, nil},
		{"retransmission high half", 0x0003fff0, true, 0xfff0, 0x0003fff0, FCntRetransmission, nil},
		{"roll-over", 0x0000ffff, true, 0x0000, 0x00010000, FCntNew, nil},
		{"roll-over with loss", 0x0001fff0, true, 0x0005, 0x00020005, FCntNew, nil},
		{"max gap", 100, true, 100 + MaxFCntGap, 100 + MaxFCntGap, FCntNew, nil},
		{"max gap across roll-over", 0xfff0, true, 0xfff0 + MaxFCntGap - 0x10000, 0xfff0 + MaxFCntGap, FCntNew, nil},
		{"gap too large", 100, true, 100 + MaxFCntGap + 1, 100 + MaxFCntGap + 1, FCntInvalid, ErrFCntGapTooLarge},
		{"gap too large middle", 0, true, 0x8000, 0x8000, FCntInvalid, ErrFCntGapTooLarge},
		{"replay one behind", 10, true, 9, 9, FCntInvalid, ErrFCntReplay},
		{"replay across roll-over", 0x00010002, true, 0xfffe, 0x0000fffe, FCntInvalid, ErrFCntReplay},
		{"replay far behind", 0x00020000, true, 0x10000 - MaxFCntGap, 0x00020000 - MaxFCntGap, FCntInvalid, ErrFCntReplay},
		{"old session frame", 5, true, 0xffff, 0xffff, FCntInvalid, ErrFCntReplay},
		{"exhausted", math.MaxUint32, true, 0, math.MaxUint32, FCntInvalid, ErrFCntExhausted},
		{"last counter", math.MaxUint32 - 1, true, 0xffff, math.MaxUint32, FCntNew, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, kind, err := FullFCnt(tt.last, tt.hasLast, tt.wire)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want || kind != tt.wantKind {
				t.Fatalf("FullFCnt(%#x, %v, %#x) = %#x %s, want %#x %s", tt.last, tt.hasLast, tt.wire, got, kind, tt.want, tt.wantKind)
			}
			if err == nil && uint16(got) != tt.wire {
				t.Fatalf("low half %#x != wire %#x", uint16(got), tt.wire)
			}
		})
	}
}

// TestFullFCntProperties sweeps every wire value around a few counters:
// accepted results never go backwards and always match the wire.
func TestFullFCntProperties(t *testing.T) {
	for _, last := range []uint32{0, 1, 0xfffe, 0xffff, 0x10000, 0x7fffffff, 0xfffeffff} {
		for w := 0; w <= 0xffff; w++ {
			got, kind, err := FullFCnt(last, true, uint16(w))
			switch {
			case err != nil:
				if kind != FCntInvalid || !isSentinel(err) {
					t.Fatalf("last %#x wire %#x: kind %s err %v", last, w, kind, err)
				}
			case kind == FCntRetransmission:
				if got != last {
					t.Fatalf("retransmission %#x != %#x", got, last)
				}
			default:
				if kind != FCntNew || got <= last || got-last > MaxFCntGap || uint16(got) != uint16(w) {
					t.Fatalf("last %#x wire %#x: %#x %s", last, w, got, kind)
				}
			}
		}
	}
}

func TestFCntKindString(t *testing.T) {
	for k, want := range map[FCntKind]string{FCntInvalid: "invalid", FCntFirst: "first", FCntNew: "new", FCntRetransmission: "retransmission"} {
		if k.String() != want {
			t.Errorf("%d: %q", k, k.String())
		}
	}
}
