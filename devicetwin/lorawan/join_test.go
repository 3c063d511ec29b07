package lorawan

import (
	"bytes"
	"errors"
	"testing"
)

func TestJoinRoundTrip(t *testing.T) {
	appKey := mustKey(t, "000102030405060708090a0b0c0d0e0f")
	jr := JoinRequest{
		JoinEUI:  EUI64{0x70, 0xb3, 0xd5, 0x7e, 0xd0, 0, 0, 0xdc},
		DevEUI:   EUI64{0xa8, 0x40, 0x41, 0, 1, 2, 3, 4},
		DevNonce: 0x1234,
	}
	phy, err := BuildJoinRequest(appKey, jr)
	if err != nil {
		t.Fatal(err)
	}
	if len(phy) != 23 || phy[0] != 0x00 || phy[1] != 0xdc || phy[17] != 0x34 {
		t.Fatalf("layout %x", phy)
	}
	got, err := VerifyJoinRequest(appKey, phy)
	if err != nil {
		t.Fatal(err)
	}
	jr.MIC = got.MIC
	if got != jr {
		t.Errorf("got %+v want %+v", got, jr)
	}
	if _, err := VerifyJoinRequest(AES128Key{}, phy); !errors.Is(err, ErrInvalidMIC) {
		t.Errorf("wrong key: %v", err)
	}

	for _, withCF := range []bool{false, true} {
		ja := JoinAccept{
			JoinNonce: JoinNonce{1, 2, 3}, NetID: NetID{0, 0, 0x13}, DevAddr: DevAddr{0x26, 1, 2, 3},
			DLSettings: DLSettings{RX1DROffset: 5, RX2DataRate: 12}, RxDelay: 15,
		}
		if withCF {
			ja.HasCFList = true
			copy(ja.CFList[:], bytes.Repeat([]byte{0xab}, 16))
		}
		phy, err := BuildJoinAccept(appKey, ja)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecryptJoinAccept(appKey, phy)
		if err != nil || got != ja {
			t.Fatalf("cf=%v: got %+v, %v", withCF, got, err)
		}
		if _, err := DecryptJoinAccept(AES128Key{1}, phy); !errors.Is(err, ErrInvalidMIC) {
			t.Errorf("wrong key: %v", err)
		}
	}
	if _, err := BuildJoinAccept(appKey, JoinAccept{RxDelay: 16}); !errors.Is(err, ErrInvalidField) {
		t.Errorf("RxDelay 16: %v", err)
	}
	if _, err := BuildJoinAccept(appKey, JoinAccept{DLSettings: DLSettings{RX1DROffset: 8}}); !errors.Is(err, ErrInvalidField) {
		t.Errorf("RX1DROffset 8: %v", err)
	}
}

func TestJoinFrameErrors(t *testing.T) {
	key := AES128Key{}
	tests := []struct {
		name    string
		phy     string
		accept  bool
		wantErr error
	}{
		{"request empty", "", false, ErrTooShort},
		{"request short", "0039363463336913AA05693574323831330489C65B13", false, ErrTooShort},
		{"request long", "0039363463336913AA05693574323831330489C65B130400", false, ErrTooLong},
		{"request with data mtype", "4039363463336913AA05693574323831330489C65B1304", false, ErrUnexpectedMType},
		{"request major 2", "0239363463336913AA05693574323831330489C65B1304", false, ErrUnsupportedMajor},
		{"accept short", "20e3de108795f776b8037610ef7869b5", true, ErrTooShort},
		{"accept 25 bytes", "20e3de108795f776b8037610ef7869b5b3e3de108795f776b8", true, ErrInvalidLength},
		{"accept 34 bytes", "20" + "e3de108795f776b8037610ef7869b5b3" + "e3de108795f776b8037610ef7869b5b3" + "00", true, ErrTooLong},
		{"accept as request", "00e3de108795f776b8037610ef7869b5b3", true, ErrUnexpectedMType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.accept {
				_, err = DecryptJoinAccept(key, mustHex(t, tt.phy))
			} else {
				_, err = ParseJoinRequest(mustHex(t, tt.phy))
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
