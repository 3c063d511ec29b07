package postgres

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Audit actions this module writes. Actions are lower-case dotted words
// (at most 64 characters); add new ones here rather than inventing them at
// call sites, so that reports can group by action.
const (
	// AuditDataAccess: staff (platform or partner roles) read a customer's data.
	AuditDataAccess = "data.access"
	// AuditAdminChange: a registry row was created, changed or deleted by an
	// administrator. Put the entity in Target ("device:70B3…") and the
	// changed field names (never secret values) in Details.
	AuditAdminChange = "admin.change"
	// AuditTokenIssued: an access token was issued.
	AuditTokenIssued = "token.issue"
	// AuditBackupCreated and AuditBackupRestored: a backup was written or
	// restored (Target: the archive name).
	AuditBackupCreated  = "backup.create"
	AuditBackupRestored = "backup.restore"
	// AuditPersonExported and AuditPersonErased: GDPR access and erasure
	// requests (Target: "user:<id>").
	AuditPersonExported = "gdpr.export"
	AuditPersonErased   = "gdpr.erase"
)

// auditVersionTag starts the canonical encoding of every entry; it must
// match legiond.audit_entry_bytes in migrations/00002_audit.sql.
const auditVersionTag = "legiond-audit-v1"

// maxAuditProblems bounds AuditReport.Problems; Count keeps the total.
const maxAuditProblems = 100

var auditActionRE = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)

// AuditEntry is what a caller appends. seq, time and hashes are assigned
// by the database when the entry is inserted.
//
// Entries are permanent: they cannot be edited or erased, not even for a
// GDPR erasure. Name people by id ("user:<id>"), never by name or e-mail,
// in Actor, Target and Details.
type AuditEntry struct {
	// Actor is who acted ("user:<id>", "client:<client_id>", "cli:backup").
	// Default: the transaction scope's actor.
	Actor string
	// ActorRole is the role the actor acted in ("platform-admin",
	// "technician", ...). Optional.
	ActorRole string
	// Action is one of the Audit* constants (required).
	Action string
	// PartnerID or CustomerID is the tenant the entry concerns. Default:
	// the scope's tenant (none, i.e. the platform, under the platform
	// scope). Row-level security refuses an entry for a tenant outside the
	// scope.
	PartnerID  *uuid.UUID
	CustomerID *uuid.UUID
	// Target names what was acted on ("device:70B3D57ED0000001").
	Target string
	// Details is marshalled to a JSON object (nil: {}). At most 16 KiB; no
	// secrets, no personal data beyond ids.
	Details any
}

// AuditRecord is a stored entry.
type AuditRecord struct {
	Seq        int64           `json:"seq"`
	At         time.Time       `json:"at"`
	Actor      string          `json:"actor"`
	ActorRole  string          `json:"actor_role,omitempty"`
	Action     string          `json:"action"`
	PartnerID  *uuid.UUID      `json:"partner_id,omitempty"`
	CustomerID *uuid.UUID      `json:"customer_id,omitempty"`
	Target     string          `json:"target,omitempty"`
	Details    json.RawMessage `json:"details"`
	PrevHash   []byte          `json:"prev_hash"`
	Hash       []byte          `json:"hash"`
}

// AuditAnchor is a (seq, hash) pair recorded outside the database (a
// backup manifest, a log line, a ticket): VerifyAudit checks that the
// chain still holds exactly that entry, which catches what no in-database
// check can: deleting the newest entries, or rewriting the whole chain.
type AuditAnchor struct {
	Seq  int64  `json:"seq"`
	Hash []byte `json:"hash"`
}

// String renders the anchor as "seq:hexhash", the form ParseAuditAnchor
// and `legiond audit verify --anchor` accept.
func (a AuditAnchor) String() string { return fmt.Sprintf("%d:%x", a.Seq, a.Hash) }

// ParseAuditAnchor parses "seq:hexhash".
func ParseAuditAnchor(s string) (AuditAnchor, error) {
	seqText, hashText, ok := strings.Cut(strings.TrimSpace(s), ":")
	seq, err := strconv.ParseInt(seqText, 10, 64)
	if !ok || err != nil || seq < 1 {
		return AuditAnchor{}, fieldErr("anchor", "want SEQ:SHA256HEX with SEQ ≥ 1")
	}
	h, err := hex.DecodeString(hashText)
	if err != nil || len(h) != sha256.Size {
		return AuditAnchor{}, fieldErr("anchor", "the hash must be 64 hex digits")
	}
	return AuditAnchor{Seq: seq, Hash: h}, nil
}

// AuditProblem is one entry that fails verification.
type AuditProblem struct {
	Seq    int64  `json:"seq"`
	Reason string `json:"reason"`
}

// AuditReport is the outcome of VerifyAudit.
type AuditReport struct {
	// Entries is the number of entries read.
	Entries int64 `json:"entries"`
	// Head is the newest entry (zero when the log is empty). Record it
	// somewhere else and pass it back as an anchor later.
	Head AuditAnchor `json:"head"`
	// FirstBad is the seq of the first bad entry (0: the chain is intact),
	// Reason says what is wrong with it.
	FirstBad int64  `json:"first_bad,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Problems lists bad entries in seq order (at most 100; Count has
	// them all).
	Problems []AuditProblem `json:"problems,omitempty"`
	Count    int            `json:"problem_count"`
}

// Intact reports whether no problem was found.
func (r AuditReport) Intact() bool { return r.Count == 0 }

func (r *AuditReport) add(seq int64, format string, args ...any) {
	reason := fmt.Sprintf(format, args...)
	if r.Count == 0 {
		r.FirstBad, r.Reason = seq, reason
	}
	r.Count++
	if len(r.Problems) < maxAuditProblems {
		r.Problems = append(r.Problems, AuditProblem{Seq: seq, Reason: reason})
	}
}

// AuditFilter selects entries for AuditEntries. Zero fields match all.
type AuditFilter struct {
	Actor      string
	Target     string
	Action     string
	CustomerID uuid.UUID
	// AfterSeq returns entries with a larger seq (paging).
	AfterSeq int64
	// Limit bounds the result. Default 1000, at most 100000.
	Limit int
}

const auditLogCols = `seq, at, actor, actor_role, action, partner_id, customer_id, target, details::text, prev_hash, hash`

func scanAudit(row pgx.Row) (AuditRecord, error) {
	var r AuditRecord
	var details string
	err := row.Scan(&r.Seq, &r.At, &r.Actor, &r.ActorRole, &r.Action, &r.PartnerID, &r.CustomerID, &r.Target, &details, &r.PrevHash, &r.Hash)
	r.Details = json.RawMessage(details)
	return r, err
}

// AppendAudit appends e to the audit log inside this transaction, so that
// an admin change and its entry commit (or roll back) together. Appends
// are serialised by a lock held until the transaction ends: keep such
// transactions short.
func (t *Tx) AppendAudit(ctx context.Context, e AuditEntry) (AuditRecord, error) {
	actor := e.Actor
	if actor == "" {
		actor = t.scope.Actor
	}
	if actor == "" {
		actor = "unknown"
	}
	if len(actor) > 200 {
		return AuditRecord{}, fieldErr("actor", "at most 200 characters")
	}
	if len(e.ActorRole) > 64 {
		return AuditRecord{}, fieldErr("actor_role", "at most 64 characters")
	}
	if !auditActionRE.MatchString(e.Action) {
		return AuditRecord{}, fieldErr("action", "lower-case letters, digits and . _ - (at most 64), starting with a letter")
	}
	if len(e.Target) > 400 {
		return AuditRecord{}, fieldErr("target", "at most 400 characters")
	}
	details := []byte("{}")
	if e.Details != nil {
		b, err := json.Marshal(e.Details)
		if err != nil {
			return AuditRecord{}, fieldErr("details", "not JSON: "+err.Error())
		}
		if len(b) == 0 || b[0] != '{' {
			return AuditRecord{}, fieldErr("details", "must be a JSON object")
		}
		if len(b) > 16384 {
			return AuditRecord{}, fieldErr("details", "at most 16 KiB of JSON")
		}
		details = b
	}
	partner, customer := optID(e.PartnerID), optID(e.CustomerID)
	if partner != uuid.Nil && customer != uuid.Nil {
		return AuditRecord{}, fieldErr("customer_id", "give a partner or a customer, not both")
	}
	if partner == uuid.Nil && customer == uuid.Nil {
		switch t.scope.Kind {
		case ScopeCustomer:
			customer = t.scope.CustomerID
		case ScopePartner:
			partner = t.scope.PartnerID
		}
	}
	r, err := scanAudit(t.tx.QueryRow(ctx, `INSERT INTO audit_log (seq, at, actor, actor_role, action, partner_id, customer_id, target, details, prev_hash, hash)
		VALUES (0, now(), $1, $2, $3, $4, $5, $6, $7::jsonb, '\x', '\x') RETURNING `+auditLogCols,
		actor, e.ActorRole, e.Action, nullID(partner), nullID(customer), e.Target, string(details)))
	return r, mapErr("append audit entry", err)
}

// AppendAudit appends e in a transaction of its own under scope.
func (s *Store) AppendAudit(ctx context.Context, scope Scope, e AuditEntry) (AuditRecord, error) {
	var r AuditRecord
	err := s.InTx(ctx, scope, func(tx *Tx) error {
		var err error
		r, err = tx.AppendAudit(ctx, e)
		return err
	})
	return r, err
}

// AuditEntries returns the entries visible in the scope that match f, in
// seq order.
func (t *Tx) AuditEntries(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	limit := ListOptions{Limit: f.Limit}.limit()
	rows, err := t.tx.Query(ctx, `SELECT `+auditLogCols+` FROM audit_log
		WHERE ($1 = '' OR actor = $1) AND ($2 = '' OR target = $2) AND ($3 = '' OR action = $3)
		  AND ($4::uuid IS NULL OR customer_id = $4) AND seq > $5
		ORDER BY seq LIMIT $6`, f.Actor, f.Target, f.Action, nullID(f.CustomerID), f.AfterSeq, limit)
	if err != nil {
		return nil, mapErr("list audit entries", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditRecord, error) { return scanAudit(row) })
	return out, mapErr("list audit entries", err)
}

// VerifyAudit reads the whole audit log under the platform scope (one
// statement, so one consistent snapshot) and recomputes the chain: every
// seq from 1 on must be present, every prev_hash must be its predecessor's
// hash, and every hash must be the SHA-256 of prev_hash and the entry's
// canonical encoding. Each anchor must still be in the chain with its hash.
//
// It detects an edited entry (its hash no longer matches), a deleted entry
// (a gap in seq, and the next entry's prev_hash points nowhere), and with
// an anchor the deletion of the newest entries or a rewrite of the whole
// chain. It does not stop at the first problem. The error is for failures
// to read, not for a broken chain: look at the report.
func (s *Store) VerifyAudit(ctx context.Context, anchors ...AuditAnchor) (AuditReport, error) {
	var rep AuditReport
	err := s.InTx(ctx, PlatformScope("audit-verify"), func(tx *Tx) error {
		rep = AuditReport{}
		rows, err := tx.tx.Query(ctx, `SELECT `+auditLogCols+` FROM audit_log ORDER BY seq`)
		if err != nil {
			return mapErr("read audit log", err)
		}
		defer rows.Close()
		var (
			want   int64 = 1
			prev         = make([]byte, sha256.Size)
			hashes       = map[int64][]byte{}
		)
		for _, a := range anchors {
			hashes[a.Seq] = nil
		}
		for rows.Next() {
			r, err := scanAudit(rows)
			if err != nil {
				return mapErr("read audit log", err)
			}
			rep.Entries++
			gap := r.Seq != want
			if gap {
				if r.Seq == want+1 {
					rep.add(want, "entry %d is missing (deleted)", want)
				} else {
					rep.add(want, "entries %d to %d are missing (deleted)", want, r.Seq-1)
				}
			}
			if !bytes.Equal(r.PrevHash, prev) && !gap {
				rep.add(r.Seq, "prev_hash does not link to entry %d: that entry was rewritten with a recomputed hash, or this link was edited", r.Seq-1)
			}
			if h := AuditHash(r); !bytes.Equal(h, r.Hash) {
				rep.add(r.Seq, "content does not match its hash: the entry was edited")
			}
			if _, ok := hashes[r.Seq]; ok {
				hashes[r.Seq] = r.Hash
			}
			prev, want = r.Hash, r.Seq+1
			rep.Head = AuditAnchor{Seq: r.Seq, Hash: r.Hash}
		}
		if err := rows.Err(); err != nil {
			return mapErr("read audit log", err)
		}
		for _, a := range anchors {
			got := hashes[a.Seq]
			switch {
			case got == nil && a.Seq > rep.Head.Seq:
				rep.add(a.Seq, "anchored entry %d is gone: the log ends at %d (newest entries deleted)", a.Seq, rep.Head.Seq)
			case got == nil:
				rep.add(a.Seq, "anchored entry %d is missing", a.Seq)
			case !bytes.Equal(got, a.Hash):
				rep.add(a.Seq, "entry %d differs from its anchor: the chain was rewritten", a.Seq)
			}
		}
		return nil
	})
	if err != nil {
		return AuditReport{}, fmt.Errorf("verify audit log: %w", err)
	}
	sortProblems(rep.Problems)
	if len(rep.Problems) > 0 {
		rep.FirstBad, rep.Reason = rep.Problems[0].Seq, rep.Problems[0].Reason
	}
	return rep, nil
}

func sortProblems(p []AuditProblem) {
	for i := 1; i < len(p); i++ { // insertion sort: few items, mostly sorted, stable
		for j := i; j > 0 && p[j].Seq < p[j-1].Seq; j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}

// AuditHash recomputes an entry's hash from its fields:
// SHA-256(prev_hash || canonical encoding). r.Details must be the text the
// database renders for the jsonb value (as AuditEntries and VerifyAudit
// return it).
func AuditHash(r AuditRecord) []byte {
	h := sha256.New()
	h.Write(r.PrevHash)
	h.Write(auditEntryBytes(r))
	return h.Sum(nil)
}

// auditEntryBytes is legiond.audit_entry_bytes in Go.
func auditEntryBytes(r AuditRecord) []byte {
	b := make([]byte, 0, 256+len(r.Details))
	b = append(b, auditVersionTag...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Seq))
	b = binary.BigEndian.AppendUint64(b, uint64(r.At.UnixMicro()))
	lp := func(v []byte, null bool) {
		if null {
			b = binary.BigEndian.AppendUint32(b, 0xFFFFFFFF) // int4 -1
			return
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	id := func(u *uuid.UUID) {
		if u == nil {
			lp(nil, true)
			return
		}
		lp(u[:], false)
	}
	lp([]byte(r.Actor), false)
	lp([]byte(r.ActorRole), false)
	lp([]byte(r.Action), false)
	id(r.PartnerID)
	id(r.CustomerID)
	lp([]byte(r.Target), false)
	lp(r.Details, false)
	return b
}
