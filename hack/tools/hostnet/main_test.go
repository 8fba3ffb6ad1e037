package main

import (
	"encoding/json"
	"sort"
	"testing"
)

func TestPatch(t *testing.T) {
	tests := []struct {
		name string
		pod  string
		want []string // "op path value", sorted
	}{
		{
			name: "host network already",
			pod:  `{"spec":{"hostNetwork":true,"containers":[{"ports":[{"containerPort":8085}]}]}}`,
		},
		{
			name: "no ports",
			pod:  `{"spec":{"containers":[{"name":"a"}]}}`,
			want: []string{"add /spec/hostNetwork true"},
		},
		{
			name: "ports dropped, named probe ports numbered",
			pod: `{"spec":{"containers":[{"ports":[{"name":"http-monitoring","containerPort":8085}],
				"livenessProbe":{"httpGet":{"path":"/metrics","port":"http-monitoring"}},
				"readinessProbe":{"tcpSocket":{"port":8085}},
				"startupProbe":{"httpGet":{"port":"9090"}}}],
				"initContainers":[{"ports":[{"containerPort":1}]}]}}`,
			want: []string{
				"add /spec/hostNetwork true",
				"remove /spec/containers/0/ports <nil>",
				"remove /spec/initContainers/0/ports <nil>",
				"replace /spec/containers/0/livenessProbe/httpGet/port 8085",
				"replace /spec/containers/0/startupProbe/httpGet/port 9090",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p pod
			if err := json.Unmarshal([]byte(tt.pod), &p); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range patch(p) {
				v, _ := json.Marshal(o.Value)
				s := string(v)
				if o.Value == nil {
					s = "<nil>"
				}
				got = append(got, o.Op+" "+o.Path+" "+s)
			}
			sort.Strings(got)
			sort.Strings(tt.want)
			if len(got) != len(tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %q, want %q", got, tt.want)
				}
			}
		})
	}
}
