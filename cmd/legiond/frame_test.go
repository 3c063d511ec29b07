package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/legionelladossier/legiond/devicetwin/clipr"
	"github.com/legionelladossier/legiond/devicetwin/lorawan"
	"github.com/legionelladossier/legiond/loadtest/fleet"
)

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = dispatch(context.Background(), args, stdio{in: strings.NewReader(stdin), out: &out, err: &errb})
	return code, out.String(), errb.String()
}

const (
	// A frame published by the lora-packet project's README with its keys.
	vectorFrame   = "40F17DBE4900020001954378762B11FF0D"
	vectorNwkSKey = "44024241ed4ce9a68c6a8bc055233fd3"
	vectorAppSKey = "ec925802ae430ca77fd3dd73cb2cc588"
)

func TestFrameDecodePublishedVector(t *testing.T) {
	code, out, errOut := runCLI(t, "", "frame", "decode", "--nwk-s-key", vectorNwkSKey, "--app-s-key", vectorAppSKey, vectorFrame)
	if code != exitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	want := `{"mType":"UnconfirmedDataUp","devAddr":"49be7df1","fCtrl":{"adr":false,"adrAckReq":false,"ack":false,"fPending":false,"fOptsLen":0},"fCnt":2,"fOpts":"","fPort":1,"frmPayload":"74657374","micValid":true,"clipr":null}` + "\n"
	if out != want {
		t.Fatalf("stdout\n%s\nwant\n%s", out, want)
	}
}

func TestFrameDecodeExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"wrong nwk key gives invalid MIC", []string{"--nwk-s-key", vectorAppSKey, "--app-s-key", vectorAppSKey, vectorFrame}, exitInvalidMIC},
		{"wrong fcnt msb gives invalid MIC", []string{"--nwk-s-key", vectorNwkSKey, "--app-s-key", vectorAppSKey, "--fcnt-msb", "1", vectorFrame}, exitInvalidMIC},
		{"not hex", []string{"--nwk-s-key", vectorNwkSKey, "--app-s-key", vectorAppSKey, "zz"}, exitUsage},
		{"truncated", []string{"--nwk-s-key", vectorNwkSKey, "--app-s-key", vectorAppSKey, "40F17DBE49"}, exitUsage},
		{"empty", []string{"--nwk-s-key", vectorNwkSKey, "--app-s-key", vectorAppSKey, ""}, exitUsage},
		{"bad key", []string{"--nwk-s-key", "00", "--app-s-key", vectorAppSKey, vectorFrame}, exitUsage},
		{"missing keys", []string{vectorFrame}, exitUsage},
		{"two frames", []string{"--nwk-s-key", vectorNwkSKey, "--app-s-key", vectorAppSKey, vectorFrame, vectorFrame}, exitUsage},
		{"unknown flag", []string{"--bogus", vectorFrame}, exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, "", append([]string{"frame", "decode"}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			if tt.code == exitUsage {
				if out != "" || strings.Count(errOut, "\n") != 1 {
					t.Fatalf("malformed input: stdout %q, stderr %q; want nothing and one line", out, errOut)
				}
				return
			}
			var v map[string]any
			if err := json.Unmarshal([]byte(out), &v); err != nil || v["micValid"] != false {
				t.Fatalf("invalid-MIC output %q (%v)", out, err)
			}
		})
	}
}

func TestFrameDecodeClipr(t *testing.T) {
	nwk, _ := lorawan.ParseAES128Key("000102030405060708090a0b0c0d0e0f")
	app, _ := lorawan.ParseAES128Key("f0e0d0c0b0a090807060504030201000")
	addr, _ := lorawan.ParseDevAddr("26011bda")
	tests := []struct {
		msg  clipr.Message
		want string
	}{
		{clipr.Measurement{IntervalS: 60, BatteryMV: 3012, Samples: []clipr.Sample{{Pipe: 5421, Ambient: 2150}}},
			`{"kind":"measurement","intervalS":60,"batteryMv":3012,"samples":[{"pipeC":54.21,"ambientC":21.50}]}`},
		{clipr.WaterEvent{Kind: clipr.EventDisinfection, StartedSAgo: 700, DurationS: 600, StartPipe: 5900, ExtremePipe: clipr.NoTemp},
			`{"kind":"waterEvent","event":"disinfection","startedSAgo":700,"durationS":600,"startPipeC":59.00,"extremePipeC":null}`},
		{clipr.Status{Detached: true, BatteryMV: 2650, FwMajor: 1, FwMinor: 4, IntervalS: 900},
			`{"kind":"status","detached":true,"probeFault":false,"rebooted":false,"batteryMv":2650,"firmware":"1.4","intervalS":900}`},
	}
	for _, tt := range tests {
		port, payload, err := clipr.Encode(tt.msg)
		if err != nil {
			t.Fatal(err)
		}
		const fcnt = 0x0001_0005 // high half given by --fcnt-msb
		phy, err := lorawan.BuildDataFrame(nwk, app, lorawan.DataFrameParams{
			MType: lorawan.MTypeConfirmedDataUp, DevAddr: addr, FCtrl: lorawan.FCtrl{ADR: true},
			FCnt: fcnt, FOpts: []byte{0x02}, HasFPort: true, FPort: port, FRMPayload: payload,
		})
		if err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runCLI(t, "", "frame", "decode", "--nwk-s-key", nwk.String(), "--app-s-key", app.String(), "--fcnt-msb", "1", hex.EncodeToString(phy))
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		var got struct {
			MType      string          `json:"mType"`
			DevAddr    string          `json:"devAddr"`
			FCnt       uint32          `json:"fCnt"`
			FOpts      string          `json:"fOpts"`
			FPort      int             `json:"fPort"`
			FRMPayload string          `json:"frmPayload"`
			FCtrl      fCtrlJSON       `json:"fCtrl"`
			Clipr      json.RawMessage `json:"clipr"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		if got.MType != "ConfirmedDataUp" || got.DevAddr != "26011bda" || got.FCnt != fcnt || got.FOpts != "02" ||
			got.FPort != int(port) || got.FRMPayload != hex.EncodeToString(payload) || !got.FCtrl.ADR || got.FCtrl.FOptsLen != 1 {
			t.Fatalf("decoded %+v", got)
		}
		if string(got.Clipr) != tt.want {
			t.Fatalf("clipr %s\nwant %s", got.Clipr, tt.want)
		}
	}
}

func TestFrameDecodeJoinRequest(t *testing.T) {
	appKey, _ := lorawan.ParseAES128Key("2b7e151628aed2a6abf7158809cf4f3c")
	joinEUI, _ := lorawan.ParseEUI64("70b3d57ed0000001")
	devEUI, _ := lorawan.ParseEUI64("0004a30b001c0530")
	phy, err := lorawan.BuildJoinRequest(appKey, lorawan.JoinRequest{JoinEUI: joinEUI, DevEUI: devEUI, DevNonce: 0x1234})
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCLI(t, "", "frame", "decode", "--nwk-s-key", vectorNwkSKey, "--app-s-key", vectorAppSKey, "--app-key", appKey.String(), hex.EncodeToString(phy))
	want := `{"mType":"JoinRequest","joinEui":"70b3d57ed0000001","devEui":"0004a30b001c0530","devNonce":"1234","micValid":true}` + "\n"
	if code != exitOK || out != want {
		t.Fatalf("exit %d, stdout %s want %s", code, out, want)
	}
	code, out, _ = runCLI(t, "", "frame", "decode", "--nwk-s-key", vectorNwkSKey, "--app-s-key", vectorAppSKey, "--app-key", vectorAppSKey, hex.EncodeToString(phy))
	if code != exitInvalidMIC || !strings.Contains(out, `"micValid":false`) {
		t.Fatalf("wrong app key: exit %d, %s", code, out)
	}
}

// TestFrameDecodeFleetFrames closes the loop between the simulator and the
// operator tool: every simulated frame decodes with its sensor's own keys.
func TestFrameDecodeFleetFrames(t *testing.T) {
	f, err := fleet.New(fleet.Config{Sensors: 20, Gateways: 3, Seed: 7, InitialFCnt: 0xfff8}.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	keys := map[lorawan.EUI64]fleet.SensorInfo{}
	for _, s := range f.Sensors() {
		keys[s.DevEUI] = s
	}
	kinds := map[string]int{}
	for i := 0; i < 300; i++ {
		u, ok := f.Next()
		if !ok {
			t.Fatalf("fleet ended after %d uplinks: %v", i, f.Err())
		}
		s := keys[u.DevEUI]
		code, out, errOut := runCLI(t, "", "frame", "decode", "--nwk-s-key", s.NwkSKey.String(), "--app-s-key", s.AppSKey.String(),
			"--fcnt-msb", strconv.Itoa(int(u.FCnt>>16)), hex.EncodeToString(u.PHYPayload))
		if code != exitOK {
			t.Fatalf("uplink %d (fcnt %d): exit %d %s %s", i, u.FCnt, code, out, errOut)
		}
		var got struct {
			DevAddr string `json:"devAddr"`
			FCnt    uint32 `json:"fCnt"`
			Clipr   *struct {
				Kind string `json:"kind"`
			} `json:"clipr"`
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatal(err)
		}
		if got.DevAddr != u.DevAddr.String() || got.FCnt != u.FCnt || got.Clipr == nil {
			t.Fatalf("uplink %d: decoded %s", i, out)
		}
		kinds[got.Clipr.Kind]++
	}
	if kinds["measurement"] == 0 || kinds["status"] == 0 {
		t.Fatalf("payload kinds seen: %v; want measurements and status frames", kinds)
	}
}
