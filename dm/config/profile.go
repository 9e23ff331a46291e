package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lastmile-dm/lastmile/dm/topic"
)

// Formats of a profile's documents.
const (
	FormatJSON = "json"
	FormatYAML = "yaml"
	FormatText = "text"
)

// MaxDocumentBytes bounds a document; with its envelope it must fit one
// config message.
const MaxDocumentBytes = topic.MaxConfigPayload - 4096

// Profile is a named configuration: its format and the schema every
// version must satisfy.
type Profile struct {
	Name        string    `json:"name"`
	Format      string    `json:"format"`
	Description string    `json:"description,omitempty"`
	Schema      Schema    `json:"schema,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// Version is one immutable document of a profile. Versions count from 1.
type Version struct {
	Profile   string    `json:"profile"`
	Version   int64     `json:"version"`
	Content   []byte    `json:"content"`
	Hash      string    `json:"hash"`
	Comment   string    `json:"comment,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Hash is the hex SHA-256 of a document: what devices compare.
func Hash(content []byte) string { return topic.ConfigHash(content) }

// validName: 1 to 64 of [a-z0-9._-], starting with a letter or digit.
func validName(n string) bool {
	if n == "" || len(n) > 64 || n[0] == '.' || n[0] == '-' || n[0] == '_' {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func (p *Profile) check() error {
	if !validName(p.Name) {
		return fmt.Errorf("%w: profile name %q: want 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit", ErrInvalid, p.Name)
	}
	switch p.Format {
	case FormatJSON, FormatYAML:
	case FormatText:
		if len(p.Schema) > 0 {
			return fmt.Errorf("%w: a text profile cannot have a schema", ErrInvalid)
		}
	default:
		return fmt.Errorf("%w: format %q: want json, yaml or text", ErrInvalid, p.Format)
	}
	if len(p.Description) > 1024 {
		return fmt.Errorf("%w: description longer than 1024 bytes", ErrInvalid)
	}
	return p.Schema.check()
}

// Schema is the optional check of a profile's documents: each entry names
// a required key by its dotted path ("server.port") and the type its value
// must have: string, number, integer, boolean, object, array or any. Keys
// not listed are allowed. It is deliberately small: it catches the typo
// and the missing key that would strand a device, not every policy.
type Schema map[string]string

var schemaTypes = map[string]bool{"string": true, "number": true, "integer": true, "boolean": true, "object": true, "array": true, "any": true}

func (s Schema) check() error {
	if len(s) > 256 {
		return fmt.Errorf("%w: schema has more than 256 keys", ErrInvalid)
	}
	for k, t := range s {
		if k == "" || len(k) > 256 || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") || strings.Contains(k, "..") {
			return fmt.Errorf("%w: schema key %q: want a dotted path such as server.port", ErrInvalid, k)
		}
		if !schemaTypes[t] {
			return fmt.Errorf("%w: schema key %s: type %q: want string, number, integer, boolean, object, array or any", ErrInvalid, k, t)
		}
	}
	return nil
}

// ParseDocument parses content in format (json or yaml) into plain Go
// values (map[string]any, []any, float64, string, bool, nil); text is
// returned as a string.
func ParseDocument(format string, content []byte) (any, error) {
	switch format {
	case FormatText:
		return string(content), nil
	case FormatJSON:
		d := json.NewDecoder(bytes.NewReader(content))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return nil, fmt.Errorf("%w: not JSON: %w", ErrInvalid, err)
		}
		if d.More() {
			return nil, fmt.Errorf("%w: not JSON: data after the document", ErrInvalid)
		}
		return normalize(v), nil
	case FormatYAML:
		var v any
		if err := yaml.Unmarshal(content, &v); err != nil {
			return nil, fmt.Errorf("%w: not YAML: %w", ErrInvalid, err)
		}
		return normalize(v), nil
	}
	return nil, fmt.Errorf("%w: format %q", ErrInvalid, format)
}

// normalize turns YAML's and JSON's value types into one set: maps with
// string keys, float64 or json.Number numbers, []any.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = normalize(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	case int:
		return json.Number(fmt.Sprint(x))
	case int64:
		return json.Number(fmt.Sprint(x))
	case uint64:
		return json.Number(fmt.Sprint(x))
	case float64:
		return json.Number(fmt.Sprint(x))
	}
	return v
}

// Validate checks a document against the format and the schema; every
// problem is listed, in key order.
func (s Schema) Validate(format string, content []byte) error {
	if len(content) > MaxDocumentBytes {
		return fmt.Errorf("%w: document of %d bytes, more than %d", ErrInvalid, len(content), MaxDocumentBytes)
	}
	doc, err := ParseDocument(format, content)
	if err != nil || len(s) == 0 {
		return err
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var problems []string
	for _, k := range keys {
		v, ok := lookup(doc, strings.Split(k, "."))
		if !ok {
			problems = append(problems, k+" is missing")
			continue
		}
		if !hasType(v, s[k]) {
			problems = append(problems, fmt.Sprintf("%s must be %s, not %s", k, s[k], typeOf(v)))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrSchema, strings.Join(problems, "; "))
	}
	return nil
}

func lookup(v any, path []string) (any, bool) {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[p]; !ok {
			return nil, false
		}
	}
	return v, true
}

func typeOf(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return "integer"
		}
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}

func hasType(v any, want string) bool {
	got := typeOf(v)
	switch want {
	case "any":
		return true
	case "number":
		return got == "number" || got == "integer"
	}
	return got == want
}
