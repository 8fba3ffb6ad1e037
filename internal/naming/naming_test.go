package naming

import (
	"strings"
	"testing"
)

func TestOperationIDs(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"upload short", UploadOperationID("b", "p"), "du-b.p"},
		{"download short", DownloadOperationID("r", "p"), "dd-r.p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
	long := UploadOperationID("0f6c3a3e-9c1c-4d55-8a6b-0d0e5b0c1a11", "6a5c7b7e-3b2d-4f1e-9a8b-7c6d5e4f3a21")
	if len(long) > 63 || !strings.HasPrefix(long, "du-0f6c3a3e") {
		t.Fatalf("operation ID %q is not a valid label value", long)
	}
}

func TestMovementEnded(t *testing.T) {
	for phase, want := range map[string]bool{
		"": false, "New": false, "Accepted": false, "Prepared": false, "InProgress": false, "Canceling": false,
		"Completed": true, "Failed": true, "Canceled": true,
	} {
		if got := MovementEnded(phase); got != want {
			t.Errorf("MovementEnded(%q) = %v, want %v", phase, got, want)
		}
	}
}
