package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/legionelladossier/legiond/actors"
	"github.com/legionelladossier/legiond/devicetwin"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/pebblestore"
	"github.com/legionelladossier/legiond/streams"
)

// eventView fills a cluster member's recent-event window (what the
// telemetry API reads) from twin.events, every partition: on a single node
// the twins write it themselves, but in a cluster a member's twins are only
// those of its partitions, which move. Every member thus answers for every
// device. Writes are idempotent (events are keyed by time and id), so a
// redelivery after a restart changes nothing.
type eventView struct {
	store  *pebblestore.Store
	reader *kafka.Reader
	// Batch bounds: flush at maxBatch events or maxDelay after the first.
	maxBatch int
	maxDelay time.Duration
}

func newEventView(client streams.ClientConfig, groupID string, store *pebblestore.Store) (*eventView, error) {
	dialer, err := client.Dialer()
	if err != nil {
		return nil, err
	}
	return &eventView{store: store, maxBatch: 512, maxDelay: 20 * time.Millisecond,
		reader: kafka.NewReader(kafka.ReaderConfig{
			Brokers: client.Brokers, Dialer: dialer, GroupID: groupID, Topic: streams.TopicTwinEvents,
			StartOffset: kafka.FirstOffset, MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 250 * time.Millisecond,
			HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second,
		})}, nil
}

// run consumes until ctx ends, then closes the reader.
func (v *eventView) run(ctx context.Context) error {
	defer func() { _ = v.reader.Close() }()
	in := make(chan kafka.Message, v.maxBatch)
	fetchErr := make(chan error, 1)
	go func() {
		for {
			m, err := v.reader.FetchMessage(ctx)
			if err != nil {
				fetchErr <- err
				return
			}
			select {
			case in <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	var batch []kafka.Message
	var flush <-chan time.Time
	for {
		select {
		case m := <-in:
			if len(batch) == 0 {
				flush = time.After(v.maxDelay)
			}
			if batch = append(batch, m); len(batch) < v.maxBatch {
				continue
			}
		case <-flush:
		case err := <-fetchErr:
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("event view: %w", err)
		case <-ctx.Done():
			return nil
		}
		if err := v.write(ctx, batch); err != nil {
			return err
		}
		batch, flush = batch[:0], nil
	}
}

// write stores a batch in the window, then commits its offsets.
func (v *eventView) write(ctx context.Context, batch []kafka.Message) error {
	writes := make([]pebblestore.Write, 0, len(batch))
	for _, m := range batch {
		if w, ok := viewWrite(m.Value); ok {
			writes = append(writes, w)
		}
	}
	if len(writes) > 0 {
		if err := v.store.Commit(ctx, writes...); err != nil {
			return fmt.Errorf("event view: %w", err)
		}
	}
	if err := v.reader.CommitMessages(ctx, batch...); err != nil && ctx.Err() == nil {
		return fmt.Errorf("event view: commit: %w", err)
	}
	return nil
}

// viewWrite turns a twin.events record into the window's entry, in the
// form the twins write themselves (without the ids the key and the twin
// already hold). A record that does not decode is skipped: the window is
// a read model, not the record.
func viewWrite(value []byte) (pebblestore.Write, bool) {
	var ev twinv1.TwinEvent
	if proto.Unmarshal(value, &ev) != nil || ev.GetEventTime() == nil {
		return pebblestore.Write{}, false
	}
	eui, err := devicetwin.ParseEUI(ev.GetDeviceEui())
	if err != nil {
		return pebblestore.Write{}, false
	}
	tenant := ev.GetCustomerId()
	if tenant == "" {
		tenant = actors.DefaultGatewayTenant
	}
	id, at := ev.GetEventId(), ev.GetEventTime().AsTime()
	actors.StripForWindow(&ev)
	payload, err := proto.Marshal(&ev)
	if err != nil || !pebblestore.ValidTenant(tenant) {
		return pebblestore.Write{}, false
	}
	return pebblestore.PutEvent(tenant, pebblestore.EventRecord{EUI: pebblestore.EUI(eui), Time: at, ID: id, Payload: payload}), true
}
