// Package encfs is Legiond's encryption at rest for Pebble: a vfs.FS that
// encrypts every file written through it, so that sstables, WALs, MANIFESTs
// and OPTIONS files of every Pebble store (twin state and Raft log/stable
// stores alike) hold no plaintext on disk.
//
// # What it owns
//
//   - The file format. Every file starts with a fixed HeaderSize (32 byte)
//     header: magic "LGDENC", format version (uint16), the id of the data
//     key (uint32), a CRC-32C of the header, and a 16-byte IV from
//     crypto/rand. The content after the header is AES-256-CTR with counter
//     block IV + offset/16 (128-bit big-endian addition), so ReadAt and
//     WriteAt work at any offset. The logical size, reported by File.Stat
//     and FS.Stat, is the physical size minus the header.
//   - The keystore, the file STORAGE-KEYS in Config.Dir: random AES-256
//     data keys, each wrapped with AES-256-GCM under a key derived (HKDF-SHA256)
//     from the 32-byte master key, plus the id of the primary key (the one
//     new files use), a master-key fingerprint and an HMAC over the whole
//     keystore. It is rewritten atomically (temp file, fsync, rename, fsync
//     of the directory).
//   - An exclusive lock, STORAGE-KEYS.lock, held from Open to Close, so that
//     `legiond keys rotate` cannot change the keystore under a running node.
//   - Master-key loading (file or LEGIOND_STORAGE_MASTER_KEY, hex or base64)
//     and the development key file master-key.DEVELOPMENT-ONLY.
//
// # Guarantees
//
//   - Open checks the master key, then every file under Dir, before any
//     Pebble store touches anything: a wrong master key (ErrWrongMasterKey),
//     a lost keystore next to encrypted files (ErrNoKeyStore), a plaintext
//     file (ErrNotEncrypted), a file under a key the keystore lacks
//     (ErrUnknownKey) or a damaged header (ErrCorruptHeader) fail Open with
//     the file named, and nothing is written or removed.
//   - Every new file, and every WAL that Pebble recycles (ReuseForWrite),
//     gets a fresh random IV under the current primary key: a keystream is
//     never used for two different files. Link and Rename move the header
//     with the file.
//   - Rotate makes a new data key primary only after the keystore holding
//     it is durable, so no file is ever written under a key that a crash
//     could lose. Old keys stay, so old files stay readable.
//   - Crash behaviour is Pebble's own: a file's header is written by the same
//     file handle as its data, and every Sync/SyncData of data covers the
//     header (it is the prefix of the file). A file whose header a crash
//     kept from the disk (empty, zeroed first block, part of a header) holds
//     no synced data; it opens and reads as zeros, which Pebble treats like
//     any unsynced tail, and Open's check counts it without refusing.
//
// # What it must not do, and limits
//
//   - It must not apply any domain logic, and it must not log on the I/O
//     path (only Open, Rotate, Rewrap and Close log).
//   - Confidentiality only: AES-CTR is malleable and the format carries no
//     MAC over file contents. Integrity comes from Pebble's own block, WAL
//     and MANIFEST checksums, which detect corruption (including tampering
//     that is not crafted against those checksums). Rewriting a byte range
//     in place with WriteAt reuses that range's keystream; Pebble writes its
//     files append-only (recycled WALs get a new IV), so this does not arise
//     for Pebble data.
//   - Bytes a file never had written (a hole left by WriteAt past the end)
//     read back as noise, not zeros. Pebble never reads such ranges except
//     in a torn tail after a crash, which its checksums reject either way.
//   - Dir must hold only files written through this FS (plus the keystore,
//     its lock and the development key). Anything else there is refused at
//     Open as plaintext: put the dev Kafka broker, TLS material and any
//     non-Pebble snapshot files elsewhere, or write them through this FS.
//     Files written through the FS outside Dir (a WALDir, a checkpoint
//     elsewhere) are encrypted too, but only Dir is checked at Open, and
//     they need Dir's keystore to be read.
//   - The lock file Pebble takes with FS.Lock and directories pass through
//     unencrypted: a lock file is empty, a directory has no content.
//   - File.Fd returns the underlying descriptor. In pebble v2.1.7 a
//     descriptor is used only as a capability flag and for fadvise,
//     readahead, fallocate and sync_file_range hints (vfs/syncing_file.go,
//     vfs/vfs.go); nothing reads or writes raw bytes through it. Re-audit
//     this on every Pebble upgrade: raw I/O on the descriptor would bypass
//     encryption.
//   - Unwrap returns nil so that vfs.Root can never reach the plaintext
//     filesystem underneath.
//   - Master-key compromise: rewrap the keystore under a new master key
//     (RewrapMasterKey). Data-key compromise: Rotate, then make Pebble
//     rewrite its files (compaction) before the old key can be retired;
//     retiring keys is not implemented yet.
package encfs
