package services

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// Limits of the input.
const (
	defaultPageSize = 100
	maxPageSize     = 500
	maxPeriod       = 31 * 24 * time.Hour
	defaultPeriod   = 24 * time.Hour
	maxNote         = 1000
	maxPageToken    = 2048
)

// parseID parses a canonical UUID (36 characters, not the nil UUID).
// Empty is uuid.Nil unless required.
func parseID(field, s string, required bool) (uuid.UUID, error) {
	if s == "" {
		if required {
			return uuid.Nil, invalid(field, "is required")
		}
		return uuid.Nil, nil
	}
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 || id == uuid.Nil {
		return uuid.Nil, invalid(field, "not a UUID")
	}
	return id, nil
}

// parseEUI parses exactly 16 hex digits (either case). Empty is the zero
// EUI unless required.
func parseEUI(field, s string, required bool) (postgres.EUI64, error) {
	var e postgres.EUI64
	if s == "" {
		if required {
			return e, invalid(field, "is required")
		}
		return e, nil
	}
	if len(s) != 16 {
		return e, invalid(field, "want 16 hex digits")
	}
	if _, err := hex.Decode(e[:], []byte(s)); err != nil || e.IsZero() {
		return postgres.EUI64{}, invalid(field, "want 16 hex digits, not all zero")
	}
	return e, nil
}

// euiHex is the wire form of an EUI: 16 lowercase hex digits.
func euiHex(e postgres.EUI64) string { return hex.EncodeToString(e[:]) }

// pageSize checks page_size: 0 means the default, at most 500.
func pageSize(n int32) (int, error) {
	switch {
	case n == 0:
		return defaultPageSize, nil
	case n < 0 || n > maxPageSize:
		return 0, invalid("page_size", "must be 0..%d", maxPageSize)
	}
	return int(n), nil
}

// period checks a half-open period: both ends set, start < end, at most 31
// days. Absent, it is the last 24 hours up to now.
func period(p *apiv1.Period, now time.Time) (from, to time.Time, err error) {
	if p == nil {
		return now.Add(-defaultPeriod), now, nil
	}
	if p.GetStart() == nil || p.GetEnd() == nil {
		return from, to, invalid("period", "needs both start and end")
	}
	if p.GetStart().CheckValid() != nil || p.GetEnd().CheckValid() != nil {
		return from, to, invalid("period", "timestamp out of range")
	}
	from, to = p.GetStart().AsTime(), p.GetEnd().AsTime()
	if !from.Before(to) {
		return from, to, invalid("period", "start must be before end")
	}
	if to.Sub(from) > maxPeriod {
		return from, to, invalid("period", "at most 31 days")
	}
	return from, to, nil
}

// note checks a free-text note: at most 1000 characters, no control
// characters but line breaks and tabs.
func note(field, s string, required bool) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" && required {
		return "", invalid(field, "is required")
	}
	if !utf8.ValidString(s) {
		return "", invalid(field, "not UTF-8")
	}
	if n := utf8.RuneCountInString(s); n > maxNote {
		return "", invalid(field, "is %d characters long, at most %d allowed", n, maxNote)
	}
	for _, r := range s {
		if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f {
			return "", invalid(field, "contains control characters")
		}
	}
	return s, nil
}

// queryKey binds a page token to the request that made it: a hash of the
// filters (not of page_size or page_token).
func queryKey(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:8])
}

type pageTokenJSON struct {
	V int      `json:"v"`
	Q string   `json:"q"`
	K []string `json:"k"`
}

// encodePage makes the token of the page after the item with sort key k.
func encodePage(q string, k ...string) string {
	b, _ := json.Marshal(pageTokenJSON{V: 1, Q: q, K: k})
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodePage returns the cursor of a page token made for query q with n
// key parts (nil for an empty token).
func decodePage(tok, q string, n int) ([]string, error) {
	if tok == "" {
		return nil, nil
	}
	if len(tok) > maxPageToken {
		return nil, invalid("page_token", "too long")
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	var pt pageTokenJSON
	if err != nil || json.Unmarshal(b, &pt) != nil || pt.V != 1 || len(pt.K) != n {
		return nil, invalid("page_token", "malformed")
	}
	if pt.Q != q {
		return nil, invalid("page_token", "was made for a request with other filters")
	}
	return pt.K, nil
}
