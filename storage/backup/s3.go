package backup

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config configures an S3-compatible bucket (AWS S3, MinIO, Scaleway,
// OVH, Hetzner, ...). For EEA-only data, use a bucket in an EEA region.
type S3Config struct {
	// Endpoint is the service URL, "https://host[:port]" (required). A
	// plain "http://" endpoint needs AllowHTTP.
	Endpoint string
	// Bucket (required) and Prefix (object name prefix, e.g. "legiond/";
	// a missing trailing '/' is added).
	Bucket string
	Prefix string
	// Region of the bucket, e.g. "eu-central-1". Default: asked from the
	// service.
	Region string
	// AccessKey and SecretKey (and SessionToken for temporary
	// credentials). Required.
	AccessKey, SecretKey, SessionToken string
	// AllowHTTP allows a plain-HTTP endpoint. Default false: only for an
	// in-process test server or a loopback MinIO. Archives are encrypted
	// either way; credentials are not.
	AllowHTTP bool
	// RootCAs verifies the endpoint's certificate. Default: the system pool.
	RootCAs *x509.CertPool
	// PartSize is the multipart upload part size, held in memory while it
	// is sent. Default 16 MiB (objects up to 160 GB).
	PartSize uint64
	// PathStyle forces path-style requests (https://host/bucket/object).
	// Default: virtual-host style where the service supports it.
	PathStyle bool
}

// Validate reports a configuration NewS3 would refuse.
func (c *S3Config) Validate() error {
	u, err := url.Parse(c.Endpoint)
	switch {
	case c.Endpoint == "" || err != nil || u.Host == "" || (u.Path != "" && u.Path != "/"):
		return fmt.Errorf("%w: S3 endpoint %q: want https://host[:port]", ErrInvalid, c.Endpoint)
	case u.Scheme == "http" && !c.AllowHTTP:
		return fmt.Errorf("%w: S3 endpoint %q is plain HTTP (allow it explicitly for tests only)", ErrInvalid, c.Endpoint)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%w: S3 endpoint %q: scheme must be https", ErrInvalid, c.Endpoint)
	case c.Bucket == "":
		return fmt.Errorf("%w: S3 bucket is required", ErrInvalid)
	case c.AccessKey == "" || c.SecretKey == "":
		return fmt.Errorf("%w: S3 access key and secret key are required", ErrInvalid)
	}
	return nil
}

// S3 is a Destination in an S3 bucket. Uploads of unknown length use
// multipart uploads, which S3 completes atomically (an aborted upload
// leaves no object). Consider a lifecycle rule that removes incomplete
// multipart uploads after a day, and Object Lock for ransomware protection
// (Prune then fails on locked objects until they expire, which is safe).
type S3 struct {
	c      *minio.Client
	bucket string
	prefix string
	part   uint64
	desc   string
}

// NewS3 returns an S3 destination. It does not contact the service.
func NewS3(cfg S3Config) (*S3, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = 16 << 20
	}
	u, _ := url.Parse(cfg.Endpoint)
	secure := u.Scheme == "https"
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: cfg.RootCAs}
	tr.ResponseHeaderTimeout = 2 * time.Minute
	opts := &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:    secure,
		Transport: tr,
		Region:    cfg.Region,
	}
	if cfg.PathStyle {
		opts.BucketLookup = minio.BucketLookupPath
	}
	c, err := minio.New(u.Host, opts)
	if err != nil {
		return nil, fmt.Errorf("%w: S3: %w", ErrInvalid, err)
	}
	prefix := cfg.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &S3{c: c, bucket: cfg.Bucket, prefix: prefix, part: cfg.PartSize,
		desc: "s3://" + cfg.Bucket + "/" + prefix + " at " + u.Host}, nil
}

// String describes the destination.
func (s *S3) String() string { return s.desc }

// Put implements Destination.
func (s *S3) Put(ctx context.Context, name string, r io.Reader) error {
	if err := validObjectName(name); err != nil {
		return err
	}
	_, err := s.c.PutObject(ctx, s.bucket, s.prefix+name, r, -1, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    s.part,
		// Unsigned payload: over TLS minio-go does this anyway; over plain
		// HTTP it would otherwise use aws-chunked streaming signatures,
		// which some S3 implementations do not decode. Archives carry their
		// own authentication (age and the trailer).
		DisableContentSha256: true,
	})
	if err != nil {
		return fmt.Errorf("put %s to %s: %w", name, s.desc, err)
	}
	return nil
}

// Get implements Destination.
func (s *S3) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := validObjectName(name); err != nil {
		return nil, err
	}
	obj, err := s.c.GetObject(ctx, s.bucket, s.prefix+name, minio.GetObjectOptions{})
	if err == nil {
		_, err = obj.Stat()
	}
	if err != nil {
		if obj != nil {
			_ = obj.Close()
		}
		if isS3NotFound(err) {
			return nil, fmt.Errorf("%w: %s in %s", ErrNotFound, name, s.desc)
		}
		return nil, fmt.Errorf("get %s from %s: %w", name, s.desc, err)
	}
	return obj, nil
}

// List implements Destination.
func (s *S3) List(ctx context.Context, prefix string) ([]Object, error) {
	var out []Object
	for o := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: false}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list %s: %w", s.desc, o.Err)
		}
		name := strings.TrimPrefix(o.Key, s.prefix)
		if name == "" || strings.Contains(name, "/") {
			continue
		}
		out = append(out, Object{Name: name, Size: o.Size, Modified: o.LastModified})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Delete implements Destination.
func (s *S3) Delete(ctx context.Context, name string) error {
	if err := validObjectName(name); err != nil {
		return err
	}
	if err := s.c.RemoveObject(ctx, s.bucket, s.prefix+name, minio.RemoveObjectOptions{}); err != nil && !isS3NotFound(err) {
		return fmt.Errorf("delete %s from %s: %w", name, s.desc, err)
	}
	return nil
}

func isS3NotFound(err error) bool {
	code := minio.ToErrorResponse(err).Code
	return code == "NoSuchKey" || code == "NotFound"
}
