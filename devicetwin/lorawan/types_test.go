package lorawan

import (
	"encoding/json"
	"errors"
	"testing"
)

// sentinels lists every exported error; decoders must only return these.
var sentinels = []error{
	ErrTooShort, ErrTooLong, ErrInvalidMIC, ErrUnsupportedMajor, ErrUnexpectedMType,
	ErrFOptsLength, ErrFPortZeroWithFOpts, ErrMissingFPort, ErrInvalidFCtrl, ErrInvalidField,
	ErrInvalidHex, ErrInvalidLength, ErrFCntMismatch, ErrFCntGapTooLarge, ErrFCntReplay,
	ErrFCntExhausted,
}

func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func TestParseIdentifiers(t *testing.T) {
	tests := []struct {
		name    string
		parse   func(string) (string, error)
		in      string
		want    string
		wantErr error
	}{
		{"EUI64 lower", func(s string) (string, error) { v, err := ParseEUI64(s); return v.String(), err }, "70b3d57ed00000dc", "70b3d57ed00000dc", nil},
		{"EUI64 upper", func(s string) (string, error) { v, err := ParseEUI64(s); return v.String(), err }, "70B3D57ED00000DC", "70b3d57ed00000dc", nil},
		{"EUI64 short", func(s string) (string, error) { v, err := ParseEUI64(s); return v.String(), err }, "70b3d57ed00000", "", ErrInvalidLength},
		{"EUI64 separators", func(s string) (string, error) { v, err := ParseEUI64(s); return v.String(), err }, "70-b3-d5-7e-d0-00-00-dc", "", ErrInvalidLength},
		{"EUI64 not hex", func(s string) (string, error) { v, err := ParseEUI64(s); return v.String(), err }, "70b3d57ed00000zz", "", ErrInvalidHex},
		{"DevAddr", func(s string) (string, error) { v, err := ParseDevAddr(s); return v.String(), err }, "26012E43", "26012e43", nil},
		{"DevAddr long", func(s string) (string, error) { v, err := ParseDevAddr(s); return v.String(), err }, "26012e4300", "", ErrInvalidLength},
		{"DevAddr not hex", func(s string) (string, error) { v, err := ParseDevAddr(s); return v.String(), err }, "26012e4g", "", ErrInvalidHex},
		{"key", func(s string) (string, error) { v, err := ParseAES128Key(s); return v.String(), err }, "2B7E151628AED2A6ABF7158809CF4F3C", "2b7e151628aed2a6abf7158809cf4f3c", nil},
		{"key empty", func(s string) (string, error) { v, err := ParseAES128Key(s); return v.String(), err }, "", "", ErrInvalidLength},
		{"NetID", func(s string) (string, error) { v, err := ParseNetID(s); return v.String(), err }, "000013", "000013", nil},
		{"JoinNonce", func(s string) (string, error) { v, err := ParseJoinNonce(s); return v.String(), err }, "E5063A", "e5063a", nil},
		{"DevNonce", func(s string) (string, error) { v, err := ParseDevNonce(s); return v.String(), err }, "CC85", "cc85", nil},
		{"DevNonce odd", func(s string) (string, error) { v, err := ParseDevNonce(s); return v.String(), err }, "c85", "", ErrInvalidLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestIdentifierJSON(t *testing.T) {
	type provisioning struct {
		DevEUI   EUI64
		DevAddr  DevAddr
		NwkSKey  AES128Key
		NetID    NetID
		Nonce    JoinNonce
		DevNonce DevNonce
	}
	in := provisioning{
		DevEUI: EUI64{0x00, 0xaf, 0xee, 0x7c, 0xf5, 0xed, 0x6f, 0x1e}, DevAddr: DevAddr{0x26, 0x01, 0x2e, 0x43},
		NwkSKey: AES128Key{1, 2, 3}, NetID: NetID{0, 0, 0x13}, Nonce: JoinNonce{0xe5, 6, 0x3a}, DevNonce: 0xcc85,
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"DevEUI":"00afee7cf5ed6f1e","DevAddr":"26012e43","NwkSKey":"01020300000000000000000000000000","NetID":"000013","Nonce":"e5063a","DevNonce":"cc85"}`
	if string(b) != want {
		t.Errorf("json %s\nwant %s", b, want)
	}
	var out provisioning
	if err := json.Unmarshal(b, &out); err != nil || out != in {
		t.Errorf("round trip %+v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`{"DevEUI":"nothex!!nothex!!"}`), &out); !errors.Is(err, ErrInvalidHex) {
		t.Errorf("bad EUI: %v", err)
	}
}

func TestDevAddrNwkID(t *testing.T) {
	// TTN's NetID 0x000013 gives NwkID 0x13: DevAddrs 26xxxxxx and 27xxxxxx.
	for _, s := range []string{"26012e43", "27ffffff"} {
		a, _ := ParseDevAddr(s)
		if a.NwkID() != 0x13 {
			t.Errorf("%s NwkID %#x, want 0x13", s, a.NwkID())
		}
	}
	a, _ := ParseDevAddr("26012e43")
	if a.Uint32() != 0x26012e43 {
		t.Errorf("Uint32 %#x", a.Uint32())
	}
}
