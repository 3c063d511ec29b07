package lorawan

import (
	"bytes"
	"testing"
)

// FuzzParseDataFrame feeds arbitrary bytes to the data-frame parser and the
// session crypto: no panic, only sentinel errors, fields that alias the
// input, and a rebuild of every accepted frame that reproduces its header.
func FuzzParseDataFrame(f *testing.F) {
	for _, s := range []string{
		"40F17DBE4900020001954378762B11FF0D",
		"60f17dbe4920020001f9d65d27",
		"40F17DBE49000300012A3518AF",
		"40AE130426800000016F895D98810714E3268295",
		"80f17dbe4985020003aabbcc00112233",
		"40f17dbe4901020003000102030405",
		"",
		"40",
	} {
		b, _ := hexDecodeForFuzz(s)
		f.Add(b)
	}
	nwk, app := AES128Key{1}, AES128Key{2}
	keys, err := NewSessionKeys(nwk, app)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, phy []byte) {
		orig := bytes.Clone(phy)
		df, err := ParseDataFrame(phy)
		if _, perr := PeekMType(phy); perr != nil && !isSentinel(perr) {
			t.Fatalf("PeekMType error %v is not a sentinel", perr)
		}
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("error %v is not a sentinel", err)
			}
			return
		}
		if len(df.PHYPayload) != len(phy) || len(df.FOpts) != int(df.FCtrl.FOptsLen) {
			t.Fatalf("inconsistent frame %+v", df)
		}
		fcnt := uint32(df.FCnt16) | 0x10000
		if err := keys.VerifyMIC(&df, fcnt); err != nil && !isSentinel(err) {
			t.Fatalf("VerifyMIC error %v is not a sentinel", err)
		}
		plain := keys.DecryptFRMPayload(nil, &df, fcnt)
		if len(plain) != len(df.FRMPayload) {
			t.Fatalf("plaintext %d bytes, FRMPayload %d", len(plain), len(df.FRMPayload))
		}
		if !bytes.Equal(phy, orig) {
			t.Fatal("parsing or decrypting modified the input")
		}
		// Re-encode the decoded frame: the header must come out identical
		// (modulo RFU bits), and the new frame must verify.
		fctrl := df.FCtrl
		p := DataFrameParams{MType: df.MType, DevAddr: df.DevAddr, FCtrl: fctrl, FCnt: fcnt, FOpts: df.FOpts,
			HasFPort: df.HasFPort, FPort: df.FPort, FRMPayload: plain}
		out, err := keys.AppendDataFrame(nil, p)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("AppendDataFrame error %v is not a sentinel", err)
			}
			return
		}
		if len(out) != len(phy) || !bytes.Equal(out[1:5], phy[1:5]) || !bytes.Equal(out[6:len(out)-4-len(df.FRMPayload)], phy[6:len(phy)-4-len(df.FRMPayload)]) {
			t.Fatalf("re-encoded %x from %x", out, phy)
		}
		if !bytes.Equal(out[len(out)-4-len(df.FRMPayload):len(out)-4], df.FRMPayload) {
			t.Fatalf("re-encrypted payload differs: %x vs %x", out, phy)
		}
		back, err := ParseDataFrame(out)
		if err != nil {
			t.Fatal(err)
		}
		if err := keys.VerifyMIC(&back, fcnt); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzJoinFrames feeds arbitrary bytes to the join-frame decoders.
func FuzzJoinFrames(f *testing.F) {
	for _, s := range []string{
		"0039363463336913AA05693574323831330489C65B1304",
		"00DC0000D07ED5B3701E6FEDF57CEEAF0085CC587FE913",
		"204DD85AE608B87FC4889970B7D2042C9E72959B0057AED6094B16003DF12DE145",
		"20e3de108795f776b8037610ef7869b5b3",
	} {
		b, _ := hexDecodeForFuzz(s)
		f.Add(b)
	}
	key := AES128Key{}
	f.Fuzz(func(t *testing.T, phy []byte) {
		jr, err := VerifyJoinRequest(key, phy)
		if err != nil && !isSentinel(err) {
			t.Fatalf("VerifyJoinRequest error %v is not a sentinel", err)
		}
		if err == nil {
			again, err := BuildJoinRequest(key, jr)
			if err != nil || !bytes.Equal(again[1:], phy[1:]) {
				t.Fatalf("rebuild %x, %v from %x", again, err, phy)
			}
		}
		if _, err := ParseJoinRequest(phy); err != nil && !isSentinel(err) {
			t.Fatalf("ParseJoinRequest error %v is not a sentinel", err)
		}
		ja, err := DecryptJoinAccept(key, phy)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("DecryptJoinAccept error %v is not a sentinel", err)
			}
			return
		}
		if _, err := BuildJoinAccept(key, ja); err != nil {
			t.Fatalf("rebuild accepted join accept: %v", err)
		}
	})
}

func hexDecodeForFuzz(s string) ([]byte, error) {
	var out []byte
	for i := 0; i+1 < len(s); i += 2 {
		var b byte
		for _, c := range s[i : i+2] {
			b <<= 4
			switch {
			case c >= '0' && c <= '9':
				b |= byte(c - '0')
			case c >= 'a' && c <= 'f':
				b |= byte(c - 'a' + 10)
			case c >= 'A' && c <= 'F':
				b |= byte(c - 'A' + 10)
			}
		}
		out = append(out, b)
	}
	return out, nil
}
