package devicetwin

import (
	"fmt"
	"time"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
)

// TempHold is one thermal-disinfection criterion: the water must hold at
// least Temp for at least Hold.
type TempHold struct {
	Temp clipr.Temp
	Hold time.Duration
}

// maxHolds bounds the disinfection criteria per profile so that Profile is a
// plain value (no slice to alias between twin states).
const maxHolds = 4

// Profile is a complete set of rule parameters. The national defaults come
// from DefaultProfile; Overrides per site and per tap point are merged on
// top with Profile.With. docs/rules.md documents every field.
type Profile struct {
	ID ProfileID

	// HeaterOutletMin is the lowest acceptable heater outlet temperature.
	HeaterOutletMin clipr.Temp
	// CirculationReturnMin is the lowest acceptable circulation return.
	CirculationReturnMin clipr.Temp
	// HotFlushMin is the temperature a hot-tap flush must reach.
	HotFlushMin clipr.Temp
	// HotFlushWithin is how soon a hot-tap flush must reach HotFlushMin;
	// 0 means no time limit.
	HotFlushWithin time.Duration
	// ColdMax is the highest acceptable cold-water temperature; a cold-tap
	// flush must bring the pipe down to it.
	ColdMax clipr.Temp
	// FlushEvery is the longest a flushed tap may go without a compliant
	// flush before FLUSH_OVERDUE.
	FlushEvery time.Duration
	// FlushMinDuration is how long a flush must run to count.
	FlushMinDuration time.Duration
	// Disinfection lists the accepted temperature/hold combinations (first
	// NDisinfection entries); none means the profile has no criterion and
	// disinfections are logged as not assessed.
	Disinfection  [maxHolds]TempHold
	NDisinfection int
	// DisinfectionDetect is the pipe temperature above which a sustained run
	// of samples on a hot line is inferred to be a thermal disinfection; 0
	// disables the inference.
	DisinfectionDetect clipr.Temp
	// SustainedWindow is how long a continuously monitored line must be out
	// of range before it alarms, and back in range before it clears.
	SustainedWindow time.Duration
	// Hysteresis is how far back inside the range a value must be to count
	// as back in range.
	Hysteresis clipr.Temp
	// HotspotDelta: a cold line warmer than ambient plus this is a hotspot.
	HotspotDelta clipr.Temp
	// FlushDelta: a move of at least this away from ambient toward the
	// supply temperature between consecutive samples is an inferred flush.
	FlushDelta clipr.Temp
	// OfflineFactor × the expected uplink interval without an uplink raises
	// SENSOR_OFFLINE (2.5 tolerates one lost frame).
	OfflineFactor float64
	// BatteryLowMV raises BATTERY_LOW (MINOR); BatteryMajorMV makes it MAJOR;
	// the alarm clears at BatteryLowMV + BatteryHysteresisMV.
	BatteryLowMV        uint16
	BatteryMajorMV      uint16
	BatteryHysteresisMV uint16
}

// DefaultProfile returns the defaults of a national profile (DESIGN §4);
// ProfileUnspecified yields NL. Unknown ids yield NL too: Validate on the
// configuration rejects them before they get here.
func DefaultProfile(id ProfileID) Profile {
	p := Profile{
		ID:                   ProfileNL,
		HeaterOutletMin:      6000,
		CirculationReturnMin: 6000,
		HotFlushMin:          6000,
		ColdMax:              2500,
		FlushEvery:           7 * 24 * time.Hour,
		FlushMinDuration:     2 * time.Minute,
		DisinfectionDetect:   6500,
		SustainedWindow:      30 * time.Minute,
		Hysteresis:           100,
		HotspotDelta:         500,
		FlushDelta:           500,
		OfflineFactor:        2.5,
		BatteryLowMV:         2900,
		BatteryMajorMV:       2700,
		BatteryHysteresisMV:  100,
	}
	p.Disinfection[0] = TempHold{6000, 20 * time.Minute}
	p.Disinfection[1] = TempHold{6500, 10 * time.Minute}
	p.Disinfection[2] = TempHold{7000, 5 * time.Minute}
	p.NDisinfection = 3
	switch id {
	case ProfileDE:
		p.ID = ProfileDE
		p.CirculationReturnMin = 5500
		p.HotFlushMin = 5500
		p.HotFlushWithin = 30 * time.Second
		p.FlushEvery = 72 * time.Hour
		p.FlushMinDuration = 30 * time.Second
		p.Disinfection = [maxHolds]TempHold{{7000, 3 * time.Minute}}
		p.NDisinfection = 1
		p.DisinfectionDetect = 7000
	case ProfileUK:
		p.ID = ProfileUK
		p.CirculationReturnMin = 5000
		p.HotFlushMin = 5000
		p.HotFlushWithin = 60 * time.Second
		p.ColdMax = 2000
		p.FlushMinDuration = 60 * time.Second
		p.Disinfection = [maxHolds]TempHold{}
		p.NDisinfection = 0
		p.DisinfectionDetect = 0
	}
	return p
}

// holds returns the disinfection criteria in use.
func (p *Profile) holds() []TempHold { return p.Disinfection[:p.NDisinfection] }

// Opt is an optional override value: Set says whether it overrides.
type Opt[T any] struct {
	V   T
	Set bool
}

// Some returns a set Opt.
func Some[T any](v T) Opt[T] { return Opt[T]{V: v, Set: true} }

func (o Opt[T]) apply(dst *T) {
	if o.Set {
		*dst = o.V
	}
}

// Overrides replaces individual profile values, per site or per tap point.
// Unset fields keep the value underneath.
type Overrides struct {
	HeaterOutletMin      Opt[clipr.Temp]
	CirculationReturnMin Opt[clipr.Temp]
	HotFlushMin          Opt[clipr.Temp]
	HotFlushWithin       Opt[time.Duration]
	ColdMax              Opt[clipr.Temp]
	FlushEvery           Opt[time.Duration]
	FlushMinDuration     Opt[time.Duration]
	// Disinfection replaces the whole criteria list when set; at most
	// maxHolds (4) entries are used.
	Disinfection        Opt[[maxHolds]TempHold]
	NDisinfection       int
	DisinfectionDetect  Opt[clipr.Temp]
	SustainedWindow     Opt[time.Duration]
	Hysteresis          Opt[clipr.Temp]
	HotspotDelta        Opt[clipr.Temp]
	FlushDelta          Opt[clipr.Temp]
	OfflineFactor       Opt[float64]
	BatteryLowMV        Opt[uint16]
	BatteryMajorMV      Opt[uint16]
	BatteryHysteresisMV Opt[uint16]
}

// With returns p with o merged on top.
func (p Profile) With(o Overrides) Profile {
	o.HeaterOutletMin.apply(&p.HeaterOutletMin)
	o.CirculationReturnMin.apply(&p.CirculationReturnMin)
	o.HotFlushMin.apply(&p.HotFlushMin)
	o.HotFlushWithin.apply(&p.HotFlushWithin)
	o.ColdMax.apply(&p.ColdMax)
	o.FlushEvery.apply(&p.FlushEvery)
	o.FlushMinDuration.apply(&p.FlushMinDuration)
	if o.Disinfection.Set {
		p.Disinfection = o.Disinfection.V
		p.NDisinfection = min(max(o.NDisinfection, 0), maxHolds)
	}
	o.DisinfectionDetect.apply(&p.DisinfectionDetect)
	o.SustainedWindow.apply(&p.SustainedWindow)
	o.Hysteresis.apply(&p.Hysteresis)
	o.HotspotDelta.apply(&p.HotspotDelta)
	o.FlushDelta.apply(&p.FlushDelta)
	o.OfflineFactor.apply(&p.OfflineFactor)
	o.BatteryLowMV.apply(&p.BatteryLowMV)
	o.BatteryMajorMV.apply(&p.BatteryMajorMV)
	o.BatteryHysteresisMV.apply(&p.BatteryHysteresisMV)
	return p
}

// Validate reports values that would make the rules meaningless.
func (p *Profile) Validate() error {
	bad := func(f string, v any) error {
		return fmt.Errorf("profile %s: %s = %v: %w", p.ID, f, v, ErrInvalidConfig)
	}
	temps := []struct {
		n string
		v clipr.Temp
	}{
		{"HeaterOutletMin", p.HeaterOutletMin}, {"CirculationReturnMin", p.CirculationReturnMin},
		{"HotFlushMin", p.HotFlushMin}, {"ColdMax", p.ColdMax},
	}
	for _, t := range temps {
		if !t.v.Valid() {
			return bad(t.n, "no value")
		}
	}
	switch {
	case p.FlushEvery <= 0:
		return bad("FlushEvery", p.FlushEvery)
	case p.FlushMinDuration < 0:
		return bad("FlushMinDuration", p.FlushMinDuration)
	case p.HotFlushWithin < 0:
		return bad("HotFlushWithin", p.HotFlushWithin)
	case p.SustainedWindow < 0:
		return bad("SustainedWindow", p.SustainedWindow)
	case p.Hysteresis < 0:
		return bad("Hysteresis", p.Hysteresis)
	case p.HotspotDelta <= 0:
		return bad("HotspotDelta", p.HotspotDelta)
	case p.FlushDelta <= 0:
		return bad("FlushDelta", p.FlushDelta)
	case p.DisinfectionDetect < 0:
		return bad("DisinfectionDetect", p.DisinfectionDetect)
	case !(p.OfflineFactor >= 1 && p.OfflineFactor <= 100):
		return bad("OfflineFactor", p.OfflineFactor)
	case p.BatteryMajorMV > p.BatteryLowMV:
		return bad("BatteryMajorMV", p.BatteryMajorMV)
	case p.NDisinfection < 0 || p.NDisinfection > maxHolds:
		return bad("NDisinfection", p.NDisinfection)
	}
	for _, h := range p.holds() {
		if !h.Temp.Valid() || h.Hold <= 0 {
			return bad("Disinfection", h)
		}
	}
	return nil
}
