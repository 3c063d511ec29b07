package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
	"github.com/legionelladossier/legiond/devicetwin/lorawan"
)

// exitInvalidMIC is `frame decode`'s exit code for a frame that decodes but
// whose MIC does not verify (the JSON is still printed).
const exitInvalidMIC = 3

func runFrame(_ context.Context, args []string, s stdio) int {
	if len(args) == 0 || args[0] != "decode" {
		fmt.Fprintln(s.err, "usage: legiond frame decode --nwk-s-key HEX --app-s-key HEX [--fcnt-msb N] [--app-key HEX] HEXFRAME")
		return exitUsage
	}
	return runFrameDecode(args[1:], s)
}

// fCtrlJSON shows the FCtrl bits as they are on the wire: bit 4 is reported
// as fPending and bit 6 as adrAckReq whatever the direction, as network
// servers' frame loggers do.
type fCtrlJSON struct {
	ADR       bool  `json:"adr"`
	ADRAckReq bool  `json:"adrAckReq"`
	ACK       bool  `json:"ack"`
	FPending  bool  `json:"fPending"`
	FOptsLen  uint8 `json:"fOptsLen"`
}

type dataFrameJSON struct {
	MType      string        `json:"mType"`
	DevAddr    string        `json:"devAddr"`
	FCtrl      fCtrlJSON     `json:"fCtrl"`
	FCnt       uint32        `json:"fCnt"`
	FOpts      string        `json:"fOpts"`
	FPort      *uint8        `json:"fPort"`
	FRMPayload string        `json:"frmPayload"`
	MICValid   bool          `json:"micValid"`
	Clipr      clipr.Message `json:"clipr"`
}

type joinRequestJSON struct {
	MType    string `json:"mType"`
	JoinEUI  string `json:"joinEui"`
	DevEUI   string `json:"devEui"`
	DevNonce string `json:"devNonce"`
	MICValid bool   `json:"micValid"`
}

type joinAcceptJSON struct {
	MType       string  `json:"mType"`
	Decrypted   bool    `json:"decrypted"`
	JoinNonce   *string `json:"joinNonce,omitempty"`
	NetID       *string `json:"netId,omitempty"`
	DevAddr     *string `json:"devAddr,omitempty"`
	RX1DROffset *uint8  `json:"rx1DrOffset,omitempty"`
	RX2DataRate *uint8  `json:"rx2DataRate,omitempty"`
	RxDelay     *uint8  `json:"rxDelay,omitempty"`
	CFList      *string `json:"cfList,omitempty"`
	MICValid    bool    `json:"micValid"`
}

type otherFrameJSON struct {
	MType    string `json:"mType"`
	Payload  string `json:"payload"`
	MICValid bool   `json:"micValid"`
}

// frameDecodeArgs are the parsed flags of `frame decode`.
type frameDecodeArgs struct {
	nwkSKey, appSKey, appKey *lorawan.AES128Key
	fcntMSB                  uint16
	phy                      []byte
}

func parseFrameDecodeArgs(args []string, stderr io.Writer) (frameDecodeArgs, error) {
	fs := flag.NewFlagSet("frame decode", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	nwk := fs.String("nwk-s-key", "", "network session key, 32 hex digits")
	app := fs.String("app-s-key", "", "application session key, 32 hex digits")
	appKey := fs.String("app-key", "", "OTAA AppKey, 32 hex digits (join frames)")
	msb := fs.Uint("fcnt-msb", 0, "high 16 bits of the frame counter")
	if err := fs.Parse(args); err != nil {
		return frameDecodeArgs{}, err
	}
	if fs.NArg() != 1 {
		return frameDecodeArgs{}, errors.New("want exactly one HEXFRAME argument")
	}
	if *msb > 0xffff {
		return frameDecodeArgs{}, fmt.Errorf("--fcnt-msb %d: must be 0..65535", *msb)
	}
	a := frameDecodeArgs{fcntMSB: uint16(*msb)}
	for _, k := range []struct {
		name, val string
		dst       **lorawan.AES128Key
	}{{"--nwk-s-key", *nwk, &a.nwkSKey}, {"--app-s-key", *app, &a.appSKey}, {"--app-key", *appKey, &a.appKey}} {
		if k.val == "" {
			continue
		}
		key, err := lorawan.ParseAES128Key(k.val)
		if err != nil {
			return frameDecodeArgs{}, fmt.Errorf("%s: %w", k.name, err)
		}
		*k.dst = &key
	}
	phy, err := hex.DecodeString(strings.TrimSpace(fs.Arg(0)))
	if err != nil {
		return frameDecodeArgs{}, fmt.Errorf("HEXFRAME: %w", err)
	}
	a.phy = phy
	return a, nil
}

func runFrameDecode(args []string, s stdio) int {
	a, err := parseFrameDecodeArgs(args, s.err)
	if err != nil {
		fmt.Fprintf(s.err, "legiond frame decode: %v\n", err)
		return exitUsage
	}
	out, micValid, err := decodeFrame(a)
	if err != nil {
		fmt.Fprintf(s.err, "legiond frame decode: %v\n", err)
		return exitUsage
	}
	b, err := json.Marshal(out)
	if err != nil {
		fmt.Fprintf(s.err, "legiond frame decode: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(s.out, "%s\n", b)
	if !micValid {
		return exitInvalidMIC
	}
	return exitOK
}

// decodeFrame returns the JSON view of the frame and whether its MIC holds.
// An error means the input is malformed.
func decodeFrame(a frameDecodeArgs) (any, bool, error) {
	mtype, err := lorawan.PeekMType(a.phy)
	if err != nil {
		return nil, false, err
	}
	switch {
	case mtype.IsData():
		return decodeDataFrame(a)
	case mtype == lorawan.MTypeJoinRequest:
		jr, err := lorawan.ParseJoinRequest(a.phy)
		if err != nil {
			return nil, false, err
		}
		valid := false
		if a.appKey != nil {
			_, verr := lorawan.VerifyJoinRequest(*a.appKey, a.phy)
			valid = verr == nil
		}
		return joinRequestJSON{MType: mtype.String(), JoinEUI: jr.JoinEUI.String(), DevEUI: jr.DevEUI.String(),
			DevNonce: jr.DevNonce.String(), MICValid: valid}, valid, nil
	case mtype == lorawan.MTypeJoinAccept:
		return decodeJoinAccept(a)
	}
	// Proprietary (and RFU) frames have no MIC LoRaWAN defines: never valid.
	return otherFrameJSON{MType: mtype.String(), Payload: hex.EncodeToString(a.phy[1:])}, false, nil
}

func decodeDataFrame(a frameDecodeArgs) (any, bool, error) {
	if a.nwkSKey == nil || a.appSKey == nil {
		return nil, false, errors.New("data frames need --nwk-s-key and --app-s-key")
	}
	f, err := lorawan.ParseDataFrame(a.phy)
	if err != nil {
		return nil, false, err
	}
	fcnt := uint32(a.fcntMSB)<<16 | uint32(f.FCnt16)
	valid := lorawan.VerifyDataMIC(*a.nwkSKey, &f, fcnt) == nil
	raw := a.phy[5] // FCtrl: MHDR(1) | DevAddr(4) | FCtrl
	out := dataFrameJSON{
		MType:   f.MType.String(),
		DevAddr: f.DevAddr.String(),
		FCtrl: fCtrlJSON{ADR: raw&0x80 != 0, ADRAckReq: raw&0x40 != 0, ACK: raw&0x20 != 0,
			FPending: raw&0x10 != 0, FOptsLen: raw & 0x0f},
		FCnt:     fcnt,
		FOpts:    hex.EncodeToString(f.FOpts),
		MICValid: valid,
	}
	if f.HasFPort {
		port := f.FPort
		out.FPort = &port
		key := *a.appSKey
		if port == 0 {
			key = *a.nwkSKey
		}
		plain, err := lorawan.DecryptFRMPayload(key, nil, &f, fcnt)
		if err != nil {
			return nil, false, err
		}
		out.FRMPayload = hex.EncodeToString(plain)
		if port >= clipr.PortMeasurement && port <= clipr.PortStatus {
			if m, err := clipr.Decode(port, plain); err == nil {
				out.Clipr = m
			}
		}
	}
	return out, valid, nil
}

func decodeJoinAccept(a frameDecodeArgs) (any, bool, error) {
	out := joinAcceptJSON{MType: lorawan.MTypeJoinAccept.String()}
	if a.appKey == nil {
		// Without the AppKey a join accept is opaque ciphertext.
		return out, false, nil
	}
	ja, err := lorawan.DecryptJoinAccept(*a.appKey, a.phy)
	if errors.Is(err, lorawan.ErrInvalidMIC) {
		return out, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	str := func(s string) *string { return &s }
	u8 := func(v uint8) *uint8 { return &v }
	out.Decrypted, out.MICValid = true, true
	out.JoinNonce, out.NetID, out.DevAddr = str(ja.JoinNonce.String()), str(ja.NetID.String()), str(ja.DevAddr.String())
	out.RX1DROffset, out.RX2DataRate, out.RxDelay = u8(ja.DLSettings.RX1DROffset), u8(ja.DLSettings.RX2DataRate), u8(ja.RxDelay)
	if ja.HasCFList {
		out.CFList = str(hex.EncodeToString(ja.CFList[:]))
	}
	return out, true, nil
}
