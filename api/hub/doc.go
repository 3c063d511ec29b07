// Package hub is the live stream hub of the API: one consumer of
// twin.events per node, a bounded in-memory window of recent events, and
// the fan-out of those events to stream subscribers (the mobile apps, the
// portal, `legiond watch`), each filtered by tenant, site, device and kind.
//
// # Consuming
//
// Run reads every partition of twin.events with its own kafka-go partition
// reader (no consumer group: every node sees everything, and nothing is
// committed). It starts at the end of each partition, or at
// Config.StartOffsets. Each partition goroutine decodes TwinEvents, appends
// them to the partition's ring (the last Config.RingSize events, none older
// than Config.RingMaxAge) and pushes each one into the queue of every
// subscriber whose filter matches.
//
// # Subscribers
//
// A Subscription has one bounded queue (Config.QueueSize). The partition
// goroutines never block on it: when it is full the subscriber is marked
// slow and its stream ends with ErrSlow ("subscriber too slow; resume with
// the last token"), so one slow reader never delays the others. The
// handler that owns the subscription calls Next in a loop and sends what it
// gets; Next also produces heartbeats (Config.Heartbeat) when nothing else
// was sent, and a first heartbeat at once so the client holds a token from
// the start.
//
// # Resume tokens
//
// Every message carries a resume token: opaque, versioned, the next offset
// to deliver for every partition (see EncodeToken). It means "every matching
// event below these offsets has been delivered". Heartbeats advance it past
// events that did not match, so an idle subscriber's token stays fresh.
// Subscribe with a token replays, per partition, the range between the
// token and the partition's head at the moment of subscribing (from the
// ring, or from Kafka when the ring no longer holds it), then continues with
// the live events pushed from that head on. Registration and the head are
// read under the partition's lock, so the replayed range and the live range
// meet exactly: no gap, no duplicate, order kept within each partition.
// A token older than what Kafka still retains is ErrTokenTooOld: the
// client must start afresh, and it is told so instead of silently missing
// events.
//
// # Ownership
//
// Each partition's ring, head and subscriber list are written only by its
// partition goroutine, under the partition's mutex; subscribers take that
// mutex briefly to register, to copy replay chunks and to advance their
// token on heartbeats. A subscription's positions are owned by the goroutine
// calling Next. Nothing here blocks on a subscriber.
//
// The hub filters by what its Filter says and must not decide who may see
// what: the api/services handlers build the Filter from the caller's
// principal. It must not write to Kafka or to any store.
package hub
