package datapath

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Names of files and symlink targets come from tenants' volumes and may hold any byte
// but '/' and NUL: a name with an escape sequence would drive the terminal that shows
// it, one with a newline would forge lines of a listing. Whatever shows them to people
// escapes them first, as `ls -b` does.

// EscapeName is name as `ls -b` shows it: a backslash is `\\`; \a \b \t \n \v \f \r are
// themselves; other control characters, invalid UTF-8 bytes and the bytes of runes that
// print nothing or move the text (C1 controls, bidirectional overrides, zero-width
// characters, line separators: !unicode.IsGraphic) are `\xHH` each. Printable names are
// unchanged, so the escaped form of a name is unambiguous.
func EscapeName(name string) string { return escape(name, true) }

// EscapeText is EscapeName for a message that may quote names (an error, a summary): the
// same escapes, but a backslash stays as it is.
func EscapeText(text string) string { return escape(text, false) }

func escape(s string, backslash bool) string {
	clean := true
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if needsEscape(r, n) || (backslash && r == '\\') {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\\' && backslash:
			b.WriteString(`\\`)
		case !needsEscape(r, n):
			b.WriteString(s[i : i+n])
		case n == 1 && strings.IndexByte("\a\b\t\n\v\f\r", s[i]) >= 0:
			b.WriteString(`\` + string("abtnvfr"[strings.IndexByte("\a\b\t\n\v\f\r", s[i])]))
		default:
			for j := i; j < i+n; j++ {
				fmt.Fprintf(&b, `\x%02x`, s[j])
			}
		}
		i += n
	}
	return b.String()
}

// needsEscape: r, decoded from n bytes, is invalid UTF-8 or does not print as itself.
func needsEscape(r rune, n int) bool {
	if r == utf8.RuneError && n == 1 {
		return true
	}
	return r != ' ' && !unicode.IsGraphic(r)
}
