package raftstore

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
	raftbench "github.com/hashicorp/raft/bench"
)

func benchStore(b *testing.B) *Store {
	s, err := Open(Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// BenchmarkStoreLogs measures synced appends on the real file system: raft
// appends one batch per AppendEntries (up to MaxAppendEntries, 64 by
// default), so the batch size decides how far one fsync is shared.
func BenchmarkStoreLogs(b *testing.B) {
	for _, batch := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("batch=%d/entry=512B", batch), func(b *testing.B) {
			s := benchStore(b)
			data := make([]byte, 512)
			ls := make([]*raft.Log, batch)
			for i := range ls {
				ls[i] = &raft.Log{Type: raft.LogCommand, Term: 1, Data: data}
			}
			b.SetBytes(int64(batch * len(data)))
			b.ResetTimer()
			idx := uint64(0)
			for b.Loop() {
				for _, l := range ls {
					idx++
					l.Index = idx
				}
				if err := s.StoreLogs(ls); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(idx)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// The raftbench suite shared by hashicorp's own stores, for comparison.
func BenchmarkRaftbench(b *testing.B) {
	b.Run("FirstIndex", func(b *testing.B) { raftbench.FirstIndex(b, benchStore(b)) })
	b.Run("LastIndex", func(b *testing.B) { raftbench.LastIndex(b, benchStore(b)) })
	b.Run("GetLog", func(b *testing.B) { raftbench.GetLog(b, benchStore(b)) })
	b.Run("StoreLog", func(b *testing.B) { raftbench.StoreLog(b, benchStore(b)) })
	b.Run("StoreLogs", func(b *testing.B) { raftbench.StoreLogs(b, benchStore(b)) })
	b.Run("DeleteRange", func(b *testing.B) { raftbench.DeleteRange(b, benchStore(b)) })
	b.Run("Set", func(b *testing.B) { raftbench.Set(b, benchStore(b)) })
	b.Run("Get", func(b *testing.B) { raftbench.Get(b, benchStore(b)) })
	b.Run("SetUint64", func(b *testing.B) { raftbench.SetUint64(b, benchStore(b)) })
	b.Run("GetUint64", func(b *testing.B) { raftbench.GetUint64(b, benchStore(b)) })
}
