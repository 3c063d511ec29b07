package clipr

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeVectors(t *testing.T) {
	tests := []struct {
		name string
		port uint8
		hex  string
		want Message
	}{
		{
			name: "measurement one sample",
			port: 1,
			// v1, n=1, 60 s, 3012 mV, pipe 54.21 °C (0x152d), ambient 21.50 °C (0x0866)
			hex:  "0101003c0bc4152d0866",
			want: Measurement{IntervalS: 60, BatteryMV: 3012, Samples: []Sample{{Pipe: 5421, Ambient: 2150}}},
		},
		{
			name: "measurement negative and missing",
			port: 1,
			hex:  "0102012c0e10fe0c8000" + "03e807d0",
			want: Measurement{IntervalS: 300, BatteryMV: 3600, Samples: []Sample{{Pipe: -500, Ambient: NoTemp}, {Pipe: 1000, Ambient: 2000}}},
		},
		{
			name: "flush",
			port: 2,
			hex:  "0101001e007808341a2c",
			want: WaterEvent{Kind: EventFlush, StartedSAgo: 30, DurationS: 120, StartPipe: 2100, ExtremePipe: 6700},
		},
		{
			name: "disinfection",
			port: 2,
			hex:  "010200000258170c1d4c",
			want: WaterEvent{Kind: EventDisinfection, StartedSAgo: 0, DurationS: 600, StartPipe: 5900, ExtremePipe: 7500},
		},
		{
			name: "status detached rebooted",
			port: 3,
			hex:  "01050a8c01040384",
			want: Status{Detached: true, Rebooted: true, BatteryMV: 2700, FwMajor: 1, FwMinor: 4, IntervalS: 900},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.port, mustHex(t, tt.hex))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Decode = %#v, want %#v", got, tt.want)
			}
			port, b, err := Encode(got)
			if err != nil || port != tt.port || hex.EncodeToString(b) != tt.hex {
				t.Fatalf("Encode = %d %x %v, want %d %s", port, b, err, tt.port, tt.hex)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		port uint8
		hex  string
		want error
	}{
		{"unknown port", 4, "01", ErrUnknownPort},
		{"port zero", 0, "01", ErrUnknownPort},
		{"empty", 1, "", ErrBadLength},
		{"version 2", 1, "0201003c0bc4152d0866", ErrBadVersion},
		{"short header", 1, "0101003c0b", ErrBadLength},
		{"zero samples", 1, "0100003c0bc4", ErrBadSampleCount},
		{"twelve samples", 1, "010c003c0bc4", ErrBadSampleCount},
		{"truncated sample", 1, "0101003c0bc4152d08", ErrBadLength},
		{"trailing byte", 1, "0101003c0bc4152d086600", ErrBadLength},
		{"event short", 2, "0101001e007808341a", ErrBadLength},
		{"event kind 3", 2, "0103001e007808341a2c", ErrBadEventKind},
		{"event version", 2, "0001001e007808341a2c", ErrBadVersion},
		{"status long", 3, "01050a8c0104038400", ErrBadLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.port, mustHex(t, tt.hex))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	if _, _, err := Encode(Measurement{}); !errors.Is(err, ErrBadSampleCount) {
		t.Fatalf("empty measurement: %v", err)
	}
	if _, _, err := Encode(Measurement{Samples: make([]Sample, 12)}); !errors.Is(err, ErrBadSampleCount) {
		t.Fatalf("12 samples: %v", err)
	}
	if _, _, err := Encode(WaterEvent{Kind: 9}); !errors.Is(err, ErrBadEventKind) {
		t.Fatalf("kind 9: %v", err)
	}
}

func TestMaxMeasurementFitsSF12(t *testing.T) {
	_, b, err := Encode(Measurement{Samples: make([]Sample, MaxSamples)})
	if err != nil || len(b) != 50 {
		t.Fatalf("11 samples: %d bytes, %v; want 50", len(b), err)
	}
}

func TestJSON(t *testing.T) {
	tests := []struct {
		msg  Message
		want string
	}{
		{Measurement{IntervalS: 60, BatteryMV: 3012, Samples: []Sample{{Pipe: 5421, Ambient: 2150}, {Pipe: NoTemp, Ambient: -5}}},
			`{"kind":"measurement","intervalS":60,"batteryMv":3012,"samples":[{"pipeC":54.21,"ambientC":21.50},{"pipeC":null,"ambientC":-0.05}]}`},
		{WaterEvent{Kind: EventFlush, StartedSAgo: 30, DurationS: 120, StartPipe: 2100, ExtremePipe: 6700},
			`{"kind":"waterEvent","event":"flush","startedSAgo":30,"durationS":120,"startPipeC":21.00,"extremePipeC":67.00}`},
		{Status{Detached: true, BatteryMV: 2950, FwMajor: 1, FwMinor: 4, IntervalS: 900},
			`{"kind":"status","detached":true,"probeFault":false,"rebooted":false,"batteryMv":2950,"firmware":"1.4","intervalS":900}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.msg)
		if err != nil || string(b) != tt.want {
			t.Fatalf("Marshal = %s, %v\nwant %s", b, err, tt.want)
		}
		back := reflect.New(reflect.TypeOf(tt.msg))
		if err := json.Unmarshal(b, back.Interface()); err != nil {
			t.Fatalf("Unmarshal: %v", err)
		}
		if got := back.Elem().Interface(); !reflect.DeepEqual(got, tt.msg) {
			t.Fatalf("round trip = %#v, want %#v", got, tt.msg)
		}
	}
}

func TestTempFromCelsius(t *testing.T) {
	tests := []struct {
		c    float64
		want Temp
	}{{54.21, 5421}, {-0.005, -1}, {1e9, 32767}, {-1e9, -32767}}
	for _, tt := range tests {
		if got := TempFromCelsius(tt.c); got != tt.want {
			t.Errorf("TempFromCelsius(%v) = %d, want %d", tt.c, got, tt.want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{"0101003c0bc4152d0866", "0101001e007808341a2c", "01050a8c01040384", ""} {
		f.Add(uint8(1), mustHex(f, s))
		f.Add(uint8(2), mustHex(f, s))
		f.Add(uint8(3), mustHex(f, s))
	}
	sentinels := []error{ErrUnknownPort, ErrBadVersion, ErrBadLength, ErrBadSampleCount, ErrBadEventKind}
	f.Fuzz(func(t *testing.T, port uint8, b []byte) {
		m, err := Decode(port, b)
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("untyped error %v", err)
		}
		// A payload that decodes must re-encode to the same bytes, except for
		// status flag bits this version does not know.
		p, back, err := Encode(m)
		if err != nil || p != port {
			t.Fatalf("re-encode: %d %v", p, err)
		}
		if port != PortStatus && string(back) != string(b) {
			t.Fatalf("re-encode %x != %x", back, b)
		}
	})
}

func BenchmarkDecodeMeasurement(b *testing.B) {
	_, payload, _ := Encode(Measurement{IntervalS: 60, BatteryMV: 3000, Samples: make([]Sample, 4)})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMeasurement(payload); err != nil {
			b.Fatal(err)
		}
	}
}
