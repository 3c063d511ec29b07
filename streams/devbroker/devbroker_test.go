package devbroker

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func TestConfigValidate(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Addr != DefaultAddr || c.NumBrokers != 1 || c.Partitions != DefaultPartitions ||
		c.GroupMinSessionTimeout != DefaultGroupMinSessionTimeout || *c.LogLevel != slog.LevelWarn {
		t.Fatalf("defaults not applied: %+v", c)
	}
	bad := map[string]Config{
		"public host":   {Addr: "0.0.0.0:9092"},
		"remote host":   {Addr: "10.0.0.1:9092"},
		"no port":       {Addr: "127.0.0.1"},
		"bad port":      {Addr: "127.0.0.1:http"},
		"port range":    {Addr: "127.0.0.1:65535", NumBrokers: 2},
		"brokers":       {NumBrokers: 17},
		"partitions":    {Partitions: -1},
		"session":       {GroupMinSessionTimeout: -time.Second},
		"mechanism":     {Users: []User{{Mechanism: "GSSAPI", Name: "a", Password: "b"}}},
		"empty user":    {Users: []User{{Mechanism: MechanismPlain, Password: "b"}}},
		"bad port name": {Addr: "localhost:x"},
		"no tls certs":  {TLS: &tls.Config{}},
	}
	for name, c := range bad {
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, addr := range []string{"localhost:0", "[::1]:0", "127.0.0.1:9092"} {
		c := Config{Addr: addr}
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestStartSpeaksKafka starts brokers and talks to them with kafka-go.
func TestStartSpeaksKafka(t *testing.T) {
	port := freePort(t)
	b, err := Start(t.Context(), Config{Addr: "127.0.0.1:" + strconv.Itoa(port), Partitions: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Addrs(); len(got) != 1 || got[0] != "127.0.0.1:"+strconv.Itoa(port) {
		t.Fatalf("addrs %v", got)
	}
	// The port is taken now.
	if _, err := Start(t.Context(), Config{Addr: "127.0.0.1:" + strconv.Itoa(port)}, nil); !errors.Is(err, ErrStart) {
		t.Fatalf("second broker on the same port: %v", err)
	}

	client := &kafka.Client{Addr: kafka.TCP(b.Addrs()...), Timeout: 5 * time.Second}
	resp, err := client.CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: "t", NumPartitions: -1, ReplicationFactor: 1},
	}})
	if err != nil || resp.Errors["t"] != nil {
		t.Fatalf("create topic: %v %v", err, resp)
	}
	md, err := client.Metadata(t.Context(), &kafka.MetadataRequest{Topics: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Topics) != 1 || len(md.Topics[0].Partitions) != 3 {
		t.Fatalf("default partitions not applied: %+v", md.Topics)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	_ = b.Close() // idempotent

	// Several brokers on free ports.
	b, err = Start(t.Context(), Config{NumBrokers: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if len(b.Addrs()) != 3 {
		t.Fatalf("addrs %v", b.Addrs())
	}
	md, err = (&kafka.Client{Addr: kafka.TCP(b.Addrs()...)}).Metadata(t.Context(), &kafka.MetadataRequest{})
	if err != nil || len(md.Brokers) != 3 {
		t.Fatalf("metadata: %v %+v", err, md)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Start(ctx, Config{}, nil); !errors.Is(err, ErrStart) {
		t.Fatalf("cancelled start: %v", err)
	}
}
