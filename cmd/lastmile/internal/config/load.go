package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every environment variable the server reads.
const EnvPrefix = "LASTMILE_"

// EnvConfigPath names the configuration file when --config is not given.
// It is not a key of the file, so it is exempt from the unknown-variable check.
const EnvConfigPath = EnvPrefix + "CONFIG"

// ErrUnknownKey is returned for a file key or LASTMILE_ variable that names
// no configuration key: a typo must not silently fall back to a default.
var ErrUnknownKey = errors.New("unknown configuration key")

// Load returns Default() overlaid with the file at path ("" for none) and
// then with the environment (os.Environ). It does not Validate.
func Load(path string) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("read configuration: %w", err)
		}
		if err := Parse(data, &cfg); err != nil {
			return Config{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := ApplyEnv(&cfg, os.Environ()); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

var (
	yamlFieldNotFound = regexp.MustCompile(`line (\d+): field (\S+) not found in type \S+`)
	yamlLine          = regexp.MustCompile(`line (\d+): `)
)

// Parse decodes YAML into cfg, which holds the values keys default to.
// Unknown keys and values of the wrong type are errors naming the key path
// and its line.
func Parse(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(cfg)
	if errors.Is(err, io.EOF) {
		return nil // an empty file configures nothing
	}
	if err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return fmt.Errorf("parse configuration: %w", err)
		}
		paths := keyLines(data)
		var msgs []string
		unknown := false
		for _, m := range te.Errors {
			if sm := yamlFieldNotFound.FindStringSubmatch(m); sm != nil {
				unknown = true
				m = fmt.Sprintf("line %s: unknown key %q", sm[1], sm[2])
			}
			if sm := yamlLine.FindStringSubmatch(m); sm != nil {
				if n, err := strconv.Atoi(sm[1]); err == nil && paths[n] != "" {
					m += " (key " + paths[n] + ")"
				}
			}
			msgs = append(msgs, m)
		}
		if unknown {
			return fmt.Errorf("%w: %s", ErrUnknownKey, strings.Join(msgs, "; "))
		}
		return fmt.Errorf("parse configuration: %s", strings.Join(msgs, "; "))
	}
	// A second document is almost certainly a mistake (a stray "---").
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("parse configuration: more than one YAML document")
	}
	return nil
}

// keyLines maps each line that holds a mapping key or value to its dotted
// key path, so decode errors (which know only a line) can name the key.
func keyLines(data []byte) map[int]string {
	out := map[int]string{}
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return out
	}
	ambiguous := map[int]bool{}
	// note records path for line unless another key shares the line (flow
	// style), where naming one would mislead.
	note := func(line int, path string) {
		if prev, ok := out[line]; ok && prev != path && !strings.HasPrefix(path, prev+".") {
			ambiguous[line] = true
		}
		out[line] = path
	}
	var walk func(n *yaml.Node, path string, depth int)
	walk = func(n *yaml.Node, path string, depth int) {
		if depth > 64 {
			return
		}
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for i, c := range n.Content {
				p := path
				if n.Kind == yaml.SequenceNode {
					p = fmt.Sprintf("%s[%d]", path, i)
				}
				walk(c, p, depth+1)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if v.Kind == yaml.ScalarNode {
					note(v.Line, p)
				} else {
					note(k.Line, p)
				}
				walk(v, p, depth+1)
			}
		}
	}
	walk(&root, "", 0)
	for l := range ambiguous {
		delete(out, l)
	}
	return out
}

// field is one scalar configuration key.
type field struct {
	key   string // "mqtt.tcp_addr"
	index []int  // reflect field index path from Config
}

// fields lists every scalar key of Config; slices (access.roles) are file-only.
var fields = func() []field {
	var out []field
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if tag == "" || tag == "-" {
				continue
			}
			idx := append(slices.Clone(index), i)
			key := prefix + tag
			switch {
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, key+".", idx)
			case f.Type.Kind() == reflect.Slice:
				// not settable from a flat string
			default:
				out = append(out, field{key: key, index: idx})
			}
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}()

// EnvName returns the environment variable that sets key.
func EnvName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Keys returns every scalar key, for documentation and tests.
func Keys() []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.key
	}
	return out
}

// ApplyEnv sets the keys named by LASTMILE_* variables in environ
// ("NAME=value" strings). A LASTMILE_ variable that names no key is an error.
func ApplyEnv(cfg *Config, environ []string) error {
	byEnv := make(map[string]string, len(fields))
	for _, f := range fields {
		byEnv[EnvName(f.key)] = f.key
	}
	var errs []error
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || name == EnvConfigPath {
			continue
		}
		key, ok := byEnv[name]
		if !ok {
			errs = append(errs, fmt.Errorf("environment variable %s: %w", name, ErrUnknownKey))
			continue
		}
		if err := cfg.Set(key, value); err != nil {
			errs = append(errs, fmt.Errorf("environment variable %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Set sets one scalar key ("mqtt.tcp_addr") from its string form, as flags
// and environment variables give it.
func (c *Config) Set(key, value string) error {
	for _, f := range fields {
		if f.key != key {
			continue
		}
		v := reflect.ValueOf(c).Elem().FieldByIndex(f.index)
		if err := setScalar(v, value); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	}
	return fmt.Errorf("%q: %w", key, ErrUnknownKey)
}

func setScalar(v reflect.Value, s string) error {
	if v.Type() == reflect.TypeFor[time.Duration]() {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration like 30s or 168h", s)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not an integer in range", s)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a non-negative integer in range", s)
		}
		v.SetUint(n)
	case reflect.Float64:
		n, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		v.SetFloat(n)
	default:
		return fmt.Errorf("cannot be set from a string (type %s)", v.Type())
	}
	return nil
}
