package lorawan

import (
	"fmt"
	"math"
)

// MaxFCntGap is MAX_FCNT_GAP of LoRaWAN 1.0.x (1.0.2, 1.0.3): the largest
// accepted distance between the last accepted frame counter and a new one.
// A larger jump cannot be told apart from a replay of an old frame whose
// 16-bit counter wrapped, so LoRaWAN drops it. (1.0.4 dropped the constant
// from the spec; keeping it is the conservative reading and matches what
// devices do in practice: they never skip 16384 frames in one session.)
const MaxFCntGap = 16384

// FCntKind says how a reconstructed frame counter relates to the last
// accepted one.
type FCntKind uint8

const (
	// FCntInvalid accompanies every error: the counter must not be used.
	FCntInvalid FCntKind = iota
	// FCntFirst: no counter was accepted in this session yet; the wire
	// value is taken as is (high half zero).
	FCntFirst
	// FCntNew: strictly greater than the last accepted counter, at most
	// MaxFCntGap ahead. The frame is new (frames in between were lost).
	FCntNew
	// FCntRetransmission: equal to the last accepted counter. LoRaWAN 1.0.x
	// devices repeat a frame with the same counter (NbTrans, unconfirmed
	// repetitions, confirmed retries); gateways and Kafka replays duplicate
	// it too. The frame must not be applied again.
	FCntRetransmission
)

// String returns the constant's name.
func (k FCntKind) String() string {
	switch k {
	case FCntFirst:
		return "first"
	case FCntNew:
		return "new"
	case FCntRetransmission:
		return "retransmission"
	default:
		return "invalid"
	}
}

// FullFCnt rebuilds the 32-bit frame counter of a frame from the 16 bits on
// the wire and the last counter accepted in the session (up or down, each
// direction has its own). It is the single rule every Legiond component uses
// for replay and rewind detection:
//
//   - hasLast false (no frame accepted since the session started): the
//     result is uint32(wire), FCntFirst. Whether a first counter far from
//     zero is acceptable (an ABP device provisioned mid-life) is the
//     caller's policy.
//   - wire == low16(last): the result is last, FCntRetransmission.
//   - otherwise let d = (wire - low16(last)) mod 2^16, the forward distance
//     (1..65535). If d <= MaxFCntGap the result is last + d, FCntNew; this
//     carries into the high half when the low half rolls over (last
//     0x0001FFFF, wire 0x0002 → 0x00020002).
//   - if 2^16 - d <= MaxFCntGap the wire counter lies that far behind last:
//     ErrFCntReplay (a replayed or rewound frame), with the old counter it
//     most likely carried, last - (2^16 - d), for logging (uint32(wire)
//     when that would fall before zero).
//   - otherwise ErrFCntGapTooLarge, with last + d for logging. LoRaWAN
//     1.0.x drops such frames; a device in this state needs a new session.
//   - if last + d would exceed 2^32 - 1: ErrFCntExhausted (the session is
//     used up; a new join or re-provisioning is needed).
//
// On error the returned counter is only an estimate for logs and metrics,
// never to be stored, and the kind is FCntInvalid. A counter 2^16·k ahead of
// last (for k ≥ 1) is indistinguishable from last on the wire and is
// reported as a retransmission; MaxFCntGap exists to make that impossible
// for a live session.
func FullFCnt(last uint32, hasLast bool, wire uint16) (uint32, FCntKind, error) {
	if !hasLast {
		return uint32(wire), FCntFirst, nil
	}
	low := uint16(last)
	if wire == low {
		return last, FCntRetransmission, nil
	}
	d := uint32(wire - low) // forward distance modulo 2^16, 1..65535
	if d <= MaxFCntGap {
		if uint64(last)+uint64(d) > math.MaxUint32 {
			return math.MaxUint32, FCntInvalid, fmt.Errorf("last FCnt %d + %d: %w", last, d, ErrFCntExhausted)
		}
		return last + d, FCntNew, nil
	}
	if back := 1<<16 - d; back <= MaxFCntGap {
		old := uint32(wire) // behind the session start: an old session's frame
		if last >= back {
			old = last - back
		}
		return old, FCntInvalid, fmt.Errorf("wire FCnt %d is %d behind last %d: %w", wire, back, last, ErrFCntReplay)
	}
	est := uint64(last) + uint64(d)
	return uint32(min(est, math.MaxUint32)), FCntInvalid, fmt.Errorf("wire FCnt %d is %d ahead of last %d (max %d): %w", wire, d, last, MaxFCntGap, ErrFCntGapTooLarge)
}
