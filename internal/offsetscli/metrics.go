package offsetscli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The bridge's metric that says, per claimed partition, whether and why it
// is paused: 1 with the reason for a paused one, 0 with reason "" for the
// others (bridge/metrics.go).
const pausedMetric = "sagabridge_partition_paused"

// scrapeTimeout bounds one scrape, so a bridge that hangs cannot hang show.
const scrapeTimeout = 5 * time.Second

// pauseState is what the scraped bridges say about one partition.
type pauseState struct {
	// Reason is why it is paused, "" when it is not.
	Reason string
	// From is the metrics URL of the bridge that claims it.
	From string
}

// metricsURL turns a -metrics value into the URL to scrape: a base such
// as http://10.0.0.5:9464 gets /metrics appended.
func metricsURL(s string) (string, error) {
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		return "", fmt.Errorf("-metrics %q: give an http:// or https:// URL of a bridge's metrics.listen address", s)
	}
	s = strings.TrimRight(s, "/")
	if !strings.HasSuffix(s, "/metrics") {
		s += "/metrics"
	}
	return s, nil
}

// pauses scrapes each bridge's /metrics and merges what they say per
// partition. A bridge that cannot be read is an error in errs; the others
// are still used.
func pauses(ctx context.Context, urls []string) (map[tp]pauseState, error) {
	out := map[tp]pauseState{}
	var errs []error
	for _, u := range urls {
		fams, err := scrape(ctx, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for k, reason := range pausedPartitions(fams) {
			if prev, ok := out[k]; ok && prev.Reason != "" && reason == "" {
				continue // another bridge still holds it paused
			}
			out[k] = pauseState{Reason: reason, From: u}
		}
	}
	return out, errors.Join(errs...)
}

// pausedPartitions reads sagabridge_partition_paused: every partition the
// bridge claims, with its pause reason ("" when not paused). Several
// reasons for one partition (a bridge exports one) are joined.
func pausedPartitions(fams map[string]*dto.MetricFamily) map[tp]string {
	out := map[tp]string{}
	fam, ok := fams[pausedMetric]
	if !ok {
		return out
	}
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		p, err := strconv.ParseInt(labels["partition"], 10, 32)
		if err != nil || labels["topic"] == "" {
			continue
		}
		k := tp{labels["topic"], int32(p)}
		reason := ""
		if m.GetGauge().GetValue() != 0 {
			reason = labels["reason"]
		}
		switch prev := out[k]; {
		case prev == "":
			out[k] = reason
		case reason != "" && reason != prev:
			out[k] = prev + "," + reason
		}
	}
	return out
}

// scrape reads one /metrics in the Prometheus text format.
func scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("-metrics %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("-metrics %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("-metrics %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("-metrics %s: not Prometheus text: %w", url, err)
	}
	return fams, nil
}
