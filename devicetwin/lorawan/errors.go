package lorawan

import "errors"

// Sentinel errors. Decoders wrap them with context (fmt.Errorf("...: %w", err)),
// so callers test with errors.Is and count rejections by sentinel.
var (
	// ErrTooShort: the frame is shorter than its headers require.
	ErrTooShort = errors.New("lorawan: frame too short")
	// ErrTooLong: the frame exceeds MaxPHYPayloadSize or its fixed length.
	ErrTooLong = errors.New("lorawan: frame too long")
	// ErrInvalidMIC: the message integrity code does not match.
	ErrInvalidMIC = errors.New("lorawan: invalid MIC")
	// ErrUnsupportedMajor: the MHDR Major is not LoRaWAN R1 (0).
	ErrUnsupportedMajor = errors.New("lorawan: unsupported major version")
	// ErrUnexpectedMType: the MType is not the one the operation handles
	// (for example a join frame given to the data-frame parser).
	ErrUnexpectedMType = errors.New("lorawan: unexpected message type")
	// ErrFOptsLength: FOpts longer than 15 bytes.
	ErrFOptsLength = errors.New("lorawan: FOpts longer than 15 bytes")
	// ErrFPortZeroWithFOpts: FPort 0 (MAC commands in FRMPayload) together
	// with FOpts, which LoRaWAN forbids.
	ErrFPortZeroWithFOpts = errors.New("lorawan: FPort 0 with non-empty FOpts")
	// ErrMissingFPort: an FRMPayload without an FPort.
	ErrMissingFPort = errors.New("lorawan: FRMPayload without FPort")
	// ErrInvalidFCtrl: an FCtrl bit that has no meaning in the frame's
	// direction, or an FOptsLen that disagrees with the FOpts.
	ErrInvalidFCtrl = errors.New("lorawan: invalid FCtrl")
	// ErrInvalidField: a field value outside its range (DLSettings, RxDelay…).
	ErrInvalidField = errors.New("lorawan: invalid field value")
	// ErrInvalidHex: text that is not hexadecimal.
	ErrInvalidHex = errors.New("lorawan: invalid hex")
	// ErrInvalidLength: text or bytes of the wrong length for the type.
	ErrInvalidLength = errors.New("lorawan: invalid length")
	// ErrFCntMismatch: a 32-bit frame counter whose low 16 bits differ from
	// the frame's wire counter (a caller bug: use FullFCnt).
	ErrFCntMismatch = errors.New("lorawan: 32-bit FCnt does not match the wire FCnt")
	// ErrFCntGapTooLarge: the wire counter is more than MaxFCntGap ahead of
	// the last accepted counter. Per LoRaWAN 1.0.x the frame is dropped.
	ErrFCntGapTooLarge = errors.New("lorawan: frame counter gap too large")
	// ErrFCntReplay: the wire counter lies behind the last accepted counter
	// (within MaxFCntGap): a replayed or rewound frame.
	ErrFCntReplay = errors.New("lorawan: frame counter replayed or rewound")
	// ErrFCntExhausted: the 32-bit counter would wrap; the session must end.
	ErrFCntExhausted = errors.New("lorawan: 32-bit frame counter exhausted")
)
