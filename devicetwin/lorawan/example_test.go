package lorawan_test

import (
	"encoding/hex"
	"fmt"

	"github.com/legionelladossier/legiond/devicetwin/lorawan"
)

// The twin's hot path: rebuild the counter, verify, decrypt. The frame and
// keys are the lora-packet README example.
func ExampleSessionKeys() {
	nwk, _ := lorawan.ParseAES128Key("44024241ed4ce9a68c6a8bc055233fd3")
	app, _ := lorawan.ParseAES128Key("ec925802ae430ca77fd3dd73cb2cc588")
	keys, _ := lorawan.NewSessionKeys(nwk, app) // once per session
	phy, _ := hex.DecodeString("40F17DBE4900020001954378762B11FF0D")

	f, err := lorawan.ParseDataFrame(phy)
	if err != nil {
		fmt.Println(err)
		return
	}
	fcnt, kind, err := lorawan.FullFCnt(1, true, f.FCnt16) // last accepted: 1
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := keys.VerifyUplinkMIC(&f, fcnt); err != nil {
		fmt.Println(err)
		return
	}
	var buf []byte // reuse across frames: no allocation
	buf = keys.DecryptFRMPayload(buf[:0], &f, fcnt)
	fmt.Println(f.MType, f.DevAddr, fcnt, kind, f.FPort, string(buf))
	// Output: UnconfirmedDataUp 49be7df1 2 new 1 test
}
