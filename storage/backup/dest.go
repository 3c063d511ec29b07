package backup

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Object is a stored archive.
type Object struct {
	Name     string    `json:"name"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
}

// Destination stores archives under flat names (see ObjectName). Put must
// be atomic: after a failed or cancelled Put there is no object of that
// name (never a partial one). Get of a missing object returns an error
// wrapping ErrNotFound. List returns the objects whose names start with
// prefix, sorted by name.
type Destination interface {
	Put(ctx context.Context, name string, r io.Reader) error
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	List(ctx context.Context, prefix string) ([]Object, error)
	Delete(ctx context.Context, name string) error
}

// LocalDir is a Destination in a local folder (or a mounted one: NFS, an
// external disk). Put writes a hidden temporary file, fsyncs it, renames it
// into place and fsyncs the folder.
type LocalDir struct{ dir string }

// NewLocalDir returns a LocalDir, creating dir (mode 0700) when missing.
func NewLocalDir(dir string) (*LocalDir, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: empty backup folder", ErrInvalid)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("backup folder: %w", err)
	}
	return &LocalDir{dir: dir}, nil
}

// Dir returns the folder.
func (d *LocalDir) Dir() string { return d.dir }

// String describes the destination.
func (d *LocalDir) String() string { return "file://" + d.dir }

// Put implements Destination.
func (d *LocalDir) Put(ctx context.Context, name string, r io.Reader) (err error) {
	if err := validObjectName(name); err != nil {
		return err
	}
	f, err := os.CreateTemp(d.dir, ".tmp-"+name+"-*")
	if err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = io.Copy(f, ctxReader{ctx, r}); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	if err = os.Rename(tmp, filepath.Join(d.dir, name)); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	return syncDir(d.dir)
}

// Get implements Destination.
func (d *LocalDir) Get(_ context.Context, name string) (io.ReadCloser, error) {
	if err := validObjectName(name); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(d.dir, name))
	if isNotExist(err) {
		return nil, fmt.Errorf("%w: %s in %s", ErrNotFound, name, d.dir)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	return f, nil
}

// List implements Destination. Hidden (temporary) files are left out.
func (d *LocalDir) List(_ context.Context, prefix string) ([]Object, error) {
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", d.dir, err)
	}
	var out []Object
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			if isNotExist(err) {
				continue
			}
			return nil, fmt.Errorf("list %s: %w", d.dir, err)
		}
		out = append(out, Object{Name: e.Name(), Size: info.Size(), Modified: info.ModTime()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Delete implements Destination. Deleting a missing object is not an error.
func (d *LocalDir) Delete(_ context.Context, name string) error {
	if err := validObjectName(name); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(d.dir, name)); err != nil && !isNotExist(err) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return syncDir(d.dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ctxReader stops reading when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// OpenDestination opens a destination from a URL: file:///path (or a
// plain path) is a LocalDir; s3://bucket/prefix is an S3 bucket configured
// by s3 (its Bucket and Prefix are taken from the URL).
func OpenDestination(rawURL string, s3 S3Config) (Destination, error) {
	if rawURL == "" {
		return nil, fmt.Errorf("%w: no backup destination", ErrInvalid)
	}
	if !strings.Contains(rawURL, "://") {
		return NewLocalDir(rawURL)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: destination %q: %w", ErrInvalid, rawURL, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("%w: destination %q: file URLs take no host (file:///path)", ErrInvalid, rawURL)
		}
		return NewLocalDir(u.Path)
	case "s3":
		s3.Bucket = u.Host
		s3.Prefix = strings.TrimPrefix(u.Path, "/")
		return NewS3(s3)
	}
	return nil, fmt.Errorf("%w: destination %q: want file:///path or s3://bucket/prefix", ErrInvalid, rawURL)
}

// Latest returns the newest backup object (by the time in its name) of one
// of kinds (all kinds when none is given), or ErrNotFound.
func Latest(ctx context.Context, d Destination, kinds ...Kind) (Object, ObjectInfo, error) {
	objs, err := d.List(ctx, namePrefix)
	if err != nil {
		return Object{}, ObjectInfo{}, err
	}
	var (
		best     Object
		bestInfo ObjectInfo
		found    bool
	)
	for _, o := range objs {
		info, ok := ParseObjectName(o.Name)
		if !ok || (len(kinds) > 0 && !containsKind(kinds, info.Kind)) {
			continue
		}
		if !found || info.At.After(bestInfo.At) {
			best, bestInfo, found = o, info, true
		}
	}
	if !found {
		what := "backup"
		if len(kinds) > 0 {
			what = fmt.Sprintf("%v backup", kinds)
		}
		return Object{}, ObjectInfo{}, fmt.Errorf("%w: no %s", ErrNotFound, what)
	}
	return best, bestInfo, nil
}

func containsKind(ks []Kind, k Kind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}
