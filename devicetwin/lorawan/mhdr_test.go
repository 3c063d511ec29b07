package lorawan

import (
	"errors"
	"testing"
)

func TestMType(t *testing.T) {
	tests := []struct {
		m                 MType
		name              string
		up, down, data, c bool
	}{
		{MTypeJoinRequest, "JoinRequest", true, false, false, false},
		{MTypeJoinAccept, "JoinAccept", false, true, false, false},
		{MTypeUnconfirmedDataUp, "UnconfirmedDataUp", true, false, true, false},
		{MTypeUnconfirmedDataDown, "UnconfirmedDataDown", false, true, true, false},
		{MTypeConfirmedDataUp, "ConfirmedDataUp", true, false, true, true},
		{MTypeConfirmedDataDown, "ConfirmedDataDown", false, true, true, true},
		{MTypeRFU, "RFU", false, false, false, false},
		{MTypeProprietary, "Proprietary", false, false, false, false},
		{MType(9), "MType(9)", false, false, false, false},
	}
	for _, tt := range tests {
		if got := tt.m.String(); got != tt.name {
			t.Errorf("%d.String() = %q, want %q", tt.m, got, tt.name)
		}
		if tt.m.IsUplink() != tt.up || tt.m.IsDownlink() != tt.down || tt.m.IsData() != tt.data || tt.m.IsConfirmed() != tt.c {
			t.Errorf("%s: up %v down %v data %v confirmed %v", tt.m, tt.m.IsUplink(), tt.m.IsDownlink(), tt.m.IsData(), tt.m.IsConfirmed())
		}
	}
}

func TestMHDR(t *testing.T) {
	tests := []struct {
		b       byte
		want    MHDR
		wantErr error
	}{
		{0x40, MHDR{MType: MTypeUnconfirmedDataUp}, nil},
		{0x80, MHDR{MType: MTypeConfirmedDataUp}, nil},
		{0x5c, MHDR{MType: MTypeUnconfirmedDataUp}, nil}, // RFU bits ignored
		{0x41, MHDR{}, ErrUnsupportedMajor},
		{0xe3, MHDR{}, ErrUnsupportedMajor},
	}
	for _, tt := range tests {
		got, err := ParseMHDR(tt.b)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("ParseMHDR(%#x) err %v, want %v", tt.b, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMHDR(%#x) = %+v, %v", tt.b, got, err)
		}
		if got.Byte() != tt.b&^0x1c {
			t.Errorf("Byte() = %#x", got.Byte())
		}
	}
	if _, err := PeekMType(nil); !errors.Is(err, ErrTooShort) {
		t.Errorf("PeekMType(nil): %v", err)
	}
	if m, err := PeekMType([]byte{0x20, 1, 2}); err != nil || m != MTypeJoinAccept {
		t.Errorf("PeekMType: %v %v", m, err)
	}
}

func TestFCtrl(t *testing.T) {
	tests := []struct {
		name    string
		b       byte
		uplink  bool
		want    FCtrl
		reenc   byte // expected Byte(); differs from b when RFU bits are dropped
		wantErr error
	}{
		{"uplink all", 0xff, true, FCtrl{ADR: true, ADRACKReq: true, ACK: true, ClassB: true, FOptsLen: 15}, 0xff, nil},
		{"uplink none", 0x00, true, FCtrl{}, 0x00, nil},
		{"uplink ADR+3", 0x83, true, FCtrl{ADR: true, FOptsLen: 3}, 0x83, nil},
		{"downlink all", 0xff, false, FCtrl{ADR: true, ACK: true, FPending: true, FOptsLen: 15}, 0xbf, nil},
		{"downlink ACK", 0x20, false, FCtrl{ACK: true}, 0x20, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseFCtrl(tt.b, tt.uplink)
			if got != tt.want {
				t.Fatalf("ParseFCtrl = %+v, want %+v", got, tt.want)
			}
			b, err := got.Byte(tt.uplink)
			if err != nil || b != tt.reenc {
				t.Fatalf("Byte = %#x, %v; want %#x", b, err, tt.reenc)
			}
		})
	}
	bad := []struct {
		c      FCtrl
		uplink bool
	}{
		{FCtrl{FPending: true}, true},
		{FCtrl{ClassB: true}, false},
		{FCtrl{ADRACKReq: true}, false},
		{FCtrl{FOptsLen: 16}, true},
	}
	for _, tt := range bad {
		if _, err := tt.c.Byte(tt.uplink); !errors.Is(err, ErrInvalidFCtrl) {
			t.Errorf("%+v uplink=%v: %v, want ErrInvalidFCtrl", tt.c, tt.uplink, err)
		}
	}
}
