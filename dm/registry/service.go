package registry

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/lastmile-dm/lastmile/dm/credential"
)

// Config configures a Service.
type Config struct {
	Store    Store
	Presence PresenceStore
	// Kicker disconnects devices; nil means nothing is connected (tests).
	Kicker Kicker
	// Verifier checks passwords; default: one that remembers 100k checks.
	Verifier *credential.Verifier
	Logger   *slog.Logger
	Now      func() time.Time
}

// CheckAndSetDefaults validates cfg and fills defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Store == nil || c.Presence == nil {
		return errors.New("registry: Store and Presence are required")
	}
	if c.Verifier == nil {
		c.Verifier = credential.NewVerifier(100_000)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Service is the registry's domain logic. It is safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("component", "registry")}, nil
}

// SetKicker sets the Kicker after construction, for wiring where the broker
// is built after the registry it authenticates against.
func (s *Service) SetKicker(k Kicker) { s.cfg.Kicker = k }

// Secret says which password to give a device.
type Secret struct {
	// Password chosen by a person; hashed with argon2id.
	Password string
	// Generate a high-entropy secret; returned once.
	Generate bool
}

func (sec Secret) hash() (hash, generated string, err error) {
	switch {
	case sec.Password != "" && sec.Generate:
		return "", "", fmt.Errorf("%w: set either a password or generate_secret, not both", ErrInvalid)
	case sec.Generate:
		generated = credential.GenerateSecret()
		hash, err = credential.Hash(credential.KindGenerated, generated)
		return hash, generated, err
	case sec.Password != "":
		hash, err = credential.Hash(credential.KindChosen, sec.Password)
		if errors.Is(err, credential.ErrWeakPassword) {
			return "", "", fmt.Errorf("%w: password: %w", ErrInvalid, err)
		}
		return hash, "", err
	}
	return "", "", nil
}

// Create registers d (ID, name, labels, groups, enabled, banned,
// certificate pin) with an optional secret, and returns the stored device
// and the generated secret if one was asked for.
func (s *Service) Create(ctx context.Context, d Device, sec Secret) (*Device, string, error) {
	if err := d.Validate(); err != nil {
		return nil, "", err
	}
	hash, generated, err := sec.hash()
	if err != nil {
		return nil, "", err
	}
	now := s.cfg.Now().UTC()
	d.PasswordHash = hash
	if hash != "" {
		d.PasswordSetAt = now
	}
	d.Labels = maps.Clone(d.Labels)
	d.Groups = slices.Clone(d.Groups)
	d.CreatedAt, d.UpdatedAt, d.Revision = now, now, 1
	if err := s.cfg.Store.CreateDevice(ctx, &d); err != nil {
		return nil, "", fmt.Errorf("create device %s: %w", d.ID, err)
	}
	s.log.Info("device created", "device", d.ID)
	return &d, generated, nil
}

// Get returns the device and its presence (zero Presence if it never connected).
func (s *Service) Get(ctx context.Context, id string) (*Device, Presence, error) {
	d, err := s.cfg.Store.GetDevice(ctx, id)
	if err != nil {
		return nil, Presence{}, fmt.Errorf("get device %s: %w", id, err)
	}
	ps, err := s.cfg.Presence.GetPresence(ctx, []string{id})
	if err != nil {
		return nil, Presence{}, fmt.Errorf("get presence %s: %w", id, err)
	}
	return d, ps[id], nil
}

// Query selects devices for List.
type Query struct {
	PageSize  int
	PageToken string
	Selector  Selector
	Group     string
	// Online: nil for all, or only devices whose presence matches.
	Online *bool
}

// Page is one page of List.
type Page struct {
	Devices   []*Device
	Presence  map[string]Presence
	NextToken string
}

// List page limits. A page stops after scanning maxScan devices even if it
// is not full, so a selective filter over a large fleet answers promptly;
// the caller continues with NextToken.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
	maxScan         = 10_000
)

// List returns one page of devices matching q, in ID order.
func (s *Service) List(ctx context.Context, q Query) (Page, error) {
	size := q.PageSize
	switch {
	case size < 0:
		return Page{}, fmt.Errorf("%w: page_size must not be negative", ErrInvalid)
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	after, err := decodeToken(q.PageToken)
	if err != nil {
		return Page{}, err
	}
	page := Page{Presence: map[string]Presence{}}
	scanned := 0
	for len(page.Devices) < size && scanned < maxScan {
		batch, err := s.cfg.Store.ListDevices(ctx, after, min(max(size*2, 100), maxScan-scanned))
		if err != nil {
			return Page{}, fmt.Errorf("list devices: %w", err)
		}
		if len(batch) == 0 {
			return page, nil
		}
		scanned += len(batch)
		ids := make([]string, 0, len(batch))
		for _, d := range batch {
			ids = append(ids, d.ID)
		}
		ps, err := s.cfg.Presence.GetPresence(ctx, ids)
		if err != nil {
			return Page{}, fmt.Errorf("list presence: %w", err)
		}
		for _, d := range batch {
			after = d.ID
			if !q.Selector.Matches(d.Labels) || (q.Group != "" && !slices.Contains(d.Groups, q.Group)) {
				continue
			}
			if q.Online != nil && ps[d.ID].Online != *q.Online {
				continue
			}
			page.Devices = append(page.Devices, d)
			if p, ok := ps[d.ID]; ok {
				page.Presence[d.ID] = p
			}
			if len(page.Devices) == size {
				break
			}
		}
	}
	// More may follow: the page is full or the scan budget ran out.
	page.NextToken = encodeToken(after)
	return page, nil
}

func encodeToken(after string) string { return base64.RawURLEncoding.EncodeToString([]byte(after)) }

func decodeToken(tok string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) > 256 {
		return "", fmt.Errorf("%w: page_token is not one this server issued", ErrInvalid)
	}
	return string(b), nil
}

// Patch lists the fields Update changes; nil pointers leave a field alone.
type Patch struct {
	Name    *string
	Labels  *map[string]string
	Groups  *[]string
	Enabled *bool
	Banned  *bool
	// ExpectRevision, when non-zero, must equal the stored revision.
	ExpectRevision uint64
}

// maxCASRetries bounds retries of a read-modify-write that lost a race.
const maxCASRetries = 16

// Update applies p to device id. Disabling or banning disconnects it.
func (s *Service) Update(ctx context.Context, id string, p Patch) (*Device, error) {
	d, err := s.modify(ctx, id, p.ExpectRevision, func(d *Device) error {
		if p.Name != nil {
			d.Name = *p.Name
		}
		if p.Labels != nil {
			d.Labels = maps.Clone(*p.Labels)
		}
		if p.Groups != nil {
			d.Groups = slices.Clone(*p.Groups)
		}
		if p.Enabled != nil {
			d.Enabled = *p.Enabled
		}
		if p.Banned != nil {
			d.Banned = *p.Banned
		}
		return d.Validate()
	})
	if err != nil {
		return nil, err
	}
	if !d.Enabled || d.Banned {
		s.kick(d.ID, "device disabled or banned")
	}
	return d, nil
}

// modify runs a compare-and-set loop on one device.
func (s *Service) modify(ctx context.Context, id string, expect uint64, fn func(*Device) error) (*Device, error) {
	for range maxCASRetries {
		d, err := s.cfg.Store.GetDevice(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("update device %s: %w", id, err)
		}
		if expect != 0 && d.Revision != expect {
			return nil, fmt.Errorf("update device %s: etag %d is stale (now %d): %w", id, expect, d.Revision, ErrConflict)
		}
		old := d.Revision
		if err := fn(d); err != nil {
			return nil, err
		}
		d.Revision = old + 1
		d.UpdatedAt = s.cfg.Now().UTC()
		err = s.cfg.Store.UpdateDevice(ctx, d, old)
		if errors.Is(err, ErrConflict) && expect == 0 {
			continue // lost a race with another writer: read again
		}
		if err != nil {
			return nil, fmt.Errorf("update device %s: %w", id, err)
		}
		return d, nil
	}
	return nil, fmt.Errorf("update device %s: too much contention: %w", id, ErrConflict)
}

// Delete removes the device and disconnects it. With allowMissing, deleting
// a missing device succeeds (a retried delete).
func (s *Service) Delete(ctx context.Context, id string, allowMissing bool) error {
	err := s.cfg.Store.DeleteDevice(ctx, id)
	if errors.Is(err, ErrNotFound) && allowMissing {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete device %s: %w", id, err)
	}
	s.kick(id, "device deleted")
	s.log.Info("device deleted", "device", id)
	return nil
}

// CredentialChange says how SetCredentials changes a device's credentials.
type CredentialChange struct {
	Secret        Secret
	ClearPassword bool
	// CertFingerprint: nil leaves the pin, "" clears it, else sets it.
	CertFingerprint *string
	// Disconnect the device's current connection.
	Disconnect bool
}

// SetCredentials sets or rotates credentials and returns the device and a
// generated secret if one was asked for.
func (s *Service) SetCredentials(ctx context.Context, id string, c CredentialChange) (*Device, string, error) {
	if c.ClearPassword && (c.Secret.Password != "" || c.Secret.Generate) {
		return nil, "", fmt.Errorf("%w: clear_password cannot be combined with a new password", ErrInvalid)
	}
	if !c.ClearPassword && c.Secret == (Secret{}) && c.CertFingerprint == nil {
		return nil, "", fmt.Errorf("%w: nothing to change: give a password, generate_secret, clear_password or a certificate fingerprint", ErrInvalid)
	}
	// Hash once, outside the retry loop: argon2id is slow.
	hash, generated, err := c.Secret.hash()
	if err != nil {
		return nil, "", err
	}
	d, err := s.modify(ctx, id, 0, func(d *Device) error {
		now := s.cfg.Now().UTC()
		switch {
		case c.ClearPassword:
			d.PasswordHash, d.PasswordSetAt = "", now
		case hash != "":
			d.PasswordHash, d.PasswordSetAt = hash, now
		}
		if c.CertFingerprint != nil {
			d.CertFingerprint = *c.CertFingerprint
		}
		return d.Validate()
	})
	if err != nil {
		return nil, "", err
	}
	if c.Disconnect {
		s.kick(id, "credentials changed")
	}
	s.log.Info("device credentials changed", "device", id, "password_kind", credential.KindOf(d.PasswordHash),
		"cert_pinned", d.CertFingerprint != "")
	return d, generated, nil
}

// Disconnect closes the device's connection and reports whether it had one.
// It fails with ErrNotFound for an unknown device.
func (s *Service) Disconnect(ctx context.Context, id string) (bool, error) {
	if _, err := s.cfg.Store.GetDevice(ctx, id); err != nil {
		return false, fmt.Errorf("disconnect device %s: %w", id, err)
	}
	return s.kick(id, "disconnected by operator"), nil
}

func (s *Service) kick(id, reason string) bool {
	if s.cfg.Kicker == nil {
		return false
	}
	return s.cfg.Kicker.Kick(id, reason)
}

// AuthRequest is what a device presents at connect.
type AuthRequest struct {
	ClientID string
	Username string
	Password []byte
	// Cert is the client certificate, already verified against the trusted
	// CA by TLS; nil on a plain connection.
	Cert *x509.Certificate
}

// Authenticate checks a connecting device. It returns ErrBadCredentials
// (unknown device included, so IDs cannot be probed), ErrClientIDMismatch,
// ErrDisabled or ErrBanned — the last two only after the credentials were
// proven, so they reveal nothing to a stranger.
func (s *Service) Authenticate(ctx context.Context, r AuthRequest) (*Device, error) {
	id := r.Username
	if r.Cert != nil {
		cn := r.Cert.Subject.CommonName
		if id != "" && id != cn {
			return nil, fmt.Errorf("username %q is not the certificate CN %q: %w", id, cn, ErrBadCredentials)
		}
		id = cn
	}
	if id == "" {
		return nil, fmt.Errorf("no username or certificate: %w", ErrBadCredentials)
	}
	if r.ClientID != id {
		return nil, fmt.Errorf("client ID %q for device %q: %w", r.ClientID, id, ErrClientIDMismatch)
	}
	d, err := s.cfg.Store.GetDevice(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("unknown device %q: %w", id, ErrBadCredentials)
	}
	if err != nil {
		return nil, fmt.Errorf("authenticate %s: %w", id, err)
	}
	switch {
	case r.Cert != nil:
		if d.CertFingerprint != "" {
			sum := sha256.Sum256(r.Cert.Raw)
			if hex.EncodeToString(sum[:]) != d.CertFingerprint {
				return nil, fmt.Errorf("device %s: certificate does not match the pin: %w", id, ErrBadCredentials)
			}
		}
	case d.PasswordHash == "":
		return nil, fmt.Errorf("device %s has no password (certificate only): %w", id, ErrBadCredentials)
	default:
		if err := s.cfg.Verifier.Verify(d.PasswordHash, string(r.Password)); err != nil {
			return nil, fmt.Errorf("device %s: %w", id, ErrBadCredentials)
		}
	}
	if d.Banned {
		return nil, fmt.Errorf("device %s: %w", id, ErrBanned)
	}
	if !d.Enabled {
		return nil, fmt.Errorf("device %s: %w", id, ErrDisabled)
	}
	return d, nil
}

// Connected records a new connection of a device.
func (s *Service) Connected(ctx context.Context, p Presence) {
	p.Online = true
	if err := s.cfg.Presence.SetOnline(ctx, p); err != nil {
		s.log.Error("record presence", "device", p.DeviceID, "error", err)
	}
}

// Disconnected records the end of connection conn of a device; a stale
// disconnect (the device reconnected meanwhile) changes nothing.
func (s *Service) Disconnected(ctx context.Context, deviceID, conn string, at time.Time, reason string) {
	if _, err := s.cfg.Presence.SetOffline(ctx, deviceID, conn, at.UTC(), reason); err != nil {
		s.log.Error("record presence", "device", deviceID, "error", err)
	}
}
