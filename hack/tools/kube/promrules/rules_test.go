package promrules

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
	"github.com/stretchr/testify/require"
	yamlv3 "go.yaml.in/yaml/v3"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// ruleTests is promtool's test file format (`promtool test rules`), the parts used here.
type ruleTests struct {
	Tests []struct {
		Name        string `yaml:"name"`
		Interval    string `yaml:"interval"`
		InputSeries []struct {
			Series string `yaml:"series"`
			Values string `yaml:"values"`
		} `yaml:"input_series"`
		AlertRuleTests []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// alertRules reads the rule groups of the PrometheusRule in examples/monitoring.yaml.
func alertRules(t *testing.T) []rulefmt.Rule {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "examples", "monitoring.yaml"))
	require.NoError(t, err)
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		var obj struct {
			Kind string         `yaml:"kind"`
			Spec map[string]any `yaml:"spec"`
		}
		require.NoError(t, yamlv3.Unmarshal(doc, &obj))
		if obj.Kind != "PrometheusRule" {
			continue
		}
		groups, err := yamlv3.Marshal(obj.Spec)
		require.NoError(t, err)
		rgs, errs := rulefmt.Parse(groups, false, model.UTF8Validation, parser.NewParser(parser.Options{}), nil)
		require.Empty(t, errs, "the rules pass promtool's checks")
		var out []rulefmt.Rule
		for _, g := range rgs.Groups {
			out = append(out, g.Rules...)
		}
		return out
	}
	t.Fatal("examples/monitoring.yaml has no PrometheusRule")
	return nil
}

func TestAlertRules(t *testing.T) {
	all := alertRules(t)
	b, err := os.ReadFile(filepath.Join("testdata", "rules_test.yaml"))
	require.NoError(t, err)
	var file ruleTests
	require.NoError(t, yamlv3.Unmarshal(b, &file))

	tested := map[string]bool{}
	for _, tc := range file.Tests {
		t.Run(tc.Name, func(t *testing.T) {
			interval := mustDuration(t, tc.Interval)
			var load strings.Builder
			fmt.Fprintf(&load, "load %s\n", tc.Interval)
			for _, s := range tc.InputSeries {
				fmt.Fprintf(&load, "  %s %s\n", s.Series, s.Values)
			}
			storage := promqltest.LoadedStorage(t, load.String())
			engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
			query := rules.EngineQueryFunc(engine, storage)

			// every rule, evaluated once an interval up to the last eval_time, as Prometheus does
			p := parser.NewParser(parser.Options{})
			byName := map[string]*rules.AlertingRule{}
			var end time.Duration
			for _, at := range tc.AlertRuleTests {
				end = max(end, mustDuration(t, at.EvalTime))
			}
			checks := map[time.Duration][]int{}
			for i, at := range tc.AlertRuleTests {
				d := mustDuration(t, at.EvalTime)
				checks[d] = append(checks[d], i)
				tested[at.Alertname] = true
			}
			for _, r := range all {
				expr, err := p.ParseExpr(r.Expr)
				require.NoError(t, err, r.Alert)
				byName[r.Alert] = rules.NewAlertingRule(r.Alert, expr, time.Duration(r.For), time.Duration(r.KeepFiringFor),
					labels.FromMap(r.Labels), labels.FromMap(r.Annotations), labels.EmptyLabels(), "", true, nil)
			}
			for ts := time.Duration(0); ts <= end; ts += interval {
				for _, r := range byName {
					_, err := r.Eval(context.Background(), 0, time.Unix(0, 0).UTC().Add(ts), query, nil, 0)
					require.NoError(t, err, r.Name())
				}
				for _, i := range checks[ts] {
					at := tc.AlertRuleTests[i]
					r, ok := byName[at.Alertname]
					require.True(t, ok, "no rule %s", at.Alertname)
					var got, want []string
					for _, a := range r.ActiveAlerts() {
						if a.State == rules.StateFiring {
							got = append(got, a.Labels.String()+" "+a.Annotations.String())
						}
					}
					for _, e := range at.ExpAlerts {
						l := map[string]string{"alertname": at.Alertname}
						for k, v := range r.Labels().Map() {
							l[k] = v
						}
						for k, v := range e.ExpLabels {
							l[k] = v
						}
						want = append(want, labels.FromMap(l).String()+" "+labels.FromMap(e.ExpAnnotations).String())
					}
					sort.Strings(got)
					sort.Strings(want)
					require.Equal(t, want, got, "%s at %s", at.Alertname, at.EvalTime)
				}
			}
		})
	}
	var untested []string
	for _, r := range all {
		if !tested[r.Alert] {
			untested = append(untested, r.Alert)
		}
	}
	slices.Sort(untested)
	require.Empty(t, untested, "every alert has a test in testdata/rules_test.yaml")
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := model.ParseDuration(s)
	require.NoError(t, err)
	return time.Duration(d)
}
