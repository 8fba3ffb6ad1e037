// Package promrules holds the unit tests of snapmove's Prometheus alert rules (the
// PrometheusRule of charts/snapmove, rendered as examples/monitoring.yaml), in promtool's
// manner: series given in promtool's notation are loaded into Prometheus's own test storage,
// every rule is evaluated by Prometheus's own rule code once a minute, and the alerts firing
// at given times, with their labels and expanded annotations, must be exactly the expected
// ones. It lives in hack/tools/kube, beside helm, because Prometheus's modules need k8s.io
// modules newer than snapmove's.
package promrules
