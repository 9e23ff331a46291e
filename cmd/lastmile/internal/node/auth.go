package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lastmile-dm/lastmile/broker"
	"github.com/lastmile-dm/lastmile/dm/access"
	"github.com/lastmile-dm/lastmile/dm/registry"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

// AnonymousPrefix starts the principal ID of anonymous clients; a device ID
// cannot contain ':' so it never collides with a device.
const AnonymousPrefix = "anon:"

// authenticator adapts the registry (devices) and access (applications,
// anonymous) to broker.Authenticator, and maps domain errors to the
// broker's CONNACK sentinels in exactly this one place.
type authenticator struct {
	registry *registry.Service
	access   *access.Service
	devices  registry.Store
	// anonymous is whether the configuration lets clients without
	// credentials in (under access.AnonymousRole).
	anonymous bool
}

var _ broker.Authenticator = (*authenticator)(nil)

// authTimeout bounds the store work of one CONNECT.
const authTimeout = 5 * time.Second

func (a *authenticator) Authenticate(ctx context.Context, r broker.ConnectRequest) (*broker.Principal, error) {
	ctx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()
	if _, ok := access.ApplicationName(r.Username); ok {
		return a.application(ctx, r)
	}
	if r.Username == "" && len(r.Password) == 0 && r.Cert == nil {
		return a.anonymousClient(ctx, r)
	}
	d, err := a.registry.Authenticate(ctx, registry.AuthRequest{ClientID: r.ClientID, Username: r.Username, Password: r.Password, Cert: r.Cert})
	if err != nil {
		return nil, mapRegistryErr(err)
	}
	id := d.ID
	return &broker.Principal{
		ID:           id,
		Kind:         broker.KindDevice,
		CanPublish:   func(t string) bool { return topic.DeviceMayPublish(id, t) },
		CanSubscribe: func(f string) bool { return topic.DeviceMaySubscribe(id, f) },
	}, nil
}

func (a *authenticator) application(ctx context.Context, r broker.ConnectRequest) (*broker.Principal, error) {
	app, role, err := a.access.AuthenticateApplication(ctx, r.ClientID, r.Username, r.Password)
	if err != nil {
		switch {
		case errors.Is(err, access.ErrBadCredentials):
			return nil, fmt.Errorf("%w: %w", err, broker.ErrBadCredentials)
		case errors.Is(err, access.ErrClientIDInvalid):
			return nil, fmt.Errorf("%w: %w", err, broker.ErrClientIDInvalid)
		case errors.Is(err, access.ErrDisabled):
			return nil, fmt.Errorf("%w: %w", err, broker.ErrNotAuthorized)
		default:
			return nil, fmt.Errorf("%w: %w", err, broker.ErrUnavailable)
		}
	}
	return &broker.Principal{
		ID:           access.ApplicationUsernamePrefix + app.Name,
		Kind:         broker.KindApplication,
		CanPublish:   role.MayPublish,
		CanSubscribe: role.MaySubscribe,
	}, nil
}

func (a *authenticator) anonymousClient(ctx context.Context, r broker.ConnectRequest) (*broker.Principal, error) {
	if !a.anonymous {
		return nil, fmt.Errorf("no credentials and anonymous access is off: %w", broker.ErrBadCredentials)
	}
	role, err := a.access.AnonymousRole()
	if err != nil {
		return nil, fmt.Errorf("anonymous role: %w: %w", err, broker.ErrNotAuthorized)
	}
	if role == nil {
		return nil, fmt.Errorf("no anonymous role: %w", broker.ErrNotAuthorized)
	}
	// An anonymous client must not take over a device's or application's
	// session by using its client ID.
	if strings.HasPrefix(r.ClientID, access.ApplicationUsernamePrefix) {
		return nil, fmt.Errorf("anonymous client ID %q names an application: %w", r.ClientID, broker.ErrClientIDInvalid)
	}
	if topic.ValidDeviceID(r.ClientID) {
		_, err := a.devices.GetDevice(ctx, r.ClientID)
		switch {
		case err == nil:
			return nil, fmt.Errorf("anonymous client ID %q is a device ID: %w", r.ClientID, broker.ErrClientIDInvalid)
		case !errors.Is(err, registry.ErrNotFound):
			return nil, fmt.Errorf("check anonymous client ID: %w: %w", err, broker.ErrUnavailable)
		}
	}
	return &broker.Principal{
		ID:           AnonymousPrefix + r.ClientID,
		Kind:         broker.KindAnonymous,
		CanPublish:   role.MayPublish,
		CanSubscribe: role.MaySubscribe,
	}, nil
}

// mapRegistryErr maps a registry authentication error to the broker's
// sentinel; anything unexpected (the store is down) is "unavailable".
func mapRegistryErr(err error) error {
	switch {
	case errors.Is(err, registry.ErrBadCredentials):
		return fmt.Errorf("%w: %w", err, broker.ErrBadCredentials)
	case errors.Is(err, registry.ErrClientIDMismatch):
		return fmt.Errorf("%w: %w", err, broker.ErrClientIDInvalid)
	case errors.Is(err, registry.ErrDisabled):
		return fmt.Errorf("%w: %w", err, broker.ErrNotAuthorized)
	case errors.Is(err, registry.ErrBanned):
		return fmt.Errorf("%w: %w", err, broker.ErrBanned)
	default:
		return fmt.Errorf("%w: %w", err, broker.ErrUnavailable)
	}
}
