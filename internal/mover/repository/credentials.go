package repository

import (
	"bufio"
	"bytes"
	"strings"

	"github.com/pkg/errors"
)

// awsProfile returns the keys of one profile of an AWS shared credentials or config file
// (INI). Velero hands the same file to the SDK as both, so a section may be written
// "[name]" or "[profile name]". Key names are lower-cased; values are trimmed.
func awsProfile(file []byte, profile string) (map[string]string, error) {
	var (
		keys    map[string]string
		current string
		found   bool
	)
	sc := bufio.NewScanner(bytes.NewReader(file))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' || text[0] == ';' {
			continue
		}
		if text[0] == '[' {
			if !strings.HasSuffix(text, "]") {
				return nil, errors.Errorf("line %d: malformed section header", line)
			}
			current = strings.TrimSpace(text[1 : len(text)-1])
			current = strings.TrimSpace(strings.TrimPrefix(current, "profile "))
			if current == profile && !found {
				found, keys = true, map[string]string{}
			}
			continue
		}
		if current != profile || keys == nil {
			continue
		}
		k, v, ok := strings.Cut(text, "=")
		if !ok {
			// continuation lines (nested s3 = ... settings) carry nothing we read
			continue
		}
		keys[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	if err := sc.Err(); err != nil {
		return nil, errors.Wrap(err, "reading credentials file")
	}
	if !found {
		return nil, errors.Errorf("profile %q not found", profile)
	}
	return keys, nil
}

// parseDotenv reads KEY=VALUE lines (the Azure credentials file Velero reads with
// godotenv): blank lines and # comments are skipped, an "export " prefix is allowed and
// values may be single- or double-quoted.
func parseDotenv(file []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(file))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		text = strings.TrimPrefix(text, "export ")
		k, v, ok := strings.Cut(text, "=")
		if !ok {
			return nil, errors.Errorf("line %d: expected KEY=VALUE", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		} else if i := strings.Index(v, " #"); i >= 0 {
			v = strings.TrimSpace(v[:i])
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, errors.Wrap(err, "reading credentials file")
	}
	return out, nil
}
