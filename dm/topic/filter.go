package topic

import "strings"

// SharePrefix starts a shared subscription filter: $share/{group}/{filter}.
const SharePrefix = "$share/"

// ValidTopic reports whether name is a valid topic name to publish to:
// non-empty, no wildcards, no NUL (MQTT 3.1.1 §4.7, 5.0 §4.7).
func ValidTopic(name string) bool {
	return name != "" && !strings.ContainsAny(name, "+#\x00") && len(name) <= 65535
}

// ValidFilter reports whether filter is a valid topic filter: '#' only as
// the whole last level, '+' only as a whole level, no NUL.
func ValidFilter(filter string) bool {
	if filter == "" || len(filter) > 65535 || strings.ContainsRune(filter, 0) {
		return false
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		switch {
		case l == "#":
			if i != len(levels)-1 {
				return false
			}
		case l == "+":
		case strings.ContainsAny(l, "+#"):
			return false
		}
	}
	return true
}

// SplitShared returns the group and the inner filter of a shared
// subscription, and ok=false for an ordinary filter.
func SplitShared(filter string) (group, inner string, ok bool) {
	rest, found := strings.CutPrefix(filter, SharePrefix)
	if !found {
		return "", filter, false
	}
	group, inner, found = strings.Cut(rest, "/")
	if !found || group == "" || inner == "" {
		return "", filter, false
	}
	return group, inner, true
}

// Match reports whether topic name matches filter, with MQTT semantics: a
// filter starting with a wildcard never matches a topic starting with '$'.
func Match(filter, name string) bool {
	if strings.HasPrefix(name, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(filter, "/")
		if fl == "#" {
			return true
		}
		nl, nrest, nmore := strings.Cut(name, "/")
		if fl != "+" && fl != nl {
			return false
		}
		if !fmore || !nmore {
			// "a/#" also matches "a" (the parent level).
			return fmore == nmore || (!nmore && frest == "#")
		}
		filter, name = frest, nrest
	}
}

// Covers reports whether every topic that filter can match is also matched
// by pattern. It decides whether a rule allowing pattern allows a
// subscription to filter.
func Covers(pattern, filter string) bool {
	if strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#") {
		// filter matches no '$' topics; pattern need not either.
	} else if strings.HasPrefix(filter, "$") && (strings.HasPrefix(pattern, "+") || strings.HasPrefix(pattern, "#")) {
		return false
	}
	for {
		pl, prest, pmore := strings.Cut(pattern, "/")
		if pl == "#" {
			return true
		}
		fl, frest, fmore := strings.Cut(filter, "/")
		switch {
		case fl == "#":
			return false // filter reaches deeper than pattern can
		case pl == "+":
		case fl == "+" || pl != fl:
			return false
		}
		if !pmore || !fmore {
			if !fmore && pmore && prest == "#" {
				return true
			}
			return pmore == fmore
		}
		pattern, filter = prest, frest
	}
}

// Overlaps reports whether some topic is matched by both filters. It decides
// whether a deny rule touches a subscription.
func Overlaps(a, b string) bool {
	if strings.HasPrefix(a, "$") != strings.HasPrefix(b, "$") {
		// A '$' literal level only meets a wildcard filter, which never
		// matches '$' topics.
		return false
	}
	for {
		al, arest, amore := strings.Cut(a, "/")
		bl, brest, bmore := strings.Cut(b, "/")
		if al == "#" || bl == "#" {
			return true
		}
		if al != "+" && bl != "+" && al != bl {
			return false
		}
		if !amore || !bmore {
			if amore {
				return arest == "#"
			}
			if bmore {
				return brest == "#"
			}
			return true
		}
		a, b = arest, brest
	}
}
