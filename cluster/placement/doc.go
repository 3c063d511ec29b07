// Package placement decides which Legiond member serves which input
// partition, and makes each member serve exactly its share: partition
// index p of every input Kafka topic (lorawan.uplink, lorawan.gateway.stats,
// lorawan.gateway.seen) is owned by one member at a time. It owns the
// placement rule (Plan, a pure function), the leader's coordinator loop
// (RunCoordinator) and each member's reconciliation loop (RunMember).
//
// It must not talk to Kafka, load or passivate twins, or store anything
// itself: the decision is replicated through the Raft group
// (cluster/replication's Assignment, proposed compare-and-set on its
// epoch), the offsets to start from are read from the replicated store, and
// the node adapts its consumer and twins to the Partitions port.
//
// # Shape
//
//	every member:  RunCoordinator ── leader only, every 100 ms:
//	                 LiveMembers(FailAfter) + Assignment ─► Plan ─► ProposeAssignment(epoch, next)
//	               RunMember ── on every applied change and every 50 ms:
//	                 LeaderContact < Lease ? Assignment.Owned(me) : ∅
//	                 ─► Revoke(gone…) then Assign(new…, offsets read after the change)
//
// # Why not Kafka's consumer-group protocol or protoactor's cluster
//
// Kafka's group protocol detects a dead consumer through its session
// timeout, at least 6 s by the broker's default group.min.session.timeout.ms,
// then rebalances every member of the group; we want failover within 5 s
// (p99), and the offsets must move with the twin states (below), not live
// in Kafka. protoactor-go's cluster providers were measured here (see
// DESIGN §6): after a member stopped without a graceful leave, requests to
// its grains hung for over 90 s and TopologyConsensus reported no
// consensus within 10 s. The Raft group is already there, gives one
// leader, a replicated decision every member applies in the same order,
// and per-peer heartbeat failures on the leader (LiveMembers).
//
// # Failure detection and fencing: Lease < FailAfter
//
// The leader declares a member dead once its heartbeats to it have failed
// for FailAfter (default 2 s) since the member's last contact; only then
// can Plan give its partitions away. The member itself stops serving
// everything once it has not heard from a leader for Lease (default 1.5 s;
// RunMember re-checks every Interval, 50 ms). Both clocks start at about
// the same moment, the last heartbeat the member answered, and the
// member's runs out first (it received the heartbeat before the leader
// received the answer), so with
//
//	Lease + Interval + time of a Revoke  <  FailAfter
//
// a member cut off from the leader has revoked its partitions before the
// leader can assign them elsewhere, and a crashed member serves nothing
// anyway. A deposed leader keeps LeaderContact 0 while it still believes it
// leads, at most Raft's LeaderLeaseTimeout (≤ 500 ms) after losing its
// quorum; a new leader starts with every member live and declares the old
// one dead only FailAfter after its own election, so the same margin holds.
// Clock rates matter, not clock values: every duration is measured locally.
//
// Moves between two live members (balancing after a member returns) are
// proposed in two steps (Handoff): first the partition is left unowned, so
// its old owner revokes it, and a later tick gives it to the new owner.
// This narrows, but cannot close, the window in which two members serve one
// partition: the old owner may apply the first step late.
//
// A brief double service therefore remains possible in rare cases (a
// member whose process stalls longer than the margin, a slow apply), and
// it is harmless by construction: twin writes are fenced by versions in
// Raft (a batch is refused when a twin's version moved since it was
// loaded, so a stale owner cannot overwrite newer state and must reload),
// twins skip frames their state already contains, and offsets never move
// backwards.
//
// # Offsets in Raft, beside the state
//
// Like Flink's checkpoints, the consumed position is stored atomically with
// the state it produced: a batch carries twin snapshots and the Kafka
// offsets they cover, in one Raft entry. A member that gains a partition
// reads the offsets from its replicated store after it applied the
// assignment entry, so every offset committed before the decision is
// there; it replays at most the frames whose batches were still in flight
// (at-least-once delivery, made exactly-once by the twins' frame counters).
//
// # Failover time
//
// Measured with three in-process members on loopback (mutual TLS, Raft
// heartbeat and election timeouts of 250 ms, defaults here): a crashed
// follower's partitions were served elsewhere after ~2.1 s, a crashed
// leader's after ~2.7 s (election, then FailAfter from the new leader's
// election). With production Raft timings (1 s) an election takes longer:
// keep FailAfter + election time under the 5 s target, and Lease above the
// usual election time, or the survivors drop and regain every partition
// while a new leader is elected (safe, but a pause).
package placement
