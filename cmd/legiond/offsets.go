package main

import (
	"context"
	"fmt"
	"time"

	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/streams"
)

// storeOffsets makes the consumer keep its offsets in the twin store too.
//
// Every offset the consumer commits is written into the twin store (one
// atomic, synced unit) before it is committed to Kafka. Twin states are
// durable before their records complete, so the stored offset of a
// partition never runs ahead of the states: a Pebble checkpoint (a full
// backup) carries, with the states, where to resume them.
//
// When a partition is assigned and the store's offset is lower than the
// group's committed one, the store is older than Kafka's commit (restored
// from a backup, or the partition moved back to this node after another
// applied more of it), and the consumer replays from the store's offset:
// the twins skip frames they already contain, and event ids are
// deterministic. A store offset that cannot be read (the store closing)
// leaves Kafka's commit in charge.
func (n *node) storeOffsets(c *streams.ConsumerConfig) {
	c.OnCommit = func(ctx context.Context, offs []streams.Offset) error {
		ws := make([]pebblestore.Write, len(offs))
		for i, o := range offs {
			ws[i] = pebblestore.PutOffset(pebblestore.TopicPartition{Topic: o.Topic, Partition: int32(o.Partition)}, o.Next)
		}
		if err := n.store.Commit(ctx, ws...); err != nil {
			return fmt.Errorf("store offsets: %w", err)
		}
		return nil
	}
	c.StartOffset = func(topic string, partition int) (int64, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		offs, err := n.store.Offsets(ctx)
		if err != nil {
			n.log.Warn("stored offsets unreadable; starting at Kafka's commit", "topic", topic, "partition", partition, "err", err)
			return 0, false
		}
		off, ok := offs[pebblestore.TopicPartition{Topic: topic, Partition: int32(partition)}]
		return off, ok
	}
}
