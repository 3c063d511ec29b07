package services

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/legionelladossier/legiond/api/auth"
	apiv1 "github.com/legionelladossier/legiond/proto/legiond/api/v1"
	twinv1 "github.com/legionelladossier/legiond/proto/legiond/twin/v1"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// BreakGlassHeader names the break-glass grant a support user acts under
// for one request. Without it a support user reads device health only.
const BreakGlassHeader = "Legiond-Break-Glass"

// requestInfo is what the staff checks need from the HTTP request: the
// procedure and the break-glass header.
type requestInfo struct {
	procedure  string
	breakGlass string
	present    bool
}

type requestInfoKey struct{}

// withRequestInfo puts the requestInfo into the request context.
func withRequestInfo(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vals := r.Header.Values(BreakGlassHeader)
		ri := requestInfo{procedure: r.URL.Path, present: len(vals) > 0}
		if len(vals) == 1 {
			ri.breakGlass = vals[0]
		} else if len(vals) > 1 {
			ri.breakGlass = "\x00repeated"
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, ri)))
	})
}

func requestInfoFrom(ctx context.Context) requestInfo {
	ri, _ := ctx.Value(requestInfoKey{}).(requestInfo)
	return ri
}

// principal returns the caller. A support user naming a break-glass grant
// (BreakGlassHeader) gets the grant's customer and read scopes when the
// grant is theirs, not revoked and not expired by the server clock
// (Deps.Now), looked up in the registry on every request; anything else
// is PermissionDenied. Other callers may not name a grant.
func (s *Services) principal(ctx context.Context) (*auth.Principal, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	ri := requestInfoFrom(ctx)
	if !ri.present {
		return p, nil
	}
	if p.Role != auth.RoleSupport {
		return nil, denied("break-glass grants are for support users")
	}
	id, err := uuid.Parse(ri.breakGlass)
	if err != nil || len(ri.breakGlass) != 36 || id == uuid.Nil {
		return nil, invalid(BreakGlassHeader, "not a grant id (UUID)")
	}
	var g postgres.BreakGlassGrant
	err = s.d.Registry.InTx(ctx, postgres.PlatformScope(p.Actor()), func(tx *postgres.Tx) error {
		var err error
		g, err = tx.BreakGlass().Active(ctx, id, p.Subject, s.d.Now())
		return err
	})
	if errors.Is(err, postgres.ErrNotFound) {
		return nil, denied("no active break-glass grant %s for this user (expired, revoked or not theirs)", id)
	}
	if err != nil {
		return nil, s.toConnect(ctx, ri.procedure, err)
	}
	return p.WithBreakGlass(auth.BreakGlass{GrantID: g.ID, CustomerID: g.CustomerID, Reason: g.Reason, ExpiresAt: g.ExpiresAt}), nil
}

// authorize returns the caller when it holds one of scopes, and records
// the access of staff (support users, with or without a break-glass
// grant) in the audit log before anything is read.
func (s *Services) authorize(ctx context.Context, scopes ...string) (*auth.Principal, error) {
	p, err := s.principal(ctx)
	if err != nil {
		return nil, err
	}
	if err := need(p, scopes...); err != nil {
		return nil, err
	}
	if err := s.auditStaff(ctx, p); err != nil {
		return nil, err
	}
	return p, nil
}

// auditStaff appends AuditDataAccess for a staff principal: who, the
// procedure, and under a break-glass grant the customer, the grant id and
// its reason. Nothing is served when the entry cannot be written.
func (s *Services) auditStaff(ctx context.Context, p *auth.Principal) error {
	if !p.Role.Staff() {
		return nil
	}
	ri := requestInfoFrom(ctx)
	access := "device-health"
	if p.Role == auth.RolePlatformAdmin {
		access = "platform-admin"
	}
	e := postgres.AuditEntry{
		Actor: p.Actor(), ActorRole: string(p.Role), Action: postgres.AuditDataAccess, Target: "procedure:" + ri.procedure,
		Details: map[string]any{"procedure": ri.procedure, "access": access},
	}
	if g := p.BreakGlass; g != nil {
		customer := g.CustomerID
		e.CustomerID = &customer
		e.Details = map[string]any{"procedure": ri.procedure, "access": "break-glass", "grant_id": g.GrantID, "reason": g.Reason}
	}
	if _, err := s.d.Registry.AppendAudit(ctx, postgres.PlatformScope(p.Actor()), e); err != nil {
		return s.toConnect(ctx, ri.procedure, err)
	}
	return nil
}

// errGrantRevoked ends a stream whose break-glass grant no longer holds.
var errGrantRevoked = errors.New("the break-glass grant was revoked")

// grantDeadline bounds a stream opened under a break-glass grant: it ends
// at the grant's expiry, and within GrantRecheck of a revocation (the
// grant is looked up again periodically, as every unary call does).
func (s *Services) grantDeadline(ctx context.Context, p *auth.Principal) (context.Context, context.CancelFunc) {
	g := p.BreakGlass
	if g == nil {
		return ctx, func() {}
	}
	ctx, cancelDeadline := context.WithDeadline(ctx, time.Now().Add(g.ExpiresAt.Sub(s.d.Now())))
	ctx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(nil); cancelDeadline() }
	go func() {
		t := time.NewTicker(s.d.GrantRecheck)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			err := s.d.Registry.InTx(ctx, postgres.PlatformScope(p.Actor()), func(tx *postgres.Tx) error {
				_, err := tx.BreakGlass().Active(ctx, g.GrantID, p.Subject, s.d.Now())
				return err
			})
			if errors.Is(err, postgres.ErrNotFound) {
				cancelCause(errGrantRevoked)
				return
			}
		}
	}()
	return ctx, cancel
}

// healthAlarms are the alarm types about the device itself, which a
// caller with only ScopeHealthRead sees (without message, note or who).
var healthAlarms = map[twinv1.AlarmType]bool{
	twinv1.AlarmType_ALARM_TYPE_SENSOR_OFFLINE:  true,
	twinv1.AlarmType_ALARM_TYPE_BATTERY_LOW:     true,
	twinv1.AlarmType_ALARM_TYPE_SENSOR_DETACHED: true,
	twinv1.AlarmType_ALARM_TYPE_PROBE_FAULT:     true,
	twinv1.AlarmType_ALARM_TYPE_GATEWAY_OFFLINE: true,
	twinv1.AlarmType_ALARM_TYPE_SECURITY:        true,
}

// healthOnly reports a caller that may see device health but not the
// readings and logbook of twins.
func healthOnly(p *auth.Principal) bool { return !p.HasScope(auth.ScopeDevicesRead) }

// redactTwin keeps a twin's health and configuration (status: battery,
// online, link quality, firmware, interval; last seen; frame counter;
// placement) and drops readings, the logbook's last compliant flush and
// every alarm but the device-health ones, which lose message, note and
// who acknowledged them.
func redactTwin(t *apiv1.Twin) {
	t.LastPipeC, t.LastAmbientC, t.LastCompliantFlush = nil, nil, nil
	kept := t.ActiveAlarms[:0]
	for _, a := range t.ActiveAlarms {
		if healthAlarms[a.GetType()] {
			a.Message, a.Note, a.AcknowledgedBy = "", "", ""
			kept = append(kept, a)
		}
	}
	clear(t.ActiveAlarms[len(kept):])
	t.ActiveAlarms = kept
	if len(t.ActiveAlarms) == 0 {
		t.ActiveAlarms = nil
	}
}

// auditChange appends AuditAdminChange for a registry change made through
// the API, in the change's transaction: who (and in which role), what
// (target "kind:id"), the tenant, and the names of the fields set (never
// their values: keys are secret, names may be personal).
func auditChange(ctx context.Context, tx *postgres.Tx, p *auth.Principal, op, target string, partner, customer *uuid.UUID, fields ...string) error {
	e := postgres.AuditEntry{Actor: p.Actor(), ActorRole: string(p.Role), Action: postgres.AuditAdminChange, Target: target,
		Details: map[string]any{"op": "create", "procedure": op, "fields": fields}}
	if customer != nil {
		e.CustomerID = customer
	} else {
		e.PartnerID = partner
	}
	_, err := tx.AppendAudit(ctx, e)
	return err
}
