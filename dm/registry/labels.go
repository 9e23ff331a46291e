package registry

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lastmile-dm/lastmile/dm/topic"
)

// Limits on what a device record may hold, so one record stays small.
const (
	MaxNameLen     = 256
	MaxLabels      = 64
	MaxLabelKeyLen = 63
	MaxLabelValLen = 256
	MaxGroups      = 32
	MaxGroupLen    = 128
)

func validLabelKey(k string) error {
	if k == "" || len(k) > MaxLabelKeyLen {
		return fmt.Errorf("label key must be 1-%d characters", MaxLabelKeyLen)
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-/", c)) {
			return fmt.Errorf("label key %q may contain only letters, digits and ._-/", k)
		}
	}
	return nil
}

func validLabelValue(v string) error {
	if len(v) > MaxLabelValLen {
		return fmt.Errorf("label value must be at most %d characters", MaxLabelValLen)
	}
	if strings.ContainsAny(v, ",()=!\x00\n") {
		return fmt.Errorf("label value %q may not contain , ( ) = ! or control characters", v)
	}
	return nil
}

// Validate checks every field a caller can set; errors wrap ErrInvalid and
// name the field.
func (d *Device) Validate() error {
	var errs []error
	if !topic.ValidDeviceID(d.ID) {
		errs = append(errs, fmt.Errorf("id %q: must be 1-%d characters of [A-Za-z0-9._-]", d.ID, topic.MaxDeviceIDLen))
	}
	if len(d.Name) > MaxNameLen {
		errs = append(errs, fmt.Errorf("name: at most %d characters", MaxNameLen))
	}
	if len(d.Labels) > MaxLabels {
		errs = append(errs, fmt.Errorf("labels: at most %d", MaxLabels))
	}
	for k, v := range d.Labels {
		if err := validLabelKey(k); err != nil {
			errs = append(errs, fmt.Errorf("labels: %w", err))
		}
		if err := validLabelValue(v); err != nil {
			errs = append(errs, fmt.Errorf("labels[%s]: %w", k, err))
		}
	}
	if len(d.Groups) > MaxGroups {
		errs = append(errs, fmt.Errorf("groups: at most %d", MaxGroups))
	}
	seen := map[string]bool{}
	for _, g := range d.Groups {
		if !topic.ValidDeviceID(g) || len(g) > MaxGroupLen {
			errs = append(errs, fmt.Errorf("groups: %q must be 1-%d characters of [A-Za-z0-9._-]", g, MaxGroupLen))
		}
		if seen[g] {
			errs = append(errs, fmt.Errorf("groups: %q listed twice", g))
		}
		seen[g] = true
	}
	if d.CertFingerprint != "" && !validFingerprint(d.CertFingerprint) {
		errs = append(errs, errors.New("certificate_fingerprint: must be 64 lower-case hex characters (SHA-256 of the DER)"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

func validFingerprint(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
