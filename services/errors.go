package services

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lastmile-dm/lastmile/dm/access"
	"github.com/lastmile-dm/lastmile/dm/command"
	"github.com/lastmile-dm/lastmile/dm/config"
	"github.com/lastmile-dm/lastmile/dm/event"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/shadow"
	"github.com/lastmile-dm/lastmile/dm/token"
	"github.com/lastmile-dm/lastmile/tunnel"
	"github.com/lastmile-dm/lastmile/tunnel/relay"
	"github.com/lastmile-dm/lastmile/tunnel/snmprelay/proxy"
)

// toStatus is the one place domain errors become gRPC statuses. Client
// errors carry the domain message (it names the field); anything else is
// logged and answered as Internal without details.
func toStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if oe, ok := errors.AsType[*event.OverflowError](err); ok {
		// The watcher learns how much it missed, in words and as data.
		st, derr := status.New(codes.ResourceExhausted, clean(err)).WithDetails(&errdetails.ErrorInfo{
			Reason: "WATCHER_OVERFLOW", Domain: "lastmile",
			Metadata: map[string]string{"dropped_events": strconv.FormatUint(oe.Dropped, 10), "buffer": strconv.Itoa(oe.Buffer)},
		})
		if derr != nil {
			return status.Error(codes.ResourceExhausted, clean(err))
		}
		return st.Err()
	}
	code := codes.Internal
	var reason *tunnel.ReasonError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, access.ErrNotFound), errors.Is(err, token.ErrNotFound),
		errors.Is(err, shadow.ErrNotFound), errors.Is(err, config.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, registry.ErrExists), errors.Is(err, access.ErrExists), errors.Is(err, token.ErrExists),
		errors.Is(err, config.ErrExists):
		code = codes.AlreadyExists
	case errors.Is(err, registry.ErrConflict), errors.Is(err, shadow.ErrConflict):
		code = codes.Aborted
	case errors.Is(err, shadow.ErrTooLarge):
		code = codes.InvalidArgument
	case errors.Is(err, shadow.ErrTooManyRequests):
		code = codes.ResourceExhausted
	case errors.Is(err, registry.ErrInvalid), errors.Is(err, access.ErrInvalid), errors.Is(err, token.ErrInvalid),
		errors.Is(err, shadow.ErrInvalid), errors.Is(err, config.ErrInvalid), errors.Is(err, config.ErrSchema):
		code = codes.InvalidArgument
	case errors.Is(err, access.ErrReadOnly), errors.Is(err, access.ErrInUse):
		code = codes.FailedPrecondition
	case errors.Is(err, token.ErrUnauthenticated):
		code = codes.Unauthenticated
	case errors.Is(err, relay.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, relay.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, relay.ErrRejected):
		code = codes.FailedPrecondition
	case errors.Is(err, relay.ErrNoAnswer):
		code = codes.Unavailable
	case errors.Is(err, proxy.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, proxy.ErrDeviceOffline), errors.Is(err, proxy.ErrTargetUnreachable), errors.Is(err, proxy.ErrClosed):
		code = codes.Unavailable
	case errors.Is(err, proxy.ErrNoAnswer):
		code = codes.DeadlineExceeded
	case errors.As(err, &reason):
		code = tunnelReasonCode(reason.Reason)
	case errors.Is(err, command.ErrInvalid), errors.Is(err, event.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, command.ErrOffline), errors.Is(err, event.ErrLabels), errors.Is(err, event.ErrClosed):
		code = codes.Unavailable
	case errors.Is(err, command.ErrTimeout):
		code = codes.DeadlineExceeded
	case errors.Is(err, command.ErrTooManyPending), errors.Is(err, event.ErrTooManyWatchers):
		code = codes.ResourceExhausted
	case errors.Is(err, command.ErrBadReply):
		code = codes.Unknown
	}
	if code == codes.Internal {
		log.ErrorContext(ctx, "internal error", "error", err)
		return status.Error(codes.Internal, "internal error (logged on the server)")
	}
	return status.Error(code, clean(err))
}

// clean drops the "registry: " style package prefixes from a domain message.
func clean(err error) string {
	msg := err.Error()
	for _, p := range []string{"registry: ", "access: ", "token: ", "relay: ", "tunnel: ", "shadow: ", "command: ", "event: ", "topic: ", "config: ", "snmprelay: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	return msg
}

// tunnelReasonCode maps why a tunnel stream or session ended.
func tunnelReasonCode(r tunnel.Reason) codes.Code {
	switch r {
	case tunnel.ReasonDialFailed, tunnel.ReasonNotAllowed, tunnel.ReasonBadToken:
		return codes.FailedPrecondition
	case tunnel.ReasonTooMany:
		return codes.ResourceExhausted
	case tunnel.ReasonIdle, tunnel.ReasonLifetime, tunnel.ReasonClosedByUser, tunnel.ReasonShutdown, tunnel.ReasonNormal:
		return codes.Aborted
	}
	return codes.Unavailable
}

func invalid(format string) error { return status.Error(codes.InvalidArgument, format) }

func invalidf(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}
