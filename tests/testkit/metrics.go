package testkit

import (
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// MetricValue returns the value of the series of name in g whose labels
// include the given name/value pairs: a counter's or gauge's value, a
// histogram's sample count. A missing series fails the test (naming the
// series g has), so that a renamed metric or label cannot pass as a 0.
func MetricValue(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	v, ok, have := metricValue(t, g, name, labels)
	if !ok {
		t.Fatalf("no series %s%v in the registry; it has: %s", name, labels, strings.Join(have, ", "))
	}
	return v
}

// MetricValueOK is MetricValue for a series that may not exist yet (a
// counter with labels appears at its first increment): ok is false when it
// does not.
func MetricValueOK(t testing.TB, g prometheus.Gatherer, name string, labels ...string) (v float64, ok bool) {
	t.Helper()
	v, ok, _ = metricValue(t, g, name, labels)
	return v, ok
}

func metricValue(t testing.TB, g prometheus.Gatherer, name string, labels []string) (float64, bool, []string) {
	t.Helper()
	if len(labels)%2 != 0 {
		t.Fatalf("MetricValue(%s): labels %v are not name/value pairs", name, labels)
	}
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var have []string
	for _, mf := range mfs {
		if mf.GetName() != name {
			if strings.HasPrefix(mf.GetName(), "electric_socket_") {
				have = append(have, mf.GetName())
			}
			continue
		}
	series:
		for _, s := range mf.GetMetric() {
			got := map[string]string{}
			var pairs []string
			for _, l := range s.GetLabel() {
				got[l.GetName()] = l.GetValue()
				pairs = append(pairs, l.GetName()+"="+l.GetValue())
			}
			have = append(have, name+"{"+strings.Join(pairs, ",")+"}")
			for i := 0; i+1 < len(labels); i += 2 {
				if v, ok := got[labels[i]]; !ok || v != labels[i+1] {
					continue series
				}
			}
			switch {
			case s.Counter != nil:
				return s.GetCounter().GetValue(), true, nil
			case s.Gauge != nil:
				return s.GetGauge().GetValue(), true, nil
			case s.Histogram != nil:
				return float64(s.GetHistogram().GetSampleCount()), true, nil
			}
		}
	}
	slices.Sort(have)
	return 0, false, have
}
