package devicetwin

import (
	"errors"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
	"github.com/legionelladossier/legiond/devicetwin/lorawan"
)

// Frame is a raw uplink as it comes from lorawan.uplink: the PHYPayload
// and the receive metadata of one gateway's copy. DevEUI is the device the
// session belongs to (the streams layer resolved DevAddr → DevEUI).
type Frame struct {
	DevEUI     EUI64
	PHYPayload []byte
	Rx         Rx
}

// ApplyFrame is the raw-frame entry point: it parses the data frame,
// rebuilds the 32-bit counter from the session state, verifies the MIC
// with the session's keys, decrypts, decodes the Clip'R payload and applies
// the result as an Uplink (so every session and rule check of the decoded
// path holds). keys must be the session of s; the twin never stores keys.
//
// A counter behind the session is verified under the old counter it most
// likely carried, so an authentic late frame or copy is recognised and an
// inauthentic one is a BAD_MIC. Under ResetOnReboot a frame whose MIC only
// verifies with the counter restarted from zero is offered as a reset.
// Frames that do not parse are MALFORMED (not counted toward SECURITY);
// frames whose MIC fails under every candidate counter are BAD_MIC
// (counted).
func (s *SensorState) ApplyFrame(f *Frame, keys *lorawan.SessionKeys, dst []Event) []Event {
	rx := toMS(f.Rx.ReceivedAt)
	if f.DevEUI != s.dev {
		return s.reject(RejectWrongDevice, 0, rx, "frame for "+f.DevEUI.String(), dst)
	}
	df, err := lorawan.ParseDataFrame(f.PHYPayload)
	if err == nil && !df.IsUplink() {
		err = lorawan.ErrUnexpectedMType
	}
	if err != nil {
		return s.reject(RejectMalformed, 0, rx, err.Error(), dst)
	}
	fcnt, _, ferr := lorawan.FullFCnt(s.lastFCnt, s.hasFCnt, df.FCnt16)
	if errors.Is(ferr, lorawan.ErrFCntExhausted) {
		return s.reject(RejectCounterExhausted, fcnt, rx, ferr.Error(), dst)
	}
	// Candidates: the reconstructed counter (or, for a counter behind or
	// too far ahead, FullFCnt's estimate), then the counter restarted from
	// zero when the policy accepts resets.
	ok := keys.VerifyUplinkMIC(&df, fcnt) == nil
	if !ok && s.cfg.ResetPolicy == ResetOnReboot && uint32(df.FCnt16) != fcnt {
		if keys.VerifyUplinkMIC(&df, uint32(df.FCnt16)) == nil {
			fcnt, ok = uint32(df.FCnt16), true
		}
	}
	if !ok {
		return s.reject(RejectBadMIC, fcnt, rx, "MIC does not verify", dst)
	}
	u := Uplink{DevEUI: f.DevEUI, FCnt: fcnt, Rx: f.Rx}
	if df.HasFPort {
		u.FPort = df.FPort
		if df.FPort != 0 {
			var buf [256]byte
			plain := keys.DecryptFRMPayload(buf[:0], &df, fcnt)
			u.Msg, u.DecodeErr = clipr.Decode(df.FPort, plain)
			if u.DecodeErr != nil {
				u.Msg = nil
			}
		}
	}
	return s.applyUplink(&u, dst)
}
