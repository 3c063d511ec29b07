package main

import (
	"context"
	"encoding/json"
	"flag"
	"time"

	"github.com/legionelladossier/legiond/api/auth"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// staffCommands are the `legiond admin` commands for staff access and
// GDPR requests. They run under the platform scope (the default of
// `legiond admin`); row-level security refuses grants under others.
func staffCommands() map[string]adminCmd {
	return map[string]adminCmd{
		"user create": {summary: "create a user (staff, partner or customer; personal data: see gdpr)",
			usage: "--email E [--name N] [--phone P] [--customer ID | --partner ID]",
			flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
				email := fs.String("email", "", "e-mail address (required)")
				name := fs.String("name", "", "display name")
				phone := fs.String("phone", "", "contact phone number")
				cust := idFlag(fs, "customer", "the user's customer")
				partner := idFlag(fs, "partner", "the user's partner")
				return func(ctx context.Context, tx *postgres.Tx) (any, error) {
					return tx.Users().Create(ctx, postgres.NewUser{Email: *email, DisplayName: *name, Phone: *phone,
						CustomerID: cust.ptr(), PartnerID: partner.ptr()})
				}
			}},
		"grant break-glass": {summary: "give a support user read access to one customer for a while (audited)",
			usage: "--customer ID --user SUBJECT --reason TEXT [--for 2h]",
			flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
				cust := idFlag(fs, "customer", "the customer (required)")
				user := fs.String("user", "", "the support user's token subject (required)")
				reason := fs.String("reason", "", "why: ticket number and what is investigated (required)")
				d := fs.Duration("for", 2*time.Hour, "how long, at most 24h")
				return func(ctx context.Context, tx *postgres.Tx) (any, error) {
					return tx.BreakGlass().Create(ctx, postgres.NewBreakGlassGrant{CustomerID: cust.id, Subject: *user, Reason: *reason,
						Now: time.Now(), For: *d, ActorRole: "cli"})
				}
			}},
		"grant revoke": {summary: "end a break-glass grant now", usage: "--id GRANT",
			flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
				id := idFlag(fs, "id", "the grant (required)")
				return func(ctx context.Context, tx *postgres.Tx) (any, error) {
					return tx.BreakGlass().Revoke(ctx, id.id, time.Now(), "cli")
				}
			}},
		"grant list": {summary: "list break-glass grants, newest first", usage: "[--customer ID] [--user SUBJECT]",
			flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
				cust := idFlag(fs, "customer", "only this customer's grants")
				user := fs.String("user", "", "only this support user's grants")
				limit := fs.Int("limit", 1000, "at most this many rows")
				return func(ctx context.Context, tx *postgres.Tx) (any, error) {
					return tx.BreakGlass().List(ctx, postgres.ListOptions{CustomerID: cust.id, Limit: *limit}, *user)
				}
			}},
		"gdpr export": {summary: "print everything held about a person as JSON (GDPR art. 15; audited)", usage: "--user ID",
			flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
				user := idFlag(fs, "user", "the user's id (required)")
				return func(ctx context.Context, tx *postgres.Tx) (any, error) {
					b, err := tx.ExportPerson(ctx, user.id)
					if err != nil {
						return nil, err
					}
					return json.RawMessage(b), nil
				}
			}},
		"gdpr erase": {summary: "pseudonymise a person everywhere, keeping the logbook (GDPR art. 17; audited)", usage: "--user ID",
			flags: func(fs *flag.FlagSet) func(context.Context, *postgres.Tx) (any, error) {
				user := idFlag(fs, "user", "the user's id (required)")
				return func(ctx context.Context, tx *postgres.Tx) (any, error) {
					return tx.ErasePerson(ctx, user.id, "")
				}
			}},
	}
}

// tokenAudit records an issued token in the audit trail: who it is for
// (target), its role, tenant, scopes, id and expiry; never the token.
// actor is who issued it (the client itself at the token endpoint).
func tokenAudit(reg *postgres.Store, actor string) func(context.Context, auth.IssuedToken) error {
	return func(ctx context.Context, t auth.IssuedToken) error {
		c := t.Claims
		who := "user:" + c.Subject
		if c.Role == auth.RoleIntegration {
			who = "client:" + c.ClientID
		}
		by := actor
		if t.Grant == "client_credentials" {
			by = who
		}
		e := postgres.AuditEntry{Actor: by, ActorRole: "issuer", Action: postgres.AuditTokenIssued, Target: who,
			Details: map[string]any{"token_id": t.TokenID, "role": c.Role, "scopes": c.Scopes, "customer_ids": c.CustomerIDs,
				"site_ids": c.SiteIDs, "expires_at": t.ExpiresAt.UTC(), "grant": t.Grant}}
		switch {
		case len(c.CustomerIDs) == 1:
			e.CustomerID = &c.CustomerIDs[0]
		case c.PartnerID != [16]byte{}:
			e.PartnerID = &c.PartnerID
		}
		_, err := reg.AppendAudit(ctx, postgres.PlatformScope(by), e)
		return err
	}
}
