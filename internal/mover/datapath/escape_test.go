package datapath

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEscapeName(t *testing.T) {
	for _, tc := range []struct{ in, name, text string }{
		{"plain.txt", "plain.txt", "plain.txt"},
		{"with space, ümlaut and 日本", "with space, ümlaut and 日本", "with space, ümlaut and 日本"},
		{"a\nb\tc\r", `a\nb\tc\r`, `a\nb\tc\r`},
		{"\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`, `\x1b[31mred\x1b[0m`},
		{"back\\slash", `back\\slash`, `back\slash`},
		{"latin1 \xe9t\xe9", `latin1 \xe9t\xe9`, `latin1 \xe9t\xe9`},
		{"del\x7f c1\u0085 rlo\u202etxt.exe zw\u200b", `del\x7f c1\xc2\x85 rlo\xe2\x80\xaetxt.exe zw\xe2\x80\x8b`, `del\x7f c1\xc2\x85 rlo\xe2\x80\xaetxt.exe zw\xe2\x80\x8b`},
	} {
		require.Equal(t, tc.name, EscapeName(tc.in), "%q", tc.in)
		require.Equal(t, tc.text, EscapeText(tc.in), "%q", tc.in)
	}
}
