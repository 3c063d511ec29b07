package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/legionelladossier/legiond/storage/encfs"
)

// storageDir is the encrypted-storage folder inside a node's data folder:
// every Pebble store of the node (twins, Raft log and stable stores) lives
// under it and is opened through the one encfs.FS whose Dir it is. The
// rest of the data folder (dev broker, dev registry) stays outside, since
// encfs refuses unencrypted files under its Dir. The node and
// `legiond keys` must agree on it.
func storageDir(dataDir string) string { return filepath.Join(dataDir, "storage") }

// openEncryptedStorage opens the node's encrypted storage folder with the
// master key from masterKeyFile, else $LEGIOND_STORAGE_MASTER_KEY, else,
// with dev only, the development key kept in the folder (created if
// missing). Pass the returned FS as the FS of every Pebble store under
// storageDir(dataDir), and Close it after they are closed.
func openEncryptedStorage(dataDir, masterKeyFile string, dev bool, log *slog.Logger) (*encfs.FS, error) {
	dir := storageDir(dataDir)
	mk, err := encfs.LoadMasterKey(masterKeyFile, os.Getenv)
	if errors.Is(err, encfs.ErrNoMasterKey) && masterKeyFile == "" && dev {
		mk, err = encfs.LoadOrCreateDevMasterKey(dir)
		if err == nil && log != nil {
			log.Warn("storage encrypted with the DEVELOPMENT-ONLY master key kept next to the data", "dir", dir)
		}
	}
	if err != nil {
		return nil, err
	}
	return encfs.Open(encfs.Config{Dir: dir, MasterKey: mk, Logger: log})
}

// keysCmd is one `legiond keys <verb>`.
type keysCmd struct {
	summary string
	usage   string
	run     func(args []string, s stdio) int
}

func keysCommands() map[string]keysCmd {
	return map[string]keysCmd{
		"status": {summary: "show the storage data keys and how many files use each",
			usage: "--data-dir DIR [--master-key-file F | --dev-master-key]", run: runKeysStatus},
		"rotate": {summary: "make a new storage data key primary (node stopped; used from its next start)",
			usage: "--data-dir DIR [--master-key-file F | --dev-master-key]", run: runKeysRotate},
		"rewrap": {summary: "rewrap the storage data keys under a new master key (node stopped)",
			usage: "--data-dir DIR [--master-key-file F | --dev-master-key] --new-master-key-file F2", run: runKeysRewrap},
		"encrypt": {summary: "move a twin store from before encryption at rest (DATA/twins) into the encrypted layout (node stopped)",
			usage: "--data-dir DIR [--master-key-file F | --dev-master-key]", run: runKeysEncrypt},
		"generate-master-key": {summary: "print (or write, mode 0600) a new random storage master key",
			usage: "[--out FILE]", run: runKeysGenerate},
	}
}

func keysUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: legiond keys <command> [flags]\n\nencryption at rest of the node's Pebble stores (DATA-DIR/storage); stop the node first:")
	cmds := keysCommands()
	for _, n := range []string{"status", "rotate", "rewrap", "encrypt", "generate-master-key"} {
		fmt.Fprintf(w, "  %-20s %s\n      legiond keys %s %s\n", n, cmds[n].summary, n, cmds[n].usage)
	}
	fmt.Fprintf(w, "\nThe master key comes from --master-key-file, else $%s (64 hex characters or base64).\n", encfs.EnvMasterKey)
}

func runKeys(_ context.Context, args []string, s stdio) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		keysUsage(s.err)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := keysCommands()[args[0]]
	if !ok {
		fmt.Fprintf(s.err, "legiond keys: unknown command %q\n\n", args[0])
		keysUsage(s.err)
		return exitUsage
	}
	return cmd.run(args[1:], s)
}

// keyFlags are the flags every keystore command shares.
type keyFlags struct {
	name    string
	fs      *flag.FlagSet
	dataDir *string
	keyFile *string
	devKey  *bool
}

func newKeyFlags(name string, s stdio) *keyFlags {
	fs := flag.NewFlagSet("keys "+name, flag.ContinueOnError)
	fs.SetOutput(s.err)
	k := &keyFlags{
		name:    name,
		fs:      fs,
		dataDir: fs.String("data-dir", "", "the node's data folder, as given to legiond run (required)"),
		keyFile: fs.String("master-key-file", "", "storage master key file (default $"+encfs.EnvMasterKey+")"),
		devKey:  fs.Bool("dev-master-key", false, "use the development key "+encfs.DevMasterKeyFile+" of legiond dev"),
	}
	fs.Usage = func() {
		fmt.Fprintf(s.err, "usage: legiond keys %s %s\n", name, keysCommands()[name].usage)
		fs.PrintDefaults()
	}
	return k
}

// parse parses args and reports a usage error (printed) as false.
func (k *keyFlags) parse(args []string, s stdio) bool {
	if err := k.fs.Parse(args); err != nil {
		return false
	}
	switch {
	case k.fs.NArg() > 0:
		fmt.Fprintf(s.err, "legiond keys %s: unexpected argument %q\n", k.name, k.fs.Arg(0))
		return false
	case *k.dataDir == "":
		fmt.Fprintf(s.err, "legiond keys %s: --data-dir is required\n", k.name)
		return false
	case *k.devKey && *k.keyFile != "":
		fmt.Fprintf(s.err, "legiond keys %s: give --master-key-file or --dev-master-key, not both\n", k.name)
		return false
	}
	return true
}

// open loads the master key and opens the keystore, which must exist. It
// prints the error (with a hint) and returns nil on failure.
func (k *keyFlags) open(s stdio) *encfs.FS {
	dir := storageDir(*k.dataDir)
	file := *k.keyFile
	if *k.devKey {
		file = filepath.Join(dir, encfs.DevMasterKeyFile)
	}
	mk, err := encfs.LoadMasterKey(file, os.Getenv)
	if err != nil {
		k.fail(s, err)
		return nil
	}
	efs, err := encfs.Open(encfs.Config{Dir: dir, MasterKey: mk, MustExist: true})
	if err != nil {
		k.fail(s, err)
		return nil
	}
	return efs
}

// fail prints err with what the operator can do about it.
func (k *keyFlags) fail(s stdio, err error) {
	fmt.Fprintf(s.err, "legiond keys %s: %v\n", k.name, err)
	hint := ""
	switch {
	case errors.Is(err, encfs.ErrLocked):
		hint = "stop the node first: keys commands need the data folder to themselves"
	case errors.Is(err, encfs.ErrWrongMasterKey):
		hint = "this is not the master key the keystore was written with; nothing was changed"
	case errors.Is(err, encfs.ErrNoMasterKey):
		hint = "pass --master-key-file or set " + encfs.EnvMasterKey
	case errors.Is(err, encfs.ErrNoKeyStore):
		hint = "is --data-dir the node's data folder? (a node creates the keystore on its first start)"
	}
	if hint != "" {
		fmt.Fprintf(s.err, "hint: %s\n", hint)
	}
}

func runKeysStatus(args []string, s stdio) int {
	k := newKeyFlags("status", s)
	if !k.parse(args, s) {
		return exitUsage
	}
	efs := k.open(s)
	if efs == nil {
		return exitFailure
	}
	defer func() { _ = efs.Close() }()
	st, err := efs.Status()
	if err != nil {
		k.fail(s, err)
		return exitFailure
	}
	fmt.Fprintf(s.out, "data folder:  %s\nmaster key:   fingerprint %s\nprimary key:  %d\n\n", st.Dir, st.MasterKey, st.Primary)
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tCREATED\tPRIMARY\tFILES\tBYTES")
	for _, ki := range st.Keys {
		primary := ""
		if ki.Primary {
			primary = "yes"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\n", ki.ID, ki.Created.UTC().Format(time.RFC3339), primary, ki.Files, ki.Bytes)
	}
	if err := tw.Flush(); err != nil {
		return exitFailure
	}
	return exitOK
}

func runKeysRotate(args []string, s stdio) int {
	k := newKeyFlags("rotate", s)
	if !k.parse(args, s) {
		return exitUsage
	}
	efs := k.open(s)
	if efs == nil {
		return exitFailure
	}
	defer func() { _ = efs.Close() }()
	prev := efs.PrimaryKeyID()
	id, err := efs.Rotate()
	if err != nil {
		k.fail(s, err)
		return exitFailure
	}
	fmt.Fprintf(s.out, "storage data key %d is now primary (was %d)\n", id, prev)
	fmt.Fprintln(s.out, "the node writes new files under it from its next start; files under older keys stay readable")
	return exitOK
}

func runKeysRewrap(args []string, s stdio) int {
	k := newKeyFlags("rewrap", s)
	newFile := k.fs.String("new-master-key-file", "", "file with the new master key (required)")
	if !k.parse(args, s) {
		return exitUsage
	}
	if *newFile == "" {
		fmt.Fprintln(s.err, "legiond keys rewrap: --new-master-key-file is required")
		return exitUsage
	}
	newKey, err := encfs.LoadMasterKey(*newFile, nil)
	if err != nil {
		k.fail(s, err)
		return exitFailure
	}
	efs := k.open(s)
	if efs == nil {
		return exitFailure
	}
	defer func() { _ = efs.Close() }()
	if err := efs.RewrapMasterKey(newKey); err != nil {
		k.fail(s, err)
		return exitFailure
	}
	fmt.Fprintf(s.out, "storage keystore now opens with master key %s only\n", encfs.Fingerprint(newKey))
	return exitOK
}

func runKeysGenerate(args []string, s stdio) int {
	flags := flag.NewFlagSet("keys generate-master-key", flag.ContinueOnError)
	flags.SetOutput(s.err)
	out := flags.String("out", "", "write the key to this new file (mode 0600) instead of stdout")
	if err := flags.Parse(args); err != nil {
		return exitUsage
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(s.err, "legiond keys generate-master-key: unexpected argument %q\n", flags.Arg(0))
		return exitUsage
	}
	key := encfs.EncodeMasterKey(encfs.GenerateMasterKey()) + "\n"
	if *out == "" {
		fmt.Fprint(s.out, key)
		return exitOK
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		fmt.Fprintf(s.err, "legiond keys generate-master-key: %v\n", err)
		if errors.Is(err, fs.ErrExist) {
			fmt.Fprintln(s.err, "hint: refusing to overwrite a key file; losing a master key loses the data")
		}
		return exitFailure
	}
	_, werr := f.WriteString(key)
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		fmt.Fprintf(s.err, "legiond keys generate-master-key: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(s.out, "wrote a new storage master key to %s\n", *out)
	return exitOK
}
