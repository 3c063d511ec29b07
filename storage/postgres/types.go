package postgres

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// EUI64 is a LoRaWAN DevEUI, JoinEUI or gateway EUI, big-endian as shown.
type EUI64 [8]byte

// DevAddr is a LoRaWAN device address, big-endian as shown.
type DevAddr [4]byte

// AES128Key is a LoRaWAN root or session key. It never prints its value:
// String and GoString are redacted; use Hex to export it on purpose.
type AES128Key [16]byte

// parseHex decodes exactly n bytes from s, allowing ':' '-' or ' '
// between byte pairs (as printed on device labels).
func parseHex(s string, n int) ([]byte, error) {
	s = strings.TrimSpace(s)
	clean := strings.NewReplacer(":", "", "-", "", " ", "").Replace(s)
	if len(clean) != 2*n {
		return nil, fmt.Errorf("want %d hex digits, got %d", 2*n, len(clean))
	}
	b, err := hex.DecodeString(clean)
	if err != nil {
		return nil, fmt.Errorf("not hexadecimal")
	}
	return b, nil
}

// ParseEUI64 parses 16 hex digits (separators between pairs allowed).
func ParseEUI64(s string) (EUI64, error) {
	var e EUI64
	b, err := parseHex(s, 8)
	if err != nil {
		return e, err
	}
	copy(e[:], b)
	return e, nil
}

// ParseDevAddr parses 8 hex digits.
func ParseDevAddr(s string) (DevAddr, error) {
	var a DevAddr
	b, err := parseHex(s, 4)
	if err != nil {
		return a, err
	}
	copy(a[:], b)
	return a, nil
}

// ParseAES128Key parses 32 hex digits. The all-zero key is refused: it is
// a placeholder, never a provisioned key.
func ParseAES128Key(s string) (AES128Key, error) {
	var k AES128Key
	b, err := parseHex(s, 16)
	if err != nil {
		return k, err
	}
	copy(k[:], b)
	if k.IsZero() {
		return k, fmt.Errorf("all-zero key")
	}
	return k, nil
}

func (e EUI64) String() string   { return strings.ToUpper(hex.EncodeToString(e[:])) }
func (a DevAddr) String() string { return strings.ToUpper(hex.EncodeToString(a[:])) }

// IsZero reports the zero EUI.
func (e EUI64) IsZero() bool { return e == EUI64{} }

// Uint32 returns the address as a number.
func (a DevAddr) Uint32() uint32 {
	return uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
}

// MarshalText implements encoding.TextMarshaler.
func (e EUI64) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (e *EUI64) UnmarshalText(b []byte) error {
	v, err := ParseEUI64(string(b))
	if err != nil {
		return err
	}
	*e = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (a DevAddr) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *DevAddr) UnmarshalText(b []byte) error {
	v, err := ParseDevAddr(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

func (k AES128Key) String() string   { return "AES128Key(redacted)" }
func (k AES128Key) GoString() string { return "AES128Key(redacted)" }

// Hex returns the key in hex; call it only to hand the key to its user.
func (k AES128Key) Hex() string { return strings.ToUpper(hex.EncodeToString(k[:])) }

// IsZero reports the zero key (absent).
func (k AES128Key) IsZero() bool { return k == AES128Key{} }

// MarshalJSON keeps keys out of JSON output.
func (k AES128Key) MarshalJSON() ([]byte, error) { return []byte(`"redacted"`), nil }

// TapKind is the kind of a tap point.
type TapKind string

// Tap point kinds.
const (
	TapHot               TapKind = "HOT_TAP"
	TapCold              TapKind = "COLD_TAP"
	TapMixed             TapKind = "MIXED_TAP"
	TapCirculationReturn TapKind = "CIRCULATION_RETURN"
	TapHeaterOutlet      TapKind = "HEATER_OUTLET"
	TapColdMain          TapKind = "COLD_MAIN"
)

// TapKinds lists every tap point kind.
var TapKinds = []TapKind{TapHot, TapCold, TapMixed, TapCirculationReturn, TapHeaterOutlet, TapColdMain}

// ParseTapKind accepts a kind case-insensitively.
func ParseTapKind(s string) (TapKind, error) {
	u := TapKind(strings.ToUpper(strings.TrimSpace(s)))
	for _, k := range TapKinds {
		if u == k {
			return k, nil
		}
	}
	return "", fmt.Errorf("want one of HOT_TAP, COLD_TAP, MIXED_TAP, CIRCULATION_RETURN, HEATER_OUTLET, COLD_MAIN")
}

// RuleProfile is a national Legionella rule set.
type RuleProfile string

// Rule profiles; NL is the default.
const (
	ProfileNL RuleProfile = "NL"
	ProfileDE RuleProfile = "DE"
	ProfileUK RuleProfile = "UK"
)

// ParseRuleProfile accepts NL, DE or UK; "" yields def.
func ParseRuleProfile(s string, def RuleProfile) (RuleProfile, error) {
	switch RuleProfile(strings.ToUpper(strings.TrimSpace(s))) {
	case "":
		return def, nil
	case ProfileNL:
		return ProfileNL, nil
	case ProfileDE:
		return ProfileDE, nil
	case ProfileUK:
		return ProfileUK, nil
	}
	return "", fmt.Errorf("want NL, DE or UK")
}

// DefaultProfileFor is the rule profile a site in country gets when none
// is given: DE for Germany, NL otherwise.
func DefaultProfileFor(country string) RuleProfile {
	if country == "DE" {
		return ProfileDE
	}
	return ProfileNL
}

// Activation is how a device joins.
type Activation string

// Activation modes.
const (
	ABP  Activation = "ABP"
	OTAA Activation = "OTAA"
)

// ParseActivation accepts ABP or OTAA, case-insensitively.
func ParseActivation(s string) (Activation, error) {
	switch Activation(strings.ToUpper(strings.TrimSpace(s))) {
	case ABP:
		return ABP, nil
	case OTAA:
		return OTAA, nil
	}
	return "", fmt.Errorf("want ABP or OTAA")
}

// eeaCountries are the EU 27 plus Iceland, Liechtenstein and Norway.
var eeaCountries = map[string]bool{
	"AT": true, "BE": true, "BG": true, "HR": true, "CY": true, "CZ": true, "DK": true, "EE": true,
	"FI": true, "FR": true, "DE": true, "GR": true, "HU": true, "IE": true, "IT": true, "LV": true,
	"LT": true, "LU": true, "MT": true, "NL": true, "PL": true, "PT": true, "RO": true, "SK": true,
	"SI": true, "ES": true, "SE": true, "IS": true, "LI": true, "NO": true,
}

// CheckResidency normalises an ISO 3166-1 alpha-2 country code and refuses
// countries outside the EEA with a *FieldError that is ErrResidency. "EL"
// (the EU's code for Greece) is accepted as GR.
func CheckResidency(country string) (string, error) {
	c := strings.ToUpper(strings.TrimSpace(country))
	if c == "EL" {
		c = "GR"
	}
	if len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' {
		return "", fieldErr("country", fmt.Sprintf("%q is not an ISO 3166-1 alpha-2 country code", country))
	}
	if !eeaCountries[c] {
		return "", &FieldError{Field: "country", Err: ErrResidency, Reason: fmt.Sprintf(
			"%s is outside the European Economic Area; Legiond keeps all data in the EEA and accepts sites only in "+
				"EU member states, Iceland, Liechtenstein and Norway", c)}
	}
	return c, nil
}

// Overrides are per-site or per-tap-point changes to the rule profile's
// defaults. Nil fields keep the default. Temperatures in °C.
type Overrides struct {
	HeaterOutletMinC      *float64 `json:"heater_outlet_min_c,omitempty"`
	CirculationReturnMinC *float64 `json:"circulation_return_min_c,omitempty"`
	HotFlushMinC          *float64 `json:"hot_flush_min_c,omitempty"`
	HotFlushWithinS       *int     `json:"hot_flush_within_s,omitempty"`
	ColdMaxC              *float64 `json:"cold_max_c,omitempty"`
	FlushMinDurationS     *int     `json:"flush_min_duration_s,omitempty"`
	SustainS              *int     `json:"sustain_s,omitempty"`
	HysteresisK           *float64 `json:"hysteresis_k,omitempty"`
	HotspotDeltaK         *float64 `json:"hotspot_delta_k,omitempty"`
}

// ParseOverrides decodes JSON, refusing unknown keys; "" is no overrides.
func ParseOverrides(s string) (Overrides, error) {
	var o Overrides
	s = strings.TrimSpace(s)
	if s == "" {
		return o, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return o, fieldErr("overrides", err.Error())
	}
	return o, o.Validate()
}

// Validate checks physical ranges.
func (o Overrides) Validate() error {
	temp := func(name string, v *float64) error {
		if v != nil && (math.IsNaN(*v) || *v < 0 || *v > 100) {
			return fieldErr("overrides."+name, "must be between 0 and 100 °C")
		}
		return nil
	}
	secs := func(name string, v *int, lo, hi int) error {
		if v != nil && (*v < lo || *v > hi) {
			return fieldErr("overrides."+name, fmt.Sprintf("must be between %d and %d s", lo, hi))
		}
		return nil
	}
	kelvin := func(name string, v *float64) error {
		if v != nil && (math.IsNaN(*v) || *v < 0 || *v > 30) {
			return fieldErr("overrides."+name, "must be between 0 and 30 K")
		}
		return nil
	}
	for _, err := range []error{
		temp("heater_outlet_min_c", o.HeaterOutletMinC),
		temp("circulation_return_min_c", o.CirculationReturnMinC),
		temp("hot_flush_min_c", o.HotFlushMinC),
		temp("cold_max_c", o.ColdMaxC),
		secs("hot_flush_within_s", o.HotFlushWithinS, 1, 3600),
		secs("flush_min_duration_s", o.FlushMinDurationS, 1, 3600),
		secs("sustain_s", o.SustainS, 60, 86400),
		kelvin("hysteresis_k", o.HysteresisK),
		kelvin("hotspot_delta_k", o.HotspotDeltaK),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// Merge returns o with every field set in top replacing o's.
func (o Overrides) Merge(top Overrides) Overrides {
	if top.HeaterOutletMinC != nil {
		o.HeaterOutletMinC = top.HeaterOutletMinC
	}
	if top.CirculationReturnMinC != nil {
		o.CirculationReturnMinC = top.CirculationReturnMinC
	}
	if top.HotFlushMinC != nil {
		o.HotFlushMinC = top.HotFlushMinC
	}
	if top.HotFlushWithinS != nil {
		o.HotFlushWithinS = top.HotFlushWithinS
	}
	if top.ColdMaxC != nil {
		o.ColdMaxC = top.ColdMaxC
	}
	if top.FlushMinDurationS != nil {
		o.FlushMinDurationS = top.FlushMinDurationS
	}
	if top.SustainS != nil {
		o.SustainS = top.SustainS
	}
	if top.HysteresisK != nil {
		o.HysteresisK = top.HysteresisK
	}
	if top.HotspotDeltaK != nil {
		o.HotspotDeltaK = top.HotspotDeltaK
	}
	return o
}

// checkText validates a free-text field: trimmed, required or not, at most
// max characters, no control characters.
func checkText(field, s string, required bool, max int) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" && required {
		return "", fieldErr(field, "is required")
	}
	if n := len([]rune(s)); n > max {
		return "", fieldErr(field, fmt.Sprintf("is %d characters long, at most %d allowed", n, max))
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", fieldErr(field, "contains control characters")
		}
	}
	return s, nil
}
