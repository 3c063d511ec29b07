package lorawan

import "testing"

// typicalUplink is a Clip'R-sized uplink: FPort 1 with a 26-byte FRMPayload
// (a 5-sample measurement), FCnt 0x00010203, one FOpts byte.
func typicalUplink(tb testing.TB) (*SessionKeys, []byte, uint32) {
	tb.Helper()
	_, _, k := testKeys(tb)
	fcnt := uint32(0x00010203)
	phy, err := k.AppendDataFrame(nil, DataFrameParams{
		MType: MTypeUnconfirmedDataUp, DevAddr: DevAddr{0x26, 0x01, 0x2e, 0x43}, FCtrl: FCtrl{ADR: true},
		FCnt: fcnt, FOpts: []byte{0x02}, HasFPort: true, FPort: 1, FRMPayload: make([]byte, 26),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return k, phy, fcnt
}

// decodeVerifyDecrypt is the twin's per-frame hot path.
func decodeVerifyDecrypt(k *SessionKeys, phy, buf []byte, fcnt uint32) ([]byte, error) {
	f, err := ParseDataFrame(phy)
	if err != nil {
		return buf, err
	}
	if err := k.VerifyUplinkMIC(&f, fcnt); err != nil {
		return buf, err
	}
	return k.DecryptFRMPayload(buf[:0], &f, fcnt), nil
}

// TestHotPathAllocs pins the allocation budget of the hot path at zero.
func TestHotPathAllocs(t *testing.T) {
	k, phy, fcnt := typicalUplink(t)
	buf := make([]byte, 0, 64)
	n := testing.AllocsPerRun(200, func() {
		var err error
		buf, err = decodeVerifyDecrypt(k, phy, buf, fcnt)
		if err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("hot path allocates %v times per frame, want 0", n)
	}
}

func BenchmarkUplinkDecodeVerifyDecrypt(b *testing.B) {
	k, phy, fcnt := typicalUplink(b)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	b.SetBytes(int64(len(phy)))
	for b.Loop() {
		var err error
		buf, err = decodeVerifyDecrypt(k, phy, buf, fcnt)
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseDataFrame(b *testing.B) {
	_, phy, _ := typicalUplink(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDataFrame(phy); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendDataFrame(b *testing.B) {
	k, _, _ := typicalUplink(b)
	payload := make([]byte, 26)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	fcnt := uint32(0)
	for b.Loop() {
		fcnt++
		var err error
		buf, err = k.AppendDataFrame(buf[:0], DataFrameParams{
			MType: MTypeUnconfirmedDataUp, DevAddr: DevAddr{0x26, 1, 2, 3}, FCnt: fcnt,
			HasFPort: true, FPort: 1, FRMPayload: payload,
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewSessionKeys(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewSessionKeys(AES128Key{1}, AES128Key{2}); err != nil {
			b.Fatal(err)
		}
	}
}
