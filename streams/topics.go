package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// Topic names (DESIGN §3).
const (
	TopicUplink       = "lorawan.uplink"
	TopicGatewayStats = "lorawan.gateway.stats"
	TopicDownlink     = "lorawan.downlink"
	TopicUplinkDLQ    = "lorawan.uplink.dlq"
	TopicTwinEvents   = "twin.events"
	// TopicGatewaySeen is the repartition topic from device twins to
	// gateway twins (GatewayUplinkSeen), keyed by gateway EUI like
	// TopicGatewayStats.
	TopicGatewaySeen = "lorawan.gateway.seen"
)

// dlqRetention keeps dead letters for 30 days, long enough to notice,
// investigate and replay them.
const dlqRetention = 30 * 24 * time.Hour

// TopicSpec describes one topic EnsureTopics creates when missing.
type TopicSpec struct {
	Name              string
	Partitions        int
	ReplicationFactor int
	// Configs are topic-level settings (retention.ms, ...).
	Configs map[string]string
}

// DefaultTopics returns the five topics of DESIGN §3 and the
// lorawan.gateway.seen repartition topic, with the given partition count
// and replication factor (the seen topic must have the input topics'
// partition count: partition p of every input topic is assigned together). With a replication factor of 3
// or more, min.insync.replicas is 2 so that acks=all survives one broker
// loss; the dead-letter topic keeps records for 30 days.
func DefaultTopics(partitions, replication int) []TopicSpec {
	names := []string{TopicUplink, TopicGatewayStats, TopicDownlink, TopicUplinkDLQ, TopicTwinEvents, TopicGatewaySeen}
	specs := make([]TopicSpec, 0, len(names))
	for _, n := range names {
		s := TopicSpec{Name: n, Partitions: partitions, ReplicationFactor: replication, Configs: map[string]string{}}
		if replication >= 3 {
			s.Configs["min.insync.replicas"] = "2"
		}
		if n == TopicUplinkDLQ {
			s.Configs["retention.ms"] = strconv.FormatInt(dlqRetention.Milliseconds(), 10)
		}
		specs = append(specs, s)
	}
	return specs
}

func (s TopicSpec) validate() error {
	switch {
	case s.Name == "":
		return fmt.Errorf("%w: topic without a name", ErrInvalidConfig)
	case s.Partitions < 1:
		return fmt.Errorf("%w: topic %s: partitions %d < 1", ErrInvalidConfig, s.Name, s.Partitions)
	case s.ReplicationFactor < 1:
		return fmt.Errorf("%w: topic %s: replication factor %d < 1", ErrInvalidConfig, s.Name, s.ReplicationFactor)
	}
	return nil
}

// EnsureTopics creates the topics in specs that do not exist yet and waits
// until every partition of them has a leader. Existing topics are left as
// they are (a partition count different from the spec is logged, not
// changed). It is idempotent and safe to run from several nodes at once.
func EnsureTopics(ctx context.Context, cc ClientConfig, specs []TopicSpec, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	for _, s := range specs {
		if err := s.validate(); err != nil {
			return err
		}
	}
	transport, err := cc.Transport()
	if err != nil {
		return err
	}
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(cc.Brokers...), Transport: transport}

	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	existing, err := topicPartitions(ctx, client, names)
	if err != nil {
		return err
	}
	var create []kafka.TopicConfig
	for _, s := range specs {
		if n, ok := existing[s.Name]; ok {
			if n != s.Partitions {
				logger.Warn("kafka topic exists with another partition count; left unchanged",
					"topic", s.Name, "partitions", n, "wanted", s.Partitions)
			}
			continue
		}
		tc := kafka.TopicConfig{Topic: s.Name, NumPartitions: s.Partitions, ReplicationFactor: s.ReplicationFactor}
		for _, k := range slices.Sorted(maps.Keys(s.Configs)) {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: s.Configs[k]})
		}
		create = append(create, tc)
	}
	if len(create) == 0 {
		return nil
	}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: create})
	if err != nil {
		return fmt.Errorf("%w: create: %w", ErrTopics, err)
	}
	for _, tc := range create {
		if err := resp.Errors[tc.Topic]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("%w: create %s: %w", ErrTopics, tc.Topic, err)
		}
		logger.Info("kafka topic created", "topic", tc.Topic, "partitions", tc.NumPartitions,
			"replication", tc.ReplicationFactor)
	}

	// Wait until the new topics are visible with leaders everywhere.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		got, err := topicPartitions(ctx, client, names)
		if err == nil && len(got) == len(names) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: wait for new topics: %w", ErrTopics, ctx.Err())
		case <-tick.C:
		}
	}
}

// topicPartitions returns the partition count of each named topic that
// exists and whose partitions all have a leader.
func topicPartitions(ctx context.Context, client *kafka.Client, names []string) (map[string]int, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return nil, fmt.Errorf("%w: metadata: %w", ErrTopics, err)
	}
	out := make(map[string]int, len(md.Topics))
	for _, t := range md.Topics {
		if t.Error != nil {
			if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
				continue
			}
			return nil, fmt.Errorf("%w: metadata %s: %w", ErrTopics, t.Name, t.Error)
		}
		ready := len(t.Partitions) > 0
		for _, p := range t.Partitions {
			if p.Error != nil || p.Leader.Host == "" {
				ready = false
			}
		}
		if ready {
			out[t.Name] = len(t.Partitions)
		}
	}
	return out, nil
}
