package access

import (
	"errors"
	"fmt"
	"time"

	"github.com/lastmile-dm/lastmile/dm/topic"
)

// Sentinel errors. Stores return ErrNotFound and ErrExists.
var (
	// ErrNotFound: no such role or application.
	ErrNotFound = errors.New("access: not found")
	// ErrExists: an application with that name exists already.
	ErrExists = errors.New("access: already exists")
	// ErrInvalid wraps validation failures; the message names the field.
	ErrInvalid = errors.New("access: invalid argument")
	// ErrReadOnly: roles from the configuration file cannot be changed through the API.
	ErrReadOnly = errors.New("access: role is defined in the configuration file")
	// ErrInUse: the role is held by an application.
	ErrInUse = errors.New("access: role is in use")
	// ErrBadCredentials: unknown application or wrong secret.
	ErrBadCredentials = errors.New("access: bad credentials")
	// ErrDisabled: the application is disabled.
	ErrDisabled = errors.New("access: application disabled")
	// ErrClientIDInvalid: an application's client ID must be app:<name>[:suffix].
	ErrClientIDInvalid = errors.New("access: client ID must be app:<name> or app:<name>:<suffix>")
)

// Action is what a rule governs.
type Action string

// Actions.
const (
	ActionPublish   Action = "publish"
	ActionSubscribe Action = "subscribe"
	ActionAll       Action = "all"
)

// Effect is what a matching rule decides.
type Effect string

// Effects.
const (
	Allow Effect = "allow"
	Deny  Effect = "deny"
)

// Rule is one topic rule.
type Rule struct {
	Action Action `json:"action" yaml:"action"`
	Effect Effect `json:"effect" yaml:"effect"`
	Filter string `json:"filter" yaml:"filter"`
}

// Role is a named list of rules.
type Role struct {
	Name  string `json:"name" yaml:"name"`
	Rules []Rule `json:"rules" yaml:"rules"`
	// Source is "config" or "api".
	Source    string    `json:"source,omitempty" yaml:"-"`
	UpdatedAt time.Time `json:"updated_at,omitzero" yaml:"-"`
}

// Role sources.
const (
	SourceConfig = "config"
	SourceAPI    = "api"
)

// MaxRules bounds a role so each ACL check stays cheap.
const MaxRules = 256

// Validate checks the role's name and rules; errors wrap ErrInvalid.
func (r *Role) Validate() error {
	if !topic.ValidDeviceID(r.Name) || len(r.Name) > 64 {
		return fmt.Errorf("%w: role name %q must be 1-64 characters of [A-Za-z0-9._-]", ErrInvalid, r.Name)
	}
	if len(r.Rules) > MaxRules {
		return fmt.Errorf("%w: role %s: at most %d rules", ErrInvalid, r.Name, MaxRules)
	}
	for i, ru := range r.Rules {
		switch ru.Action {
		case ActionPublish, ActionSubscribe, ActionAll:
		default:
			return fmt.Errorf("%w: role %s rule %d: action must be publish, subscribe or all, not %q", ErrInvalid, r.Name, i, ru.Action)
		}
		if ru.Effect != Allow && ru.Effect != Deny {
			return fmt.Errorf("%w: role %s rule %d: effect must be allow or deny, not %q", ErrInvalid, r.Name, i, ru.Effect)
		}
		if !topic.ValidFilter(ru.Filter) {
			return fmt.Errorf("%w: role %s rule %d: %q is not a valid MQTT topic filter", ErrInvalid, r.Name, i, ru.Filter)
		}
		if _, _, shared := topic.SplitShared(ru.Filter); shared {
			return fmt.Errorf("%w: role %s rule %d: write the filter without $share/<group>/; rules apply to shared subscriptions too", ErrInvalid, r.Name, i)
		}
	}
	return nil
}

func (ru Rule) applies(a Action) bool { return ru.Action == ActionAll || ru.Action == a }

// MayPublish reports whether the role allows publishing to name.
func (r *Role) MayPublish(name string) bool {
	allowed := false
	for _, ru := range r.Rules {
		if !ru.applies(ActionPublish) || !topic.Match(ru.Filter, name) {
			continue
		}
		if ru.Effect == Deny {
			return false
		}
		allowed = true
	}
	return allowed
}

// MaySubscribe reports whether the role allows subscribing to filter: no
// deny rule may overlap it and an allow rule must cover all of it. For a
// shared subscription the inner filter is checked.
func (r *Role) MaySubscribe(filter string) bool {
	if _, inner, ok := topic.SplitShared(filter); ok {
		filter = inner
	}
	allowed := false
	for _, ru := range r.Rules {
		if !ru.applies(ActionSubscribe) {
			continue
		}
		if ru.Effect == Deny {
			if topic.Overlaps(ru.Filter, filter) {
				return false
			}
			continue
		}
		if topic.Covers(ru.Filter, filter) {
			allowed = true
		}
	}
	return allowed
}
