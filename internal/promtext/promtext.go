// Package promtext reads a Prometheus /metrics endpoint in the text format
// and sums samples, for the tools and tests that watch a running bridge
// (cmd/membench, the end-to-end tests). It is tooling: no library package
// may import it.
package promtext

import (
	"fmt"
	"io"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are the metric families of one scrape, by name.
type Families map[string]*dto.MetricFamily

// scrapeTimeout bounds one scrape, so a bridge that hangs cannot hang its watcher.
const scrapeTimeout = 2 * time.Second

// Scrape reads base+"/metrics" within a couple of seconds.
func Scrape(base string) (Families, error) {
	c := http.Client{Timeout: scrapeTimeout}
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", base, resp.Status)
	}
	fams, err := Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", base, err)
	}
	return fams, nil
}

// Parse reads one exposition in the text format.
func Parse(r io.Reader) (Families, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return fams, nil
}

// Sum adds up the samples of the gauge or counter name whose labels
// include want (nil matches every sample; untyped samples count too);
// found is false when none matched.
func (f Families) Sum(name string, want map[string]string) (sum float64, found bool) {
	fam, ok := f[name]
	if !ok {
		return 0, false
	}
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && labels[k] == v
		}
		if !match {
			continue
		}
		found = true
		sum += m.GetGauge().GetValue() + m.GetCounter().GetValue() + m.GetUntyped().GetValue()
	}
	return sum, found
}
