package encfs

import (
	"crypto/aes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// benchFS returns the plain OS filesystem or encfs over it, in a fresh
// folder.
func benchFS(b *testing.B, encrypted bool) (vfs.FS, string) {
	dir := b.TempDir()
	if !encrypted {
		return vfs.Default, dir
	}
	return openFS(b, vfs.Default, dir, testKey(1)), dir
}

var benchModes = []struct {
	name      string
	encrypted bool
}{{"plain", false}, {"encrypted", true}}

// BenchmarkSequentialWrite appends 32 KiB writes (Pebble's WAL block and
// a typical sstable write) to files on disk, without fsync: the cost of
// the wrapper, not of the disk.
func BenchmarkSequentialWrite(b *testing.B) {
	const chunk = 32 << 10
	const perFile = 1024 // 32 MiB files
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			fs, dir := benchFS(b, m.encrypted)
			p := make([]byte, chunk)
			for i := range p {
				p[i] = byte(i)
			}
			b.SetBytes(chunk)
			b.ReportAllocs()
			var f vfs.File
			name := ""
			for i := 0; b.Loop(); i++ {
				if i%perFile == 0 {
					if f != nil {
						_ = f.Close()
						_ = fs.Remove(name)
					}
					name = filepath.Join(dir, fmt.Sprintf("%06d.log", i/perFile))
					var err error
					if f, err = fs.Create(name, vfs.WriteCategoryUnspecified); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := f.Write(p); err != nil {
					b.Fatal(err)
				}
			}
			if f != nil {
				_ = f.Close()
			}
		})
	}
}

// BenchmarkRandomReadAt reads 4 KiB (a Pebble data block) at random,
// unaligned offsets of a 32 MiB file in the page cache.
func BenchmarkRandomReadAt(b *testing.B) {
	const size = 32 << 20
	const block = 4 << 10
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			fs, dir := benchFS(b, m.encrypted)
			name := filepath.Join(dir, "000001.sst")
			data := make([]byte, size)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			writeFile(b, fs, name, data)
			f, err := fs.Open(name, vfs.RandomReadsOption)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			p := make([]byte, block)
			b.SetBytes(block)
			b.ReportAllocs()
			for b.Loop() {
				off := r.Int64N(size - block)
				if n, err := f.ReadAt(p, off); n != block || err != nil {
					b.Fatalf("ReadAt = %d, %v", n, err)
				}
			}
		})
	}
}

// BenchmarkPebbleSet measures Pebble writes (100-byte values, NoSync, so
// WAL, memtable flushes and compactions but no fsync wait) on each FS.
func BenchmarkPebbleSet(b *testing.B) {
	for _, m := range benchModes {
		b.Run(m.name, func(b *testing.B) {
			fs, dir := benchFS(b, m.encrypted)
			db, err := pebble.Open(filepath.Join(dir, "db"), pebbleOptions(fs))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			v := make([]byte, 100)
			b.SetBytes(int64(len(v) + 16))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if err := db.Set(fmt.Appendf(nil, "twin/%010d", i), v, pebble.NoSync); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkXorAt is the raw AES-256-CTR cost at an arbitrary offset.
func BenchmarkXorAt(b *testing.B) {
	blk, _ := aes.NewCipher(testKey(1))
	c := &fileCipher{block: blk}
	for _, n := range []int{4 << 10, 32 << 10} {
		p := make([]byte, n)
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				c.xorAt(p, p, int64(i*7))
			}
		})
	}
}
