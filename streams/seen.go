package streams

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	lorawanv1 "github.com/legionelladossier/legiond/proto/legiond/lorawan/v1"
)

// SeenHandler is implemented by a Handler that also takes
// lorawan.gateway.seen records: "this gateway heard that device's frame",
// produced by the device's twin for the gateway's twin. AssignedConsumer
// consumes the seen topic only when its Handler implements SeenHandler,
// and calls HandleGatewaySeen under the Handler contract (same goroutine,
// order, done and context rules). The group Consumer never reads the seen
// topic: a single node routes these locally.
type SeenHandler interface {
	HandleGatewaySeen(ctx context.Context, rec Record, s *lorawanv1.GatewayUplinkSeen, done func(error))
}

// GatewayKey renders a gateway EUI as the key of lorawan.gateway.stats and
// lorawan.gateway.seen: 16 lowercase hex digits. Both topics have the same
// partition count and are produced with murmur2, so partition p of each
// holds the same gateways.
func GatewayKey(eui []byte) string { return hex.EncodeToString(eui) }

// decodeGatewaySeen validates and decodes a lorawan.gateway.seen record:
// an 8-byte gateway_eui and dev_eui, and a key that is exactly the gateway
// EUI in lowercase hex (any other key may have put the record on a
// partition that is not the gateway's).
func decodeGatewaySeen(rec *Record, maxValue int) (*lorawanv1.GatewayUplinkSeen, *rejection) {
	if !isHexKey(rec.Key, 16) {
		return nil, &rejection{ReasonBadKey, fmt.Sprintf("key %q is not a 16 hex digit gateway EUI", truncate(rec.Key))}
	}
	if len(rec.Value) > maxValue {
		return nil, &rejection{ReasonOversized, fmt.Sprintf("value of %d bytes exceeds %d", len(rec.Value), maxValue)}
	}
	s := &lorawanv1.GatewayUplinkSeen{}
	if err := proto.Unmarshal(rec.Value, s); err != nil {
		return nil, &rejection{ReasonUndecodable, "GatewayUplinkSeen: " + err.Error()}
	}
	switch {
	case len(s.GetGatewayEui()) != 8:
		return nil, &rejection{ReasonInvalid, fmt.Sprintf("gateway_eui of %d bytes, want 8", len(s.GetGatewayEui()))}
	case len(s.GetDevEui()) != 8:
		return nil, &rejection{ReasonInvalid, fmt.Sprintf("dev_eui of %d bytes, want 8", len(s.GetDevEui()))}
	case string(rec.Key) != GatewayKey(s.GetGatewayEui()):
		return nil, &rejection{ReasonBadKey, fmt.Sprintf("key %q is not gateway_eui %s", truncate(rec.Key), GatewayKey(s.GetGatewayEui()))}
	}
	return s, nil
}

// SeenProducer writes GatewayUplinkSeen records to lorawan.gateway.seen,
// keyed by gateway EUI (GatewayKey), the durable hand-over from a device's
// twin to its gateways' twins when they live on different members.
//
// PublishSeen is synchronous like EventProducer.Publish: it returns nil
// only once every record is durably written (acks=all), so the device's
// twin can report its uplink done after it. Concurrent calls share
// batches (BatchTimeout). A failed call may have written some records;
// the gateway twin must recognise a repeat by (dev_eui, fcnt).
type SeenProducer struct {
	w       *writer
	metrics *Metrics
	marshal proto.MarshalOptions
}

// NewSeenProducer returns a producer for lorawan.gateway.seen (cfg.Topic
// overrides). metrics may be nil.
func NewSeenProducer(cfg ProducerConfig, metrics *Metrics, logger *slog.Logger) (*SeenProducer, error) {
	logger = orDiscard(logger)
	w, err := newWriter(&cfg, TopicGatewaySeen, true, logger)
	if err != nil {
		return nil, err
	}
	if metrics == nil {
		metrics = &Metrics{}
	}
	return &SeenProducer{w: w, metrics: metrics, marshal: proto.MarshalOptions{Deterministic: true}}, nil
}

// PublishSeen writes records and returns once all are durable. Each needs
// an 8-byte gateway_eui (the key) and dev_eui; otherwise nothing is
// written and the error wraps ErrInvalidRecord. Other errors wrap
// ErrPublish.
func (p *SeenProducer) PublishSeen(ctx context.Context, seen ...*lorawanv1.GatewayUplinkSeen) error {
	if len(seen) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(seen))
	for i, s := range seen {
		if len(s.GetGatewayEui()) != 8 || len(s.GetDevEui()) != 8 {
			return fmt.Errorf("%w: gateway seen %d: gateway_eui of %d bytes, dev_eui of %d bytes, want 8",
				ErrInvalidRecord, i, len(s.GetGatewayEui()), len(s.GetDevEui()))
		}
		b, err := p.marshal.Marshal(s)
		if err != nil {
			return fmt.Errorf("%w: marshal gateway seen %d: %w", ErrInvalidRecord, i, err)
		}
		msgs[i] = kafka.Message{Key: []byte(GatewayKey(s.GetGatewayEui())), Value: b}
	}
	if err := p.w.write(ctx, msgs); err != nil {
		p.metrics.PublishErrors.Add(1)
		return fmt.Errorf("%w: %d gateway seen: %w", ErrPublish, len(msgs), err)
	}
	p.metrics.SeenPublished.Add(uint64(len(msgs)))
	return nil
}

// Close flushes pending writes and releases connections.
func (p *SeenProducer) Close() error { return p.w.close() }
