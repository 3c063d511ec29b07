package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/legionelladossier/legiond/devicetwin/lorawan"
	"github.com/legionelladossier/legiond/loadtest/fleet"
	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
	"github.com/legionelladossier/legiond/streams"
)

// TestDeadLetter runs a node against the embedded broker and feeds it bad
// input between good frames: each bad record lands on lorawan.uplink.dlq
// with its reason, is counted, and the frames after it are still applied.
func TestDeadLetter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reg := startRegistry(t, ctx)
	start := time.Now().UTC().Truncate(time.Minute)
	fl, ups := fleetUplinks(t, fleet.Config{Sensors: 3, Gateways: 1, Seed: 7, Start: start}, start.Add(2*time.Hour))
	if err := provisionFleet(ctx, reg.store, fl, "Dead letter fleet"); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	n, err := startNode(ctx, nodeConfig{DataDir: dataDir, Partitions: 2, DatabaseURL: reg.appDSN, MasterKeyFile: reg.keyFile,
		StorageMasterKeyFile: reg.storageKeyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	// The good frames first, then the bad records, then more good frames.
	half := len(ups) / 2
	produce(t, ctx, n.brokers, ups[:half])

	target := ups[0]
	stranger, err := fleet.New(fleet.Config{Sensors: 1, Gateways: 1, Seed: 99, Start: start})
	if err != nil {
		t.Fatal(err)
	}
	strangerUp, _ := stranger.Next()
	badMIC := uplinkFrame(&target)
	badMIC.PhyPayload = append([]byte(nil), target.PHYPayload...)
	badMIC.PhyPayload[len(badMIC.PhyPayload)-1] ^= 0x5a
	// A replay is received well after the newest frame it repeats, but
	// before the device's next frame (a rejected frame makes the twin drop
	// frames received no later than it).
	replay := uplinkFrame(&target)
	lastSeen := target.ReceivedAt
	for _, u := range ups[:half] {
		if u.DevEUI == target.DevEUI && u.ReceivedAt.After(lastSeen) {
			lastSeen = u.ReceivedAt
		}
	}
	replay.ReceivedAt = timestamppb.New(lastSeen.Add(time.Minute))
	oversized := uplinkFrame(&target)
	oversized.DataRate = strings.Repeat("SF12BW125", 200) // a 1.8 kB value: over the 1 KiB limit

	key := func(a lorawan.DevAddr) []byte { return []byte(streams.DevAddrKey(a.Uint32())) }
	value := func(f *lorawanv1.UplinkFrame) []byte {
		b, err := proto.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	bad := []struct {
		name          string
		msg           kafka.Message
		reason, cause string
	}{
		{"garbage", kafka.Message{Key: key(target.DevAddr), Value: []byte{0xff, 0xfe, 0x00, 0x13, 0x37}}, "undecodable", ""},
		{"unknown DevAddr", kafka.Message{Key: key(strangerUp.DevAddr), Value: value(uplinkFrame(&strangerUp))}, "handler", "unknown_devaddr"},
		{"bad MIC", kafka.Message{Key: key(target.DevAddr), Value: value(badMIC)}, "handler", "bad_mic"},
		{"replayed counter", kafka.Message{Key: key(target.DevAddr), Value: value(replay)}, "handler", "replay"},
		{"oversized value", kafka.Message{Key: key(target.DevAddr), Value: value(oversized)}, "oversized", ""},
	}
	w := &kafka.Writer{Addr: kafka.TCP(n.brokers...), Topic: streams.TopicUplink, Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	for _, b := range bad {
		if err := w.WriteMessages(ctx, b.msg); err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
	}
	_ = w.Close()
	produce(t, ctx, n.brokers, ups[half:])

	// Wait until every record is committed: all handled or dead-lettered.
	total := int64(len(ups) + len(bad))
	for {
		ends, err := committedOffsets(ctx, n.brokers, streams.DefaultGroupID, streams.TopicUplink, 2)
		if err == nil && ends[0]+ends[1] == total {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not all %d records committed: %v %v", total, ends, err)
		case <-time.After(20 * time.Millisecond): // polling the broker's committed offsets
		}
	}

	dlq := readAll(t, ctx, n.brokers, streams.TopicUplinkDLQ, 2)
	if len(dlq) != len(bad) {
		for _, m := range dlq {
			t.Log(describe(m))
		}
		t.Fatalf("%d dead letters, want %d", len(dlq), len(bad))
	}
	for _, b := range bad {
		found := false
		for _, m := range dlq {
			if string(m.Value) == string(b.msg.Value) {
				found = true
				if header(m, streams.HeaderReason) != b.reason || header(m, headerTwinReason) != b.cause {
					t.Errorf("%s: dead letter %s, want reason %q twin_reason %q", b.name, describe(m), b.reason, b.cause)
				}
				if b.cause != "" && !strings.HasPrefix(header(m, streams.HeaderReasonDetail), b.cause+":") {
					t.Errorf("%s: detail %q does not start with %q", b.name, header(m, streams.HeaderReasonDetail), b.cause)
				}
			}
		}
		if !found {
			t.Errorf("%s: not on the dead-letter topic", b.name)
		}
	}
	if got := n.system.Stats().Rejected; got != 3 {
		t.Errorf("twins rejected %d frames, want 3 (unknown DevAddr, bad MIC, replay)", got)
	}
	if got := n.smetrics.DeadLetteredTotal(); got != uint64(len(bad)) {
		t.Errorf("streams dead-lettered %d, want %d", got, len(bad))
	}

	// The frames around the bad ones are all applied: every sensor's state
	// equals its reference, which sees the same frames in the same order
	// (the bad MIC and the replay count toward the target's SECURITY).
	var frames []*lorawanv1.UplinkFrame
	for i := range ups[:half] {
		frames = append(frames, uplinkFrame(&ups[i]))
	}
	frames = append(frames, badMIC, replay)
	for i := range ups[half:] {
		frames = append(frames, uplinkFrame(&ups[half+i]))
	}
	ref := referenceSensors(t, n.cache, frames)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	got := storedSensors(t, dataDir, reg.storageKeyFile)
	if len(got) != len(fl.Sensors()) || len(ref) != len(got) {
		t.Fatalf("%d sensor twins stored, %d in the reference, want %d", len(got), len(ref), len(fl.Sensors()))
	}
	for eui, want := range ref {
		if got[eui] != want.state {
			t.Errorf("sensor %s: stored state differs from the reference", eui)
		}
	}
}
