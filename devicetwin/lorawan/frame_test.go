package lorawan

import (
	"bytes"
	"errors"
	"testing"
)

func testKeys(t testing.TB) (AES128Key, AES128Key, *SessionKeys) {
	t.Helper()
	nwk := mustKey(t, lpNwkSKey)
	app := mustKey(t, lpAppSKey)
	k, err := NewSessionKeys(nwk, app)
	if err != nil {
		t.Fatal(err)
	}
	return nwk, app, k
}

func TestParseDataFrameErrors(t *testing.T) {
	tests := []struct {
		name    string
		phy     string
		wantErr error
	}{
		{"empty", "", ErrTooShort},
		{"11 bytes", "40f17dbe49000200010203", ErrTooShort},
		{"join request", "0039363463336913AA05693574323831330489C65B1304", ErrUnexpectedMType},
		{"join accept", "20e3de108795f776b8037610ef7869b5b3", ErrUnexpectedMType},
		{"proprietary", "e0f17dbe4900020001954378762b11ff0d", ErrUnexpectedMType},
		{"rfu", "c0f17dbe4900020001954378762b11ff0d", ErrUnexpectedMType},
		{"major 1", "41f17dbe4900020001954378762b11ff0d", ErrUnsupportedMajor},
		{"FOptsLen beyond frame", "40f17dbe490f02000102030405", ErrTooShort},
		{"FPort 0 with FOpts", "40f17dbe4901020003000102030405", ErrFPortZeroWithFOpts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseDataFrame(mustHex(t, tt.phy))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if f.PHYPayload != nil {
				t.Errorf("frame returned with error: %+v", f)
			}
		})
	}
	if _, err := ParseDataFrame(make([]byte, 256)); !errors.Is(err, ErrTooLong) {
		t.Errorf("256 bytes: %v", err)
	}
}

func TestParseDataFrameIsZeroCopy(t *testing.T) {
	phy := mustHex(t, "40f17dbe49020200aabb01954378762b11ff0d")
	f, err := ParseDataFrame(phy)
	if err != nil {
		t.Fatal(err)
	}
	if &f.FOpts[0] != &phy[8] || &f.FRMPayload[0] != &phy[11] || &f.PHYPayload[0] != &phy[0] {
		t.Error("fields do not alias the input")
	}
	if cap(f.FOpts) != 2 || cap(f.FRMPayload) != 4 {
		t.Errorf("caps %d %d: appending to a field must not clobber the frame", cap(f.FOpts), cap(f.FRMPayload))
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseDataFrame(phy) }); n != 0 {
		t.Errorf("ParseDataFrame allocates %v times", n)
	}
}

// TestDataFrameRoundTrip builds every data MType with and without FOpts,
// FPort 0 and application ports, then parses, verifies and decrypts.
func TestDataFrameRoundTrip(t *testing.T) {
	nwk, app, k := testKeys(t)
	addr := DevAddr{0x26, 0x01, 0x2e, 0x43}
	long := bytes.Repeat([]byte{0x5a}, 300)
	tests := []struct {
		name string
		p    DataFrameParams
	}{
		{"unconfirmed up", DataFrameParams{MType: MTypeUnconfirmedDataUp, FCnt: 7, HasFPort: true, FPort: 1, FRMPayload: []byte("hello clip")}},
		{"confirmed up", DataFrameParams{MType: MTypeConfirmedDataUp, FCtrl: FCtrl{ADR: true, ADRACKReq: true}, FCnt: 0x12345, HasFPort: true, FPort: 2, FRMPayload: []byte{1, 2, 3}}},
		{"unconfirmed down", DataFrameParams{MType: MTypeUnconfirmedDataDown, FCtrl: FCtrl{ACK: true, FPending: true}, FCnt: 1, HasFPort: true, FPort: 10, FRMPayload: []byte("config")}},
		{"confirmed down", DataFrameParams{MType: MTypeConfirmedDataDown, FCnt: 65536, HasFPort: true, FPort: 223, FRMPayload: long[:40]}},
		{"up FOpts no port", DataFrameParams{MType: MTypeUnconfirmedDataUp, FCtrl: FCtrl{ClassB: true}, FCnt: 3, FOpts: []byte{0x02}}},
		{"up FOpts and port", DataFrameParams{MType: MTypeUnconfirmedDataUp, FCnt: 4, FOpts: bytes.Repeat([]byte{0x03}, 15), HasFPort: true, FPort: 3, FRMPayload: []byte{9}}},
		{"up FPort 0 MAC commands", DataFrameParams{MType: MTypeUnconfirmedDataUp, FCnt: 5, HasFPort: true, FPort: 0, FRMPayload: []byte{0x02, 0x03, 0x01}}},
		{"down FPort 0", DataFrameParams{MType: MTypeUnconfirmedDataDown, FCnt: 5, HasFPort: true, FPort: 0, FRMPayload: []byte{0x06}}},
		{"empty ack", DataFrameParams{MType: MTypeUnconfirmedDataDown, FCtrl: FCtrl{ACK: true}, FCnt: 9}},
		{"port without payload", DataFrameParams{MType: MTypeUnconfirmedDataUp, FCnt: 9, HasFPort: true, FPort: 1}},
		{"max size", DataFrameParams{MType: MTypeUnconfirmedDataUp, FCnt: 0xfffffffe, HasFPort: true, FPort: 1, FRMPayload: long[:242]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.p
			p.DevAddr = addr
			phy, err := BuildDataFrame(nwk, app, p)
			if err != nil {
				t.Fatal(err)
			}
			viaKeys, err := k.AppendDataFrame([]byte("prefix"), p)
			if err != nil || !bytes.Equal(viaKeys[6:], phy) || string(viaKeys[:6]) != "prefix" {
				t.Fatalf("AppendDataFrame differs: %x, %v", viaKeys, err)
			}
			f, err := ParseDataFrame(phy)
			if err != nil {
				t.Fatal(err)
			}
			want := p.FCtrl
			want.FOptsLen = uint8(len(p.FOpts))
			if f.MType != p.MType || f.DevAddr != addr || f.FCtrl != want || f.FCnt16 != uint16(p.FCnt) ||
				!bytes.Equal(f.FOpts, p.FOpts) || f.HasFPort != p.HasFPort || f.FPort != p.FPort {
				t.Fatalf("parsed %+v from %+v", f, p)
			}
			if len(p.FRMPayload) > 0 && bytes.Equal(f.FRMPayload, p.FRMPayload) {
				t.Error("FRMPayload sent in clear")
			}
			if err := k.VerifyMIC(&f, p.FCnt); err != nil {
				t.Fatal(err)
			}
			if err := VerifyDataMIC(nwk, &f, p.FCnt); err != nil {
				t.Fatal(err)
			}
			upErr := k.VerifyUplinkMIC(&f, p.FCnt)
			if p.MType.IsUplink() && upErr != nil {
				t.Errorf("VerifyUplinkMIC: %v", upErr)
			}
			if !p.MType.IsUplink() && !errors.Is(upErr, ErrUnexpectedMType) {
				t.Errorf("VerifyUplinkMIC on downlink: %v", upErr)
			}
			plain := k.DecryptFRMPayload([]byte("x"), &f, p.FCnt)
			if string(plain[:1]) != "x" || !bytes.Equal(plain[1:], p.FRMPayload) {
				t.Errorf("decrypted %x, want %x", plain[1:], p.FRMPayload)
			}
			key := app
			if p.FPort == 0 {
				key = nwk
			}
			plain2, err := DecryptFRMPayload(key, nil, &f, p.FCnt)
			if err != nil || !bytes.Equal(plain2, p.FRMPayload) {
				t.Errorf("DecryptFRMPayload %x, %v", plain2, err)
			}
			if err := k.VerifyMIC(&f, p.FCnt^0x10000); !errors.Is(err, ErrInvalidMIC) {
				t.Errorf("wrong high half: %v", err)
			}
			if err := k.VerifyMIC(&f, p.FCnt+1); !errors.Is(err, ErrFCntMismatch) {
				t.Errorf("wrong low half: %v", err)
			}
			other, _ := NewSessionKeys(app, nwk)
			if err := other.VerifyMIC(&f, p.FCnt); !errors.Is(err, ErrInvalidMIC) {
				t.Errorf("wrong key: %v", err)
			}
			for i := range phy {
				bad := bytes.Clone(phy)
				bad[i] ^= 0x01
				bf, err := ParseDataFrame(bad)
				if err != nil {
					continue
				}
				fcnt := p.FCnt&^0xffff | uint32(bf.FCnt16)
				if err := k.VerifyMIC(&bf, fcnt); !errors.Is(err, ErrInvalidMIC) {
					t.Fatalf("bit flip in byte %d: %v", i, err)
				}
			}
		})
	}
}

func TestBuildDataFrameErrors(t *testing.T) {
	nwk, app, _ := testKeys(t)
	tests := []struct {
		name    string
		p       DataFrameParams
		wantErr error
	}{
		{"join request", DataFrameParams{MType: MTypeJoinRequest}, ErrUnexpectedMType},
		{"proprietary", DataFrameParams{MType: MTypeProprietary}, ErrUnexpectedMType},
		{"16 bytes FOpts", DataFrameParams{MType: MTypeUnconfirmedDataUp, FOpts: make([]byte, 16)}, ErrFOptsLength},
		{"payload without port", DataFrameParams{MType: MTypeUnconfirmedDataUp, FRMPayload: []byte{1}}, ErrMissingFPort},
		{"FPort 0 with FOpts", DataFrameParams{MType: MTypeUnconfirmedDataUp, FOpts: []byte{2}, HasFPort: true, FRMPayload: []byte{1}}, ErrFPortZeroWithFOpts},
		{"FPending uplink", DataFrameParams{MType: MTypeConfirmedDataUp, FCtrl: FCtrl{FPending: true}}, ErrInvalidFCtrl},
		{"ClassB downlink", DataFrameParams{MType: MTypeConfirmedDataDown, FCtrl: FCtrl{ClassB: true}}, ErrInvalidFCtrl},
		{"too long", DataFrameParams{MType: MTypeUnconfirmedDataUp, HasFPort: true, FPort: 1, FRMPayload: make([]byte, 243)}, ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := BuildDataFrame(nwk, app, tt.p); !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestSessionKeysConcurrent exercises the shared scratch block from many
// goroutines; run with -race.
func TestSessionKeysConcurrent(t *testing.T) {
	_, _, k := testKeys(t)
	phy := mustHex(t, "40F17DBE4900020001954378762B11FF0D")
	f, err := ParseDataFrame(phy)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	for g := 0; g < 8; g++ {
		go func() {
			var buf []byte
			for i := 0; i < 500; i++ {
				if err := k.VerifyUplinkMIC(&f, 2); err != nil {
					done <- err
					return
				}
				buf = k.DecryptFRMPayload(buf[:0], &f, 2)
				if string(buf) != "test" {
					done <- errors.New("bad plaintext " + string(buf))
					return
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
