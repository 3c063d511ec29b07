package actors

import (
	"errors"
	"strings"

	"github.com/legionelladossier/legiond/devicetwin"
)

// Sentinel errors. Errors handed to done callbacks and returned by this
// package wrap one of them; match with errors.Is.
var (
	// ErrInvalidConfig reports a Config that Validate rejects.
	ErrInvalidConfig = errors.New("actors: invalid config")
	// ErrRetry means the input was not applied but may be later (a failed
	// publish or persist, a closing system). The wiring maps it to the
	// input adapter's own retry error (streams.ErrRetry).
	ErrRetry = errors.New("actors: retry")
	// ErrRejected means the input is rejected for good; the error is a
	// *RejectError naming the reason. The wiring dead-letters it.
	ErrRejected = errors.New("actors: rejected")
	// ErrClosed reports use of a closed System.
	ErrClosed = errors.New("actors: closed")
	// ErrNotFound: Operate found no stored twin for the device (or the
	// device belongs to another tenant).
	ErrNotFound = errors.New("actors: twin not found")
)

// Rejection reasons that do not come from the twin core. The core's own
// reasons (devicetwin.RejectReason) are reported lower-cased: "bad_mic",
// "replay", "rewind", "gap_too_large", "malformed", "decode_error",
// "unknown_port", "wrong_device", "counter_exhausted".
const (
	// ReasonUnknownDevAddr: no registered device holds the frame's DevAddr
	// (or none of them has a session).
	ReasonUnknownDevAddr = "unknown_devaddr"
	// ReasonMalformed: the PHYPayload is not an uplink data frame, or the
	// frame lacks its receive time.
	ReasonMalformed = "malformed"
	// ReasonUnsupported: a join request (OTAA joins are not handled by the
	// twin pipeline).
	ReasonUnsupported = "unsupported"
	// ReasonTwinPanic: applying the input panicked; the twin was restarted
	// from its durable state and the input dead-lettered.
	ReasonTwinPanic = "twin_panic"
)

// RejectError is the error done receives for a rejected input. Its text is
// "<reason>: <detail>", so the dead-letter record's detail starts with the
// reason.
type RejectError struct {
	Reason string
	Detail string
}

func (e *RejectError) Error() string {
	if e.Detail == "" {
		return e.Reason
	}
	return e.Reason + ": " + e.Detail
}

// Is makes every RejectError match ErrRejected.
func (e *RejectError) Is(target error) bool { return target == ErrRejected }

// RejectReason returns the reason of a rejection error, or "" when err is
// not one.
func RejectReason(err error) string {
	var re *RejectError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

// ReasonFromDetail extracts the reason from a dead-letter detail written
// from a RejectError ("bad_mic: MIC does not verify" → "bad_mic"); "" when
// the detail does not start with a known reason.
func ReasonFromDetail(detail string) string {
	r, _, _ := strings.Cut(detail, ":")
	for _, k := range Reasons() {
		if k == r {
			return r
		}
	}
	return ""
}

// coreReason is the reason name of a core rejection.
func coreReason(r devicetwin.RejectReason) string {
	return strings.ToLower(r.String())
}

// Reasons lists every rejection reason, for metric export.
func Reasons() []string {
	out := []string{ReasonUnknownDevAddr, ReasonMalformed, ReasonUnsupported, ReasonTwinPanic}
	for r := devicetwin.RejectReplay; r <= devicetwin.RejectCounterExhausted; r++ {
		if n := coreReason(r); n != ReasonMalformed {
			out = append(out, n)
		}
	}
	return out
}
