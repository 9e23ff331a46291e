// Package token issues and checks the bearer tokens of the northbound API.
//
// A token reads "lmt_<id>_<secret>": the id finds the record, the 256-bit
// secret is checked against a salted SHA-256 (package credential), so the
// store never holds anything that grants access. There is no built-in
// token: Bootstrap creates the first one when the store has none, and the
// server prints it once.
//
// Checked tokens are cached for CacheTTL so an API call costs no store read;
// a revocation on this node takes effect at once, on other nodes within
// CacheTTL.
package token

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lastmile-dm/lastmile/dm/credential"
)

// Sentinel errors. Stores return ErrNotFound.
var (
	// ErrNotFound: no token with that ID.
	ErrNotFound = errors.New("token: not found")
	// ErrExists: a token with that ID exists already (stores return it from CreateToken).
	ErrExists = errors.New("token: already exists")
	// ErrUnauthenticated: the bearer token is malformed, unknown, wrong, expired or revoked.
	ErrUnauthenticated = errors.New("token: invalid, expired or revoked")
	// ErrInvalid wraps validation failures.
	ErrInvalid = errors.New("token: invalid argument")
)

// Permissions a token can hold.
const (
	PermAll          = "*"
	PermDevicesRead  = "devices:read"
	PermDevicesWrite = "devices:write"
	PermTokensAdmin  = "tokens:admin"
	PermAccessAdmin  = "access:admin"
	// PermTunnel opens, uses and closes TCP tunnels to devices.
	PermTunnel       = "tunnel"
	PermShadowsRead  = "shadows:read"
	PermShadowsWrite = "shadows:write"
	// PermConfigRead reads config profiles, versions and rollouts;
	// PermConfigWrite creates them (and so pushes configuration).
	PermConfigRead  = "config:read"
	PermConfigWrite = "config:write"
	// PermCommandsInvoke runs commands on devices.
	PermCommandsInvoke = "commands:invoke"
	// PermEventsRead watches the event stream (presence, telemetry, ...).
	PermEventsRead = "events:read"
	// PermSNMPRead runs SNMP GET and walks on devices; PermSNMPWrite SET.
	PermSNMPRead  = "snmp:read"
	PermSNMPWrite = "snmp:write"
)

// KnownPermissions lists the permissions in use; later capabilities add theirs.
var KnownPermissions = []string{PermAll, PermDevicesRead, PermDevicesWrite, PermTokensAdmin, PermAccessAdmin,
	PermTunnel,
	PermShadowsRead, PermShadowsWrite,
	PermConfigRead, PermConfigWrite,

	PermCommandsInvoke,
	PermEventsRead,
	PermSNMPRead, PermSNMPWrite,
}

// Prefix starts every token.
const Prefix = "lmt_"

// Token is a stored token record.
type Token struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Permissions []string  `json:"permissions"`
	SecretHash  string    `json:"secret_hash"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	RevokedAt   time.Time `json:"revoked_at,omitzero"`
}

// Active reports whether the token can be used at now.
func (t *Token) Active(now time.Time) bool {
	return t.RevokedAt.IsZero() && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
}

// Allows reports whether the token grants perm. "devices:write" implies
// "devices:read".
func (t *Token) Allows(perm string) bool {
	for _, p := range t.Permissions {
		if p == PermAll || p == perm {
			return true
		}
		if area, ok := strings.CutSuffix(p, ":write"); ok && perm == area+":read" {
			return true
		}
	}
	return false
}

// Store persists tokens. Safe for concurrent use.
type Store interface {
	// CreateToken stores a new token.
	CreateToken(ctx context.Context, t *Token) error
	// GetToken returns a token or ErrNotFound.
	GetToken(ctx context.Context, id string) (*Token, error)
	// PutToken replaces an existing token.
	PutToken(ctx context.Context, t *Token) error
	// ListTokens returns up to limit tokens with IDs greater than after, in ID order.
	ListTokens(ctx context.Context, after string, limit int) ([]*Token, error)
}

// Config configures a Service.
type Config struct {
	Store    Store
	CacheTTL time.Duration // default 5 s
	Logger   *slog.Logger
	Now      func() time.Time
}

// CheckAndSetDefaults validates cfg and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Store == nil {
		return errors.New("token: Store is required")
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Service issues and checks tokens. Safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	cache map[string]cached // by full bearer string
}

type cached struct {
	tok     *Token
	checked time.Time
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("component", "token"), cache: map[string]cached{}}, nil
}

const idAlphabet = "abcdefghijkmnopqrstuvwxyz23456789"

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b)
}

// Create issues a token and returns it with the bearer string (shown once).
func (s *Service) Create(ctx context.Context, name string, perms []string, ttl time.Duration) (*Token, string, error) {
	if name == "" || len(name) > 128 {
		return nil, "", fmt.Errorf("%w: name must be 1-128 characters", ErrInvalid)
	}
	if ttl < 0 {
		return nil, "", fmt.Errorf("%w: ttl must not be negative", ErrInvalid)
	}
	if len(perms) == 0 {
		perms = []string{PermAll}
	}
	for _, p := range perms {
		if !slices.Contains(KnownPermissions, p) {
			return nil, "", fmt.Errorf("%w: unknown permission %q (known: %s)", ErrInvalid, p, strings.Join(KnownPermissions, ", "))
		}
	}
	secret := credential.GenerateSecret()
	hash, err := credential.Hash(credential.KindGenerated, secret)
	if err != nil {
		return nil, "", err
	}
	now := s.cfg.Now().UTC()
	t := &Token{ID: newID(), Name: name, Permissions: slices.Clone(perms), SecretHash: hash, CreatedAt: now}
	if ttl > 0 {
		t.ExpiresAt = now.Add(ttl)
	}
	if err := s.cfg.Store.CreateToken(ctx, t); err != nil {
		return nil, "", fmt.Errorf("create token: %w", err)
	}
	s.log.Info("token created", "token_id", t.ID, "name", name, "permissions", perms)
	return t, Prefix + t.ID + "_" + secret, nil
}

// Authenticate checks a bearer string and returns its token.
func (s *Service) Authenticate(ctx context.Context, bearer string) (*Token, error) {
	now := s.cfg.Now()
	s.mu.Lock()
	c, ok := s.cache[bearer]
	s.mu.Unlock()
	if ok && now.Sub(c.checked) < s.cfg.CacheTTL && c.tok.Active(now) {
		return c.tok, nil
	}
	rest, ok := strings.CutPrefix(bearer, Prefix)
	if !ok {
		return nil, ErrUnauthenticated
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 12 {
		return nil, ErrUnauthenticated
	}
	t, err := s.cfg.Store.GetToken(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, fmt.Errorf("check token: %w", err)
	}
	if credential.Verify(t.SecretHash, secret) != nil || !t.Active(now) {
		return nil, ErrUnauthenticated
	}
	s.mu.Lock()
	if len(s.cache) > 10_000 {
		clear(s.cache)
	}
	s.cache[bearer] = cached{tok: t, checked: now}
	s.mu.Unlock()
	return t, nil
}

// List returns a page of tokens in ID order; inactive ones only if asked.
func (s *Service) List(ctx context.Context, after string, limit int, showInactive bool) ([]*Token, string, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	now := s.cfg.Now()
	var out []*Token
	for len(out) < limit {
		batch, err := s.cfg.Store.ListTokens(ctx, after, limit)
		if err != nil {
			return nil, "", fmt.Errorf("list tokens: %w", err)
		}
		if len(batch) == 0 {
			return out, "", nil
		}
		for _, t := range batch {
			after = t.ID
			if showInactive || t.Active(now) {
				out = append(out, t)
				if len(out) == limit {
					break
				}
			}
		}
	}
	return out, after, nil
}

// Revoke makes a token unusable; revoking twice succeeds.
func (s *Service) Revoke(ctx context.Context, id string) (*Token, error) {
	t, err := s.cfg.Store.GetToken(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("revoke token %s: %w", id, err)
	}
	if t.RevokedAt.IsZero() {
		t.RevokedAt = s.cfg.Now().UTC()
		if err := s.cfg.Store.PutToken(ctx, t); err != nil {
			return nil, fmt.Errorf("revoke token %s: %w", id, err)
		}
	}
	s.mu.Lock()
	for k, c := range s.cache {
		if c.tok.ID == id {
			delete(s.cache, k)
		}
	}
	s.mu.Unlock()
	s.log.Info("token revoked", "token_id", id)
	return t, nil
}

// Bootstrap creates a first token with every permission when the store has
// no token at all, and returns its bearer string; "" when tokens exist.
func (s *Service) Bootstrap(ctx context.Context) (string, error) {
	existing, err := s.cfg.Store.ListTokens(ctx, "", 1)
	if err != nil {
		return "", fmt.Errorf("bootstrap token: %w", err)
	}
	if len(existing) > 0 {
		return "", nil
	}
	_, bearer, err := s.Create(ctx, "bootstrap", []string{PermAll}, 0)
	return bearer, err
}
