package access

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lastmile-dm/lastmile/dm/credential"
	"github.com/lastmile-dm/lastmile/dm/topic"
)

// Application is a non-device MQTT principal.
type Application struct {
	Name       string    `json:"name"`
	Role       string    `json:"role"`
	Enabled    bool      `json:"enabled"`
	SecretHash string    `json:"secret_hash,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// ApplicationUsernamePrefix starts an application's MQTT username and client ID.
const ApplicationUsernamePrefix = "app:"

// Store persists API-defined roles and applications. Implementations are
// safe for concurrent use.
type Store interface {
	// PutRole creates or replaces a role.
	PutRole(ctx context.Context, r *Role) error
	// GetRole returns a role or ErrNotFound.
	GetRole(ctx context.Context, name string) (*Role, error)
	// ListRoles returns every role in name order.
	ListRoles(ctx context.Context) ([]*Role, error)
	// DeleteRole removes a role or returns ErrNotFound.
	DeleteRole(ctx context.Context, name string) error
	// CreateApplication stores a new application or returns ErrExists.
	CreateApplication(ctx context.Context, a *Application) error
	// PutApplication replaces an existing application or returns ErrNotFound.
	PutApplication(ctx context.Context, a *Application) error
	// GetApplication returns an application or ErrNotFound.
	GetApplication(ctx context.Context, name string) (*Application, error)
	// ListApplications returns every application in name order.
	ListApplications(ctx context.Context) ([]*Application, error)
	// DeleteApplication removes an application or returns ErrNotFound.
	DeleteApplication(ctx context.Context, name string) error
}

// Kicker closes the MQTT connections of an application.
type Kicker interface {
	KickApplication(name, reason string) int
}

// Config configures a Service.
type Config struct {
	Store Store
	// Roles from the configuration file: read-only through the API.
	Roles []Role
	// AnonymousRole, when not empty, lets clients without credentials
	// connect under this role. Off by default.
	AnonymousRole string
	Kicker        Kicker
	Verifier      *credential.Verifier
	Logger        *slog.Logger
	Now           func() time.Time
}

// CheckAndSetDefaults validates cfg and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Store == nil {
		return errors.New("access: Store is required")
	}
	seen := map[string]bool{}
	for i := range c.Roles {
		c.Roles[i].Source = SourceConfig
		if err := c.Roles[i].Validate(); err != nil {
			return fmt.Errorf("access.roles: %w", err)
		}
		if seen[c.Roles[i].Name] {
			return fmt.Errorf("access.roles: role %q defined twice", c.Roles[i].Name)
		}
		seen[c.Roles[i].Name] = true
	}
	if c.AnonymousRole != "" && !seen[c.AnonymousRole] {
		return fmt.Errorf("access.anonymous.role: %q is not a role defined in access.roles", c.AnonymousRole)
	}
	if c.Verifier == nil {
		c.Verifier = credential.NewVerifier(0)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Service manages roles and applications. Safe for concurrent use.
type Service struct {
	cfg    Config
	log    *slog.Logger
	static map[string]*Role

	// mu guards roleCache: API roles are read on every application connect.
	mu        sync.Mutex
	roleCache map[string]*Role
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: cfg.Logger.With("component", "access"), static: map[string]*Role{}, roleCache: map[string]*Role{}}
	for i := range cfg.Roles {
		s.static[cfg.Roles[i].Name] = &cfg.Roles[i]
	}
	return s, nil
}

// SetKicker sets the Kicker after construction.
func (s *Service) SetKicker(k Kicker) { s.cfg.Kicker = k }

// Role returns a role from the configuration or the store.
func (s *Service) Role(ctx context.Context, name string) (*Role, error) {
	if r, ok := s.static[name]; ok {
		return r, nil
	}
	s.mu.Lock()
	r, ok := s.roleCache[name]
	s.mu.Unlock()
	if ok {
		return r, nil
	}
	r, err := s.cfg.Store.GetRole(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("role %s: %w", name, err)
	}
	r.Source = SourceAPI
	s.mu.Lock()
	s.roleCache[name] = r
	s.mu.Unlock()
	return r, nil
}

// PutRole creates or replaces an API role.
func (s *Service) PutRole(ctx context.Context, r Role) (*Role, error) {
	if _, ok := s.static[r.Name]; ok {
		return nil, fmt.Errorf("role %s: %w", r.Name, ErrReadOnly)
	}
	r.Source = SourceAPI
	if err := r.Validate(); err != nil {
		return nil, err
	}
	r.UpdatedAt = s.cfg.Now().UTC()
	if err := s.cfg.Store.PutRole(ctx, &r); err != nil {
		return nil, fmt.Errorf("put role %s: %w", r.Name, err)
	}
	s.forget(r.Name)
	// Connected applications hold the old rules: reconnecting applies the new ones.
	if apps, err := s.cfg.Store.ListApplications(ctx); err == nil {
		for _, a := range apps {
			if a.Role == r.Name {
				s.kick(a.Name, "role changed")
			}
		}
	}
	return &r, nil
}

// ListRoles returns configuration roles then API roles, each in name order.
func (s *Service) ListRoles(ctx context.Context) ([]*Role, error) {
	var out []*Role
	for _, r := range s.cfg.Roles {
		out = append(out, &r)
	}
	stored, err := s.cfg.Store.ListRoles(ctx)
	if err != nil {
		return nil, fmt.Errorf("list roles: %w", err)
	}
	for _, r := range stored {
		r.Source = SourceAPI
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b *Role) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// DeleteRole removes an API role no application holds.
func (s *Service) DeleteRole(ctx context.Context, name string) error {
	if _, ok := s.static[name]; ok {
		return fmt.Errorf("role %s: %w", name, ErrReadOnly)
	}
	apps, err := s.cfg.Store.ListApplications(ctx)
	if err != nil {
		return fmt.Errorf("delete role %s: %w", name, err)
	}
	for _, a := range apps {
		if a.Role == name {
			return fmt.Errorf("role %s is held by application %s: %w", name, a.Name, ErrInUse)
		}
	}
	if err := s.cfg.Store.DeleteRole(ctx, name); err != nil {
		return fmt.Errorf("delete role %s: %w", name, err)
	}
	s.forget(name)
	return nil
}

func (s *Service) forget(role string) {
	s.mu.Lock()
	delete(s.roleCache, role)
	s.mu.Unlock()
}

func validAppName(n string) error {
	if !topic.ValidDeviceID(n) || len(n) > 64 {
		return fmt.Errorf("%w: application name %q must be 1-64 characters of [A-Za-z0-9._-]", ErrInvalid, n)
	}
	return nil
}

// CreateApplication registers an application and returns it with its
// generated secret (shown once).
func (s *Service) CreateApplication(ctx context.Context, a Application) (*Application, string, error) {
	if err := validAppName(a.Name); err != nil {
		return nil, "", err
	}
	if _, err := s.Role(ctx, a.Role); err != nil {
		return nil, "", fmt.Errorf("%w: role %q does not exist", ErrInvalid, a.Role)
	}
	secret := credential.GenerateSecret()
	hash, err := credential.Hash(credential.KindGenerated, secret)
	if err != nil {
		return nil, "", err
	}
	now := s.cfg.Now().UTC()
	a.SecretHash, a.CreatedAt, a.UpdatedAt = hash, now, now
	if err := s.cfg.Store.CreateApplication(ctx, &a); err != nil {
		return nil, "", fmt.Errorf("create application %s: %w", a.Name, err)
	}
	s.log.Info("application created", "application", a.Name, "role", a.Role)
	return &a, secret, nil
}

// GetApplication returns one application.
func (s *Service) GetApplication(ctx context.Context, name string) (*Application, error) {
	a, err := s.cfg.Store.GetApplication(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("application %s: %w", name, err)
	}
	return a, nil
}

// ListApplications returns every application in name order.
func (s *Service) ListApplications(ctx context.Context) ([]*Application, error) {
	apps, err := s.cfg.Store.ListApplications(ctx)
	if err != nil {
		return nil, fmt.Errorf("list applications: %w", err)
	}
	return apps, nil
}

// UpdateApplication changes role and/or enabled (nil leaves it).
// Disabling, or a new role, disconnects the application so its next
// connection runs under the new rules.
func (s *Service) UpdateApplication(ctx context.Context, name string, role *string, enabled *bool) (*Application, error) {
	a, err := s.cfg.Store.GetApplication(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("application %s: %w", name, err)
	}
	changed := false
	if role != nil && *role != a.Role {
		if _, err := s.Role(ctx, *role); err != nil {
			return nil, fmt.Errorf("%w: role %q does not exist", ErrInvalid, *role)
		}
		a.Role, changed = *role, true
	}
	if enabled != nil && *enabled != a.Enabled {
		a.Enabled, changed = *enabled, true
	}
	if !changed {
		return a, nil
	}
	a.UpdatedAt = s.cfg.Now().UTC()
	if err := s.cfg.Store.PutApplication(ctx, a); err != nil {
		return nil, fmt.Errorf("update application %s: %w", name, err)
	}
	s.kick(name, "application changed")
	return a, nil
}

// DeleteApplication removes an application and disconnects it.
func (s *Service) DeleteApplication(ctx context.Context, name string) error {
	if err := s.cfg.Store.DeleteApplication(ctx, name); err != nil {
		return fmt.Errorf("delete application %s: %w", name, err)
	}
	s.kick(name, "application deleted")
	return nil
}

// RotateApplicationSecret issues a new secret and disconnects the
// application.
func (s *Service) RotateApplicationSecret(ctx context.Context, name string) (string, error) {
	a, err := s.cfg.Store.GetApplication(ctx, name)
	if err != nil {
		return "", fmt.Errorf("application %s: %w", name, err)
	}
	secret := credential.GenerateSecret()
	if a.SecretHash, err = credential.Hash(credential.KindGenerated, secret); err != nil {
		return "", err
	}
	a.UpdatedAt = s.cfg.Now().UTC()
	if err := s.cfg.Store.PutApplication(ctx, a); err != nil {
		return "", fmt.Errorf("rotate secret of %s: %w", name, err)
	}
	s.kick(name, "secret rotated")
	return secret, nil
}

func (s *Service) kick(name, reason string) {
	if s.cfg.Kicker != nil {
		s.cfg.Kicker.KickApplication(name, reason)
	}
}

// ApplicationName returns the application named by an MQTT username
// ("app:<name>"), and whether the username names one at all.
func ApplicationName(username string) (string, bool) {
	return strings.CutPrefix(username, ApplicationUsernamePrefix)
}

// AuthenticateApplication checks an application's MQTT connect and returns
// the role whose rules then apply.
func (s *Service) AuthenticateApplication(ctx context.Context, clientID, username string, secret []byte) (*Application, *Role, error) {
	name, ok := ApplicationName(username)
	if !ok {
		return nil, nil, ErrBadCredentials
	}
	if clientID != ApplicationUsernamePrefix+name && !strings.HasPrefix(clientID, ApplicationUsernamePrefix+name+":") {
		return nil, nil, fmt.Errorf("application %s, client ID %q: %w", name, clientID, ErrClientIDInvalid)
	}
	a, err := s.cfg.Store.GetApplication(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, fmt.Errorf("unknown application %q: %w", name, ErrBadCredentials)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("authenticate application %s: %w", name, err)
	}
	if err := s.cfg.Verifier.Verify(a.SecretHash, string(secret)); err != nil {
		return nil, nil, fmt.Errorf("application %s: %w", name, ErrBadCredentials)
	}
	if !a.Enabled {
		return nil, nil, fmt.Errorf("application %s: %w", name, ErrDisabled)
	}
	r, err := s.Role(ctx, a.Role)
	if err != nil {
		return nil, nil, err
	}
	return a, r, nil
}

// AnonymousRole returns the role of anonymous clients, or ErrBadCredentials
// when anonymous access is off (the default).
func (s *Service) AnonymousRole() (*Role, error) {
	if s.cfg.AnonymousRole == "" {
		return nil, fmt.Errorf("anonymous access is off: %w", ErrBadCredentials)
	}
	return s.static[s.cfg.AnonymousRole], nil
}
