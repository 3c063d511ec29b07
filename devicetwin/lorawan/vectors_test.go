package lorawan

import (
	"bytes"
	"crypto/aes"
	"encoding/hex"
	"errors"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func mustKey(t testing.TB, s string) AES128Key {
	t.Helper()
	k, err := ParseAES128Key(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCMACRFC4493 checks the AES-CMAC implementation against the four
// examples of RFC 4493 §4 (key 2b7e1516…, messages of 0, 16, 40, 64 bytes)
// and its subkey example (§4, "Subkey Generation").
func TestCMACRFC4493(t *testing.T) {
	key := mustKey(t, "2b7e151628aed2a6abf7158809cf4f3c")
	b, err := aes.NewCipher(key[:])
	if err != nil {
		t.Fatal(err)
	}
	c := newCMACKey(b)
	if got, want := hex.EncodeToString(c.k1[:]), "fbeed618357133667c85e08f7236a8de"; got != want {
		t.Errorf("K1 = %s, want %s", got, want)
	}
	if got, want := hex.EncodeToString(c.k2[:]), "f7ddac306ae266ccf90bc11ee46d513b"; got != want {
		t.Errorf("K2 = %s, want %s", got, want)
	}
	const m = "6bc1bee22e409f96e93d7e117393172a" + "ae2d8a571e03ac9c9eb76fac45af8e51" +
		"30c81c46a35ce411e5fbc1191a0a52ef" + "f69f2445df4f9b17ad2b417be66c3710"
	tests := []struct {
		name string
		msg  string
		want string
	}{
		{"example 1 (empty)", "", "bb1d6929e95937287fa37d129b756746"},
		{"example 2 (16 bytes)", m[:32], "070a16b46b4d4144f79bdd9dd04a287c"},
		{"example 3 (40 bytes)", m[:80], "dfa66747de9ae63030ca32611497c827"},
		{"example 4 (64 bytes)", m, "51f0bebf7e3b9d92fc49741779363cfe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tag, err := cmac(key, mustHex(t, tt.msg))
			if err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(tag[:]); got != tt.want {
				t.Errorf("CMAC = %s, want %s", got, tt.want)
			}
		})
	}
}

// Session keys of the lora-packet examples: README and __tests__/mic_test.ts,
// __tests__/decrypt_test.ts of github.com/anthonykirby/lora-packet.
const (
	lpNwkSKey = "44024241ed4ce9a68c6a8bc055233fd3"
	lpAppSKey = "ec925802ae430ca77fd3dd73cb2cc588"
)

// TestDataFramePublishedVectors checks published data frames with their
// known keys: MIC and decrypted payload.
func TestDataFramePublishedVectors(t *testing.T) {
	tests := []struct {
		name      string
		source    string
		phy       string
		nwk, app  string
		mtype     MType
		devAddr   string
		fctrl     FCtrl
		fcnt      uint32
		hasFPort  bool
		fport     uint8
		plaintext string // hex; "" when none
		mic       string
	}{
		{
			name:   "uplink test",
			source: "lora-packet README, __tests__/mic_test.ts, __tests__/decrypt_test.ts",
			phy:    "40F17DBE4900020001954378762B11FF0D", nwk: lpNwkSKey, app: lpAppSKey,
			mtype: MTypeUnconfirmedDataUp, devAddr: "49be7df1", fcnt: 2, hasFPort: true, fport: 1,
			plaintext: hex.EncodeToString([]byte("test")), mic: "2b11ff0d",
		},
		{
			name:   "uplink 44-byte payload",
			source: "lora-packet __tests__/decrypt_test.ts (decrypt only; MIC checked here)",
			phy:    "40f17dbe490004000155332de41a11adc072553544429ce7787707d1c316e027e7e5e334263376affb8aa17ad30075293f28dea8a20af3c5e7",
			nwk:    lpNwkSKey, app: lpAppSKey,
			mtype: MTypeUnconfirmedDataUp, devAddr: "49be7df1", fcnt: 4, hasFPort: true, fport: 1,
			plaintext: hex.EncodeToString([]byte("The quick brown fox jumps over the lazy dog.")),
			mic:       "0af3c5e7",
		},
		{
			name:   "uplink FPort without payload",
			source: "lora-packet __tests__/mic_test.ts",
			phy:    "40F17DBE49000300012A3518AF", nwk: lpNwkSKey, app: lpAppSKey,
			mtype: MTypeUnconfirmedDataUp, devAddr: "49be7df1", fcnt: 3, hasFPort: true, fport: 1,
			mic: "2a3518af",
		},
		{
			name:   "downlink ACK",
			source: "lora-packet __tests__/mic_test.ts",
			phy:    "60f17dbe4920020001f9d65d27", nwk: lpNwkSKey, app: lpAppSKey,
			mtype: MTypeUnconfirmedDataDown, devAddr: "49be7df1", fctrl: FCtrl{ACK: true}, fcnt: 2,
			hasFPort: true, fport: 1, mic: "f9d65d27",
		},
		{
			name:   "uplink TTN",
			source: "https://lorawan-packet-decoder-0ta6puiniaut.runkit.sh/?data=40AE13…&nwkskey=99D5…&appskey=0A50… (TTN decoder example, also in LMIC unit tests)",
			phy:    "40AE130426800000016F895D98810714E3268295",
			nwk:    "99D58493D1205B43EFF938F0F66C339E", app: "0A501524F8EA5FCBF9BDB5AD7D126F75",
			mtype: MTypeUnconfirmedDataUp, devAddr: "260413ae", fctrl: FCtrl{ADR: true}, fcnt: 0,
			hasFPort: true, fport: 1, mic: "e3268295",
			// The decoder page shows the payload; the MIC verifying under the
			// published NwkSKey is the independent check here.
			plaintext: hex.EncodeToString([]byte("abcdefg")),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			phy := mustHex(t, tt.phy)
			f, err := ParseDataFrame(phy)
			if err != nil {
				t.Fatal(err)
			}
			if f.MType != tt.mtype || f.DevAddr.String() != tt.devAddr || f.FCtrl != tt.fctrl ||
				uint32(f.FCnt16) != tt.fcnt || f.HasFPort != tt.hasFPort || f.FPort != tt.fport {
				t.Errorf("parsed %+v", f)
			}
			if hex.EncodeToString(f.MIC[:]) != tt.mic {
				t.Errorf("MIC field %x, want %s", f.MIC, tt.mic)
			}
			nwk, app := mustKey(t, tt.nwk), mustKey(t, tt.app)
			if err := VerifyDataMIC(nwk, &f, tt.fcnt); err != nil {
				t.Errorf("VerifyDataMIC: %v", err)
			}
			k, err := NewSessionKeys(nwk, app)
			if err != nil {
				t.Fatal(err)
			}
			if err := k.VerifyMIC(&f, tt.fcnt); err != nil {
				t.Errorf("SessionKeys.VerifyMIC: %v", err)
			}
			got := k.DecryptFRMPayload(nil, &f, tt.fcnt)
			if hex.EncodeToString(got) != tt.plaintext {
				t.Errorf("plaintext %x, want %s", got, tt.plaintext)
			}
			if err := k.VerifyMIC(&f, tt.fcnt+1<<16); !errors.Is(err, ErrInvalidMIC) {
				t.Errorf("MIC with another high half: %v, want ErrInvalidMIC", err)
			}
		})
	}
}

// TestJoinRequestPublishedVectors checks published join requests: fields
// and MIC under the AppKey.
func TestJoinRequestPublishedVectors(t *testing.T) {
	tests := []struct {
		name, source    string
		phy, appKey     string
		joinEUI, devEUI string
		devNonce        DevNonce
	}{
		{
			name:   "lora-packet",
			source: "github.com/anthonykirby/lora-packet __tests__/mic_test.ts",
			phy:    "0039363463336913AA05693574323831330489C65B1304", appKey: "98929b92c49edba9676d646d3b612456",
			joinEUI: "aa13693363343639", devEUI: "3331383274356905", devNonce: 0x8904,
		},
		{
			name:   "TTN runkit",
			source: "https://runkit.com/avbentem/deciphering-a-lorawan-otaa-join-accept",
			phy:    "00DC0000D07ED5B3701E6FEDF57CEEAF0085CC587FE913", appKey: "B6B53F4A168A7A88BDF7EA135CE9CFCA",
			joinEUI: "70b3d57ed00000dc", devEUI: "00afee7cf5ed6f1e", devNonce: 0xcc85,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			phy, key := mustHex(t, tt.phy), mustKey(t, tt.appKey)
			jr, err := VerifyJoinRequest(key, phy)
			if err != nil {
				t.Fatal(err)
			}
			if jr.JoinEUI.String() != tt.joinEUI || jr.DevEUI.String() != tt.devEUI || jr.DevNonce != tt.devNonce {
				t.Errorf("parsed %+v", jr)
			}
			again, err := BuildJoinRequest(key, jr)
			if err != nil || !bytes.Equal(again, phy) {
				t.Errorf("BuildJoinRequest = %x, %v; want %x", again, err, phy)
			}
			bad := bytes.Clone(phy)
			bad[len(bad)-1] ^= 1
			if _, err := VerifyJoinRequest(key, bad); !errors.Is(err, ErrInvalidMIC) {
				t.Errorf("flipped MIC: %v, want ErrInvalidMIC", err)
			}
		})
	}
}

// TestJoinAcceptPublishedVectors checks published join accepts: decryption,
// MIC, fields, re-encryption and (where the DevNonce is known) session keys.
func TestJoinAcceptPublishedVectors(t *testing.T) {
	tests := []struct {
		name, source     string
		phy, appKey      string
		want             JoinAccept
		cfList           string
		devNonce         DevNonce
		nwkSKey, appSKey string
	}{
		{
			name:   "TTN with CFList",
			source: "https://runkit.com/avbentem/deciphering-a-lorawan-otaa-join-accept (Arjan van Bentem)",
			phy:    "204DD85AE608B87FC4889970B7D2042C9E72959B0057AED6094B16003DF12DE145",
			appKey: "B6B53F4A168A7A88BDF7EA135CE9CFCA",
			want: JoinAccept{
				JoinNonce: JoinNonce{0xe5, 0x06, 0x3a}, NetID: NetID{0x00, 0x00, 0x13},
				DevAddr: DevAddr{0x26, 0x01, 0x2e, 0x43}, DLSettings: DLSettings{RX2DataRate: 3},
				RxDelay: 1, HasCFList: true,
			},
			cfList:   "184f84e85684b85e84886684586e8400",
			devNonce: 0xcc85,
			nwkSKey:  "2c96f7028184bb0be8aa49275290d4fc",
			appSKey:  "f3a5c8f0232a38c144029c165865802c",
		},
		{
			name:   "all zero",
			source: "github.com/anthonykirby/lora-packet __tests__/join_accept_encrypt.ts",
			phy:    "20e3de108795f776b8037610ef7869b5b3",
			appKey: "00000000000000000000000000000000",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			phy, key := mustHex(t, tt.phy), mustKey(t, tt.appKey)
			want := tt.want
			if tt.cfList != "" {
				copy(want.CFList[:], mustHex(t, tt.cfList))
			}
			ja, err := DecryptJoinAccept(key, phy)
			if err != nil {
				t.Fatal(err)
			}
			if ja != want {
				t.Errorf("got %+v\nwant %+v", ja, want)
			}
			again, err := BuildJoinAccept(key, ja)
			if err != nil || !bytes.Equal(again, phy) {
				t.Errorf("BuildJoinAccept = %x, %v; want %x", again, err, phy)
			}
			bad := bytes.Clone(phy)
			bad[len(bad)-1] ^= 1
			if _, err := DecryptJoinAccept(key, bad); !errors.Is(err, ErrInvalidMIC) {
				t.Errorf("flipped byte: %v, want ErrInvalidMIC", err)
			}
			if tt.nwkSKey == "" {
				return
			}
			nwk, app, err := DeriveSessionKeys(key, ja.JoinNonce, ja.NetID, tt.devNonce)
			if err != nil {
				t.Fatal(err)
			}
			if nwk.String() != tt.nwkSKey || app.String() != tt.appSKey {
				t.Errorf("keys %s %s, want %s %s", nwk, app, tt.nwkSKey, tt.appSKey)
			}
		})
	}
}

// TestJoinAcceptPlaintextMICVector checks the join-accept MIC on the
// unencrypted example of lora-packet __tests__/mic_test.ts: building the
// accept and undoing the network-side encryption must give the published
// plaintext 20386337CCBBAAE7CD2C010000 with MIC D9D0A6E7.
func TestJoinAcceptPlaintextMICVector(t *testing.T) {
	key := mustKey(t, "98929b92c49edba9676d646d3b612456")
	ja := JoinAccept{JoinNonce: JoinNonce{0x37, 0x63, 0x38}, NetID: NetID{0xaa, 0xbb, 0xcc}, DevAddr: DevAddr{0x01, 0x2c, 0xcd, 0xe7}}
	phy, err := BuildJoinAccept(key, ja)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := aes.NewCipher(key[:])
	b.Encrypt(phy[1:], phy[1:])
	if got, want := hex.EncodeToString(phy), "20386337ccbbaae7cd2c010000d9d0a6e7"; got != want {
		t.Errorf("plaintext join accept %s, want %s", got, want)
	}
}

// TestDeriveSessionKeysVector checks key derivation against
// github.com/anthonykirby/lora-packet __tests__/key_gen_test.ts.
func TestDeriveSessionKeysVector(t *testing.T) {
	nwk, app, err := DeriveSessionKeys(mustKey(t, "98929b92c49edba9676d646d3b612456"),
		JoinNonce{0x37, 0x63, 0x38}, NetID{0xaa, 0xbb, 0xcc}, 0xf18e)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := nwk.String(), "4e3d6e6afbcc67af2ba3c8e8ec4acf4b"; got != want {
		t.Errorf("NwkSKey %s, want %s", got, want)
	}
	if got, want := app.String(), "610897aa6f1460623443b527d3ac6a9d"; got != want {
		t.Errorf("AppSKey %s, want %s", got, want)
	}
}
