package services

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	"github.com/legionelladossier/legiond/api/auth"
	"github.com/legionelladossier/legiond/api/hub"
	"github.com/legionelladossier/legiond/storage/postgres"
)

// invalid is InvalidArgument naming the field, in the registry's words
// ("invalid site_id: not a UUID").
func invalid(field, format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("invalid %s: %s", field, fmt.Sprintf(format, args...)))
}

// notFound is NotFound for a thing the caller named. what must only echo
// the caller's own input.
func notFound(what string) error {
	return connect.NewError(connect.CodeNotFound, fmt.Errorf("%s not found", what))
}

// denied is PermissionDenied with the reason (never data).
func denied(format string, args ...any) error {
	return connect.NewError(connect.CodePermissionDenied, fmt.Errorf(format, args...))
}

var errUnavailablePort = connect.NewError(connect.CodeUnavailable, errors.New("live twin state is not available on this node yet; retry"))

// toConnect maps an error to a Connect error: typed errors of the registry,
// the hub, auth and the ports get their codes; anything else is logged and
// answered Internal without detail. op names the procedure for the log.
func (s *Services) toConnect(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	var fe *postgres.FieldError
	hasField := errors.As(err, &fe)
	switch {
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, errors.New("canceled"))
	case errors.Is(err, context.DeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, errors.New("deadline exceeded"))
	case errors.Is(err, auth.ErrNotVisible):
		return notFound("resource")
	case errors.Is(err, postgres.ErrNotFound):
		if hasField {
			return connect.NewError(connect.CodeNotFound, errors.New(fe.Error()))
		}
		return notFound("resource")
	case errors.Is(err, postgres.ErrAlreadyExists):
		if hasField {
			return connect.NewError(connect.CodeAlreadyExists, fmt.Errorf("%s already exists", fe.Field))
		}
		return connect.NewError(connect.CodeAlreadyExists, errors.New("already exists"))
	case errors.Is(err, postgres.ErrResidency), errors.Is(err, postgres.ErrInvalidArgument):
		if hasField {
			return connect.NewError(connect.CodeInvalidArgument, errors.New(fe.Error()))
		}
		return connect.NewError(connect.CodeInvalidArgument, errors.New("invalid argument"))
	case errors.Is(err, postgres.ErrPermissionDenied):
		return denied("not allowed in the caller's scope")
	case errors.Is(err, postgres.ErrNoKeyRing):
		return connect.NewError(connect.CodeFailedPrecondition, errors.New("this server has no master key configured; device keys cannot be stored"))
	case errors.Is(err, hub.ErrBadToken):
		return invalid("resume_token", "%v", err)
	case errors.Is(err, hub.ErrSlow):
		return connect.NewError(connect.CodeResourceExhausted, hub.ErrSlow)
	case errors.Is(err, hub.ErrTokenTooOld):
		return connect.NewError(connect.CodeOutOfRange, hub.ErrTokenTooOld)
	case errors.Is(err, hub.ErrClosed):
		return connect.NewError(connect.CodeUnavailable, errors.New("stream hub stopping; reconnect with the last token"))
	case errors.Is(err, ErrUnavailable):
		return connect.NewError(connect.CodeUnavailable, ErrUnavailable)
	case errors.Is(err, ErrAlarmNotFound):
		return notFound("alarm")
	case errors.Is(err, ErrAlarmState):
		return connect.NewError(connect.CodeFailedPrecondition, errors.New(err.Error()))
	}
	s.log.ErrorContext(ctx, "api call failed", "procedure", op, "err", err)
	return connect.NewError(connect.CodeInternal, errors.New("internal error"))
}
