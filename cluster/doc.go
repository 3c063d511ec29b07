// Package cluster owns membership and placement of twin actors across
// Legiond members (protoactor cluster), the Raft group that replicates twin
// snapshots and Kafka offsets, mutual TLS between members, and failover.
//
// It must not contain domain rules or API handlers.
package cluster
