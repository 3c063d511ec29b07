package devicetwin

import (
	"time"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
)

// Input is one thing that happens to a twin: Uplink, Tick, ConfigChange,
// AlarmAck, AlarmClear or SessionReset for sensors; GatewayStats,
// GatewayUplinkSeen, GatewayConfigChange, Tick, AlarmAck and AlarmClear for
// gateways. Inputs that do not apply to a twin are ignored.
type Input interface{ isInput() }

// Rx is the receive metadata of one copy of a frame.
type Rx struct {
	GatewayEUI EUI64
	// RSSI in dBm and SNR in dB as reported by the gateway.
	RSSI int16
	SNR  float32
	// ReceivedAt is the gateway's receive time: the event time of the frame.
	ReceivedAt time.Time
}

// Uplink is a decoded data uplink: the session layer has verified its MIC
// under the full 32-bit FCnt and decrypted it. Msg is nil when the payload
// could not be decoded (DecodeErr says why) or on FPort 0 (MAC commands
// only); the counter is consumed either way, because the MIC proved the
// device sent it.
type Uplink struct {
	DevEUI    EUI64
	FCnt      uint32
	FPort     uint8
	Msg       clipr.Message
	DecodeErr error
	Rx        Rx
}

// Tick carries "now" from the actor's clock: it drives time-based rules
// (SENSOR_OFFLINE, FLUSH_OVERDUE, GATEWAY_OFFLINE). A tick not later than
// the last one is ignored.
type Tick struct{ Now time.Time }

// ConfigChange replaces the twin's configuration (tap kind, profile,
// overrides, expected interval, ids). It is ignored unless its Revision is
// greater than the current one, and when it does not validate: callers
// validate with SensorConfig.Validate first so users get the error.
type ConfigChange struct {
	At     time.Time
	Config SensorConfig
}

// AlarmAck acknowledges the current alarm of a type. An acknowledgement
// not later than the previous operator action on that type is ignored, so
// that re-applying it never acknowledges a later occurrence.
type AlarmAck struct {
	Type AlarmType
	By   string
	At   time.Time
	Note string
}

// AlarmClear is a manual clear by an operator: the alarm is acknowledged
// and closed (CLEARED_ACK) whether or not its condition still holds; the
// rule behind it starts afresh. Stale clears are ignored like AlarmAck.
type AlarmClear struct {
	Type AlarmType
	By   string
	At   time.Time
	Note string
}

// SessionReset tells the twin that the device has a new LoRaWAN session (an
// OTAA join, or an operator re-provisioning an ABP device): the frame
// counter starts afresh. Ignored unless At is later than the last reset.
type SessionReset struct {
	At time.Time
	By string
}

// GatewayStats is one lorawan.gateway.stats record.
type GatewayStats struct {
	At                    time.Time
	RxReceived, RxOK      uint32
	TxReceived, TxEmitted uint32
	Latitude, Longitude   float64
	HasLocation           bool
}

// GatewayUplinkSeen tells a gateway twin that it received a copy of a
// device's frame, for link-quality statistics.
type GatewayUplinkSeen struct {
	DevEUI EUI64
	FCnt   uint32
	Rx     Rx
}

// GatewayConfigChange replaces a gateway twin's configuration.
type GatewayConfigChange struct {
	At     time.Time
	Config GatewayConfig
}

func (Uplink) isInput()              {}
func (Tick) isInput()                {}
func (ConfigChange) isInput()        {}
func (AlarmAck) isInput()            {}
func (AlarmClear) isInput()          {}
func (SessionReset) isInput()        {}
func (GatewayStats) isInput()        {}
func (GatewayUplinkSeen) isInput()   {}
func (GatewayConfigChange) isInput() {}
