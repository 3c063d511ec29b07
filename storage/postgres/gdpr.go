package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// GDPR requests about a person who signs in (users: staff, partner and
// customer users, technicians).
//
// What identifies a person in the registry is the users row: e-mail,
// display name and phone number (add new personal columns to eraseUser). Everything else refers to people by id:
// role grants by user_id; audit columns, audit entries and the logbook
// (alarm acknowledgements, corrective actions) by the actor string
// "user:<id>". Erasure therefore pseudonymises the users row in place and
// keeps the id, so that the logbook keeps saying that user <id>
// acknowledged an alarm at a given time, which is its legal content,
// while nothing links that id to a person any more.

// PersonSubject is the actor string the API and the logbook use for a user.
func PersonSubject(userID uuid.UUID) string { return "user:" + userID.String() }

// Pseudonym is the replacement for an erased person's name: "erased-" and
// 16 hex digits of SHA-256 of the user id. It is derived from the random
// id, not from the e-mail, so it cannot be confirmed by guessing e-mails,
// and it is stable, so erasing twice changes nothing.
func Pseudonym(userID uuid.UUID) string {
	h := sha256.Sum256(userID[:])
	return "erased-" + hex.EncodeToString(h[:8])
}

// erasedEmailDomain is a reserved top-level domain (RFC 2606): mail to it
// can never be delivered.
const erasedEmailDomain = "erased.invalid"

// PersonExport is the data a person is given on an access request
// (GDPR art. 15): their users row, their role grants and the audit
// entries where they acted or that are about them.
type PersonExport struct {
	ExportedAt   time.Time     `json:"exported_at"`
	Subject      string        `json:"subject"`
	User         User          `json:"user"`
	RoleGrants   []RoleGrant   `json:"role_grants"`
	AuditAsActor []AuditRecord `json:"audit_entries_as_actor"`
	AuditAbout   []AuditRecord `json:"audit_entries_about"`
}

// ErasureReport tells what ErasePerson changed.
type ErasureReport struct {
	UserID    uuid.UUID `json:"user_id"`
	Pseudonym string    `json:"pseudonym"`
	// AlreadyErased: the row was already pseudonymised; only grants (if
	// any reappeared) were removed and a new audit entry written.
	AlreadyErased     bool  `json:"already_erased"`
	RoleGrantsRevoked int64 `json:"role_grants_revoked"`
	AuditEntryAsActor int64 `json:"audit_entries_kept_as_actor"`
	AuditSeq          int64 `json:"audit_seq"`
}

// ExportPerson returns everything the registry holds about user userID as
// indented JSON (a PersonExport), and records the export in the audit log
// in the same transaction. The user must be visible in scope (another
// tenant's user is ErrNotFound).
func (s *Store) ExportPerson(ctx context.Context, scope Scope, userID uuid.UUID) ([]byte, error) {
	var out []byte
	err := s.InTx(ctx, scope, func(tx *Tx) error {
		var err error
		out, err = tx.ExportPerson(ctx, userID)
		return err
	})
	return out, err
}

// ExportPerson is Store.ExportPerson inside this transaction.
func (t *Tx) ExportPerson(ctx context.Context, userID uuid.UUID) ([]byte, error) {
	var out []byte
	err := func(tx *Tx) error {
		exp, err := tx.exportPerson(ctx, userID)
		if err != nil {
			return err
		}
		if _, err := tx.AppendAudit(ctx, AuditEntry{
			Action: AuditPersonExported, Target: exp.Subject,
			PartnerID: exp.User.PartnerID, CustomerID: exp.User.CustomerID,
			Details: map[string]any{"role_grants": len(exp.RoleGrants), "audit_entries": len(exp.AuditAsActor) + len(exp.AuditAbout)},
		}); err != nil {
			return err
		}
		out, err = json.MarshalIndent(exp, "", "  ")
		return err
	}(t)
	if err != nil {
		return nil, fmt.Errorf("export person: %w", err)
	}
	return out, nil
}

func (t *Tx) exportPerson(ctx context.Context, userID uuid.UUID) (PersonExport, error) {
	exp := PersonExport{ExportedAt: time.Now().UTC(), Subject: PersonSubject(userID)}
	var err error
	exp.User, err = scanUser(t.tx.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1`, userID))
	if err != nil {
		return exp, mapErr("get user", err)
	}
	rows, err := t.tx.Query(ctx, `SELECT `+grantCols+` FROM role_grants WHERE user_id = $1 ORDER BY created_at, id`, userID)
	if err != nil {
		return exp, mapErr("list role grants", err)
	}
	exp.RoleGrants, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (RoleGrant, error) { return scanGrant(row) })
	if err != nil {
		return exp, mapErr("list role grants", err)
	}
	if exp.AuditAsActor, err = t.auditOf(ctx, `actor = $1 OR actor = $2`, exp.Subject, userID.String()); err != nil {
		return exp, err
	}
	if exp.AuditAbout, err = t.auditOf(ctx, `(target = $1 OR target = $2) AND NOT (actor = $1 OR actor = $2)`, exp.Subject, userID.String()); err != nil {
		return exp, err
	}
	if exp.RoleGrants == nil {
		exp.RoleGrants = []RoleGrant{}
	}
	return exp, nil
}

func (t *Tx) auditOf(ctx context.Context, where string, args ...any) ([]AuditRecord, error) {
	rows, err := t.tx.Query(ctx, `SELECT `+auditLogCols+` FROM audit_log WHERE `+where+` ORDER BY seq`, args...)
	if err != nil {
		return nil, mapErr("list audit entries", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditRecord, error) { return scanAudit(row) })
	if err != nil {
		return nil, mapErr("list audit entries", err)
	}
	if out == nil {
		out = []AuditRecord{}
	}
	return out, nil
}

// ErasePerson carries out an erasure request (GDPR art. 17) for user
// userID in one transaction: the e-mail becomes "<pseudonym>@erased.invalid",
// the display name the pseudonym, the account is disabled and its role
// grants are revoked. The id stays, so every reference to "user:<id>"
// (logbook, audit trail, created_by/updated_by) stays valid and the
// logbook's legal content is untouched; audit entries are never changed.
// The erasure itself is appended to the audit log, naming by (default:
// the scope's actor) as the actor and only the id and pseudonym as
// details. The user must be visible in scope.
func (s *Store) ErasePerson(ctx context.Context, scope Scope, userID uuid.UUID, by string) (ErasureReport, error) {
	var rep ErasureReport
	err := s.InTx(ctx, scope, func(tx *Tx) error {
		var err error
		rep, err = tx.ErasePerson(ctx, userID, by)
		return err
	})
	return rep, err
}

// ErasePerson is Store.ErasePerson inside this transaction.
func (t *Tx) ErasePerson(ctx context.Context, userID uuid.UUID, by string) (ErasureReport, error) {
	rep := ErasureReport{UserID: userID, Pseudonym: Pseudonym(userID)}
	err := func(tx *Tx) error {
		u, err := scanUser(tx.tx.QueryRow(ctx, `SELECT `+userCols+` FROM users WHERE id = $1 FOR UPDATE`, userID))
		if err != nil {
			return mapErr("get user", err)
		}
		email := rep.Pseudonym + "@" + erasedEmailDomain
		rep.AlreadyErased = u.Email == email && u.DisplayName == rep.Pseudonym && u.Phone == "" && u.Disabled
		if err := eraseUser(ctx, tx, userID, rep.Pseudonym, email); err != nil {
			return err
		}
		tag, err := tx.tx.Exec(ctx, `DELETE FROM role_grants WHERE user_id = $1`, userID)
		if err != nil {
			return mapErr("revoke role grants", err)
		}
		rep.RoleGrantsRevoked = tag.RowsAffected()
		subject := PersonSubject(userID)
		if err := tx.tx.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE actor = $1 OR actor = $2`, subject, userID.String()).Scan(&rep.AuditEntryAsActor); err != nil {
			return mapErr("count audit entries", err)
		}
		rec, err := tx.AppendAudit(ctx, AuditEntry{
			Actor: by, Action: AuditPersonErased, Target: subject,
			PartnerID: u.PartnerID, CustomerID: u.CustomerID,
			Details: map[string]any{"pseudonym": rep.Pseudonym, "role_grants_revoked": rep.RoleGrantsRevoked, "already_erased": rep.AlreadyErased},
		})
		rep.AuditSeq = rec.Seq
		return err
	}(t)
	if err != nil {
		return ErasureReport{}, fmt.Errorf("erase person: %w", err)
	}
	return rep, nil
}

// eraseUser pseudonymises every column of users that identifies a person.
func eraseUser(ctx context.Context, tx *Tx, userID uuid.UUID, pseudonym, email string) error {
	tag, err := tx.tx.Exec(ctx, `UPDATE users SET email = $2, display_name = $3, phone = '', disabled = true WHERE id = $1`,
		userID, email, pseudonym)
	if err != nil {
		return mapErr("pseudonymise user", err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("pseudonymise user: %w", ErrNotFound)
	}
	return nil
}
