package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/ledger"
	"github.com/sagabridge/sagabridge/internal/promtext"
)

var metricName = regexp.MustCompile(`\b((?:sagabridge|process|go)_[a-z_]+)\b`)

// dashboardPanel is a panel of the Grafana dashboard: its title and queries.
type dashboardPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// dashboardPanels reads the Grafana dashboard's panels.
func dashboardPanels(t *testing.T) []dashboardPanel {
	t.Helper()
	data, err := os.ReadFile("../deploy/grafana/sagabridge-bridge.json")
	require.NoError(t, err)
	var dash struct {
		Panels []dashboardPanel `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(data, &dash), "the dashboard is not valid JSON")
	require.NotEmpty(t, dash.Panels)
	return dash.Panels
}

// dashboardMetrics returns every metric name the Grafana dashboard queries.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	dash := struct{ Panels []dashboardPanel }{dashboardPanels(t)}
	seen := map[string]bool{}
	var names []string
	for _, p := range dash.Panels {
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				if !seen[m] {
					seen[m] = true
					names = append(names, m)
				}
			}
		}
	}
	return names
}

// The dashboard's queries read right on a deployment of several members
// scraped by pod annotations at Prometheus' default one-minute interval:
// rates span at least 5 minutes (a 1-minute window often holds one sample,
// and the panel went blank), a metric every process exports (memory) is
// kept to the bridges' series (with annotation scraping every pod has the
// same job label: the panel showed every pod of the cluster), and a budget
// drawn beside a sum over the members is summed too (it was one member's:
// two members at half their budget showed as the budget reached).
func TestGrafanaDashboardQueriesReadAcrossMembers(t *testing.T) {
	window := regexp.MustCompile(`\[([^\]]+)\]`)
	for _, p := range dashboardPanels(t) {
		var held, budget string
		for _, tg := range p.Targets {
			for _, w := range window.FindAllStringSubmatch(tg.Expr, -1) {
				assert.Contains(t, []string{"5m", "15m", "1h", "$__rate_interval"}, w[1], "panel %q: rate window %s", p.Title, w[0])
			}
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				if !strings.HasPrefix(m, "sagabridge_") {
					assert.Contains(t, tg.Expr, " and on(job, instance) sagabridge_", "panel %q: %s is not kept to the bridges", p.Title, m)
				}
			}
			switch {
			case strings.Contains(tg.Expr, "_max_"):
				budget = tg.Expr
			case strings.Contains(tg.Expr, "in_flight"):
				held = tg.Expr
			}
		}
		if budget != "" {
			agg := func(expr string) string { op, _, _ := strings.Cut(expr, "("); return op }
			assert.Equal(t, agg(held), agg(budget), "panel %q: %s beside %s", p.Title, budget, held)
		}
	}
}

// Every metric the dashboard in deploy/grafana queries is served by a
// running bridge that has delivered records.
func TestGrafanaDashboardMetricsExistOnARunningBridge(t *testing.T) {
	names := dashboardMetrics(t)
	e := newEnv(t, 2)
	b, stop := e.runBridge(e.topic)
	defer stop()
	at := e.produceLedger(ledger.Stream(e.id+"-", 10, 200, 1.1, 81))
	e.assertLedgers(at, time.Minute)
	srv := httptest.NewServer(b.Handler())
	defer srv.Close()

	var fams promtext.Families
	missing := func() []string {
		fams = scrape(srv.URL)
		var out []string
		for _, n := range names {
			if !served(fams, n) {
				out = append(out, n)
			}
		}
		return out
	}
	// The task-queue backlog is read every 2 s; give it a few rounds.
	require.Eventually(t, func() bool { return len(missing()) == 0 }, 20*time.Second, 500*time.Millisecond,
		"metrics the dashboard queries but the bridge does not serve: %v", missing())
	t.Logf("the dashboard's %d metrics are all served", len(names))

	// And every sagabridge metric it serves is documented in the README
	// in full: on the README before this check, 14 were not (7 abbreviated,
	// 7 not at all).
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	documented := map[string]bool{}
	for _, m := range readmeMetric.FindAllStringSubmatch(string(readme), -1) {
		documented[m[1]] = true
	}
	var undocumented []string
	for name := range fams {
		if strings.HasPrefix(name, "sagabridge_") && !documented[name] {
			undocumented = append(undocumented, name)
		}
	}
	slices.Sort(undocumented)
	assert.Empty(t, undocumented, "metrics the bridge serves that README.md does not name in full")
}

// readmeMetric is a metric named in full in the README's Markdown: in
// backticks, alone or with its labels.
var readmeMetric = regexp.MustCompile("`(sagabridge_[a-z_]+)[`{]")

// served reports whether name is a family in fams, or a histogram's
// _bucket, _sum or _count series.
func served(fams promtext.Families, name string) bool {
	if _, ok := fams[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f, ok := fams[base]; ok && f.GetType() == dto.MetricType_HISTOGRAM {
				return true
			}
		}
	}
	return false
}

// k8sObject is the part of a Kubernetes object the checks below read.
type k8sObject struct {
	Kind     string                `yaml:"kind"`
	Metadata struct{ Name string } `yaml:"metadata"`
	Data     map[string]string     `yaml:"data"`
	Spec     struct {
		Template struct {
			Spec struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
					RunAsUser    *int `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				Containers []struct {
					Name  string   `yaml:"name"`
					Args  []string `yaml:"args"`
					Ports []struct {
						Name          string `yaml:"name"`
						ContainerPort int    `yaml:"containerPort"`
					} `yaml:"ports"`
					Env []struct {
						Name string `yaml:"name"`
					} `yaml:"env"`
					LivenessProbe  k8sProbe `yaml:"livenessProbe"`
					ReadinessProbe k8sProbe `yaml:"readinessProbe"`
					Resources      struct {
						Limits map[string]string `yaml:"limits"`
					} `yaml:"resources"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// k8sProbe is an HTTP probe.
type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

func readManifests(t *testing.T, path string) []k8sObject {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var objs []k8sObject
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs
		}
		require.NoError(t, err, "%s is not valid YAML", path)
		objs = append(objs, o)
	}
}

// mebibytes parses a Kubernetes memory quantity in Mi or Gi.
func mebibytes(t *testing.T, q string) int64 {
	t.Helper()
	for suffix, mult := range map[string]int64{"Mi": 1, "Gi": 1024} {
		if n, ok := strings.CutSuffix(q, suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			require.NoError(t, err, "memory quantity %q", q)
			return v * mult
		}
	}
	t.Fatalf("memory quantity %q: want Mi or Gi", q)
	return 0
}

// The bridge's manifests hold a configuration the bridge accepts, and the
// Deployment agrees with it: SIGTERM grace longer than the drain, probes on
// /healthz and /readyz at metrics.listen's port (which the Service exposes,
// so Go's profiles are off), the password from the environment variable
// the config names, and a memory limit with room above the soft limit the
// bridge sets.
func TestKubernetesManifestsMatchTheBridgeConfig(t *testing.T) {
	objs := readManifests(t, "../deploy/k8s/bridge.yaml")
	var cm, dep *k8sObject
	for i := range objs {
		switch objs[i].Kind {
		case "ConfigMap":
			cm = &objs[i]
		case "Deployment":
			dep = &objs[i]
		}
	}
	require.NotNil(t, cm, "bridge.yaml has no ConfigMap")
	require.NotNil(t, dep, "bridge.yaml has no Deployment")

	caFile := newPKI(t).caFile // the CA path in the ConfigMap exists only in the pod
	t.Setenv("KAFKA_SASL_PASSWORD", "from-the-secret")
	cfg, err := config.Parse([]byte(cm.Data["bridge.yaml"]), func(c *config.Config) { c.Kafka.TLS.CAFile = caFile })
	require.NoError(t, err, "the ConfigMap's bridge.yaml")

	pod := dep.Spec.Template.Spec
	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	assert.Greater(t, time.Duration(pod.TerminationGracePeriodSeconds)*time.Second, cfg.Dispatch.DrainTimeout+5*time.Second,
		"terminationGracePeriodSeconds must outlast dispatch.drain_timeout with room for the final commit")
	_, port, err := net.SplitHostPort(cfg.Metrics.Listen)
	require.NoError(t, err)
	require.Len(t, c.Ports, 1)
	assert.Equal(t, port, strconv.Itoa(c.Ports[0].ContainerPort), "the container port is metrics.listen's")
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, c.Ports[0].Name, c.LivenessProbe.HTTPGet.Port)
	assert.False(t, cfg.Metrics.Pprof, "metrics.pprof is off: the metrics port is a Service's")
	assert.Contains(t, c.Args, "/etc/sagabridge/bridge.yaml")
	var env []string
	for _, e := range c.Env {
		env = append(env, e.Name)
	}
	assert.Contains(t, env, cfg.Kafka.SASL.PasswordEnv, "the password's environment variable is set from a Secret")
	limit := mebibytes(t, c.Resources.Limits["memory"])
	assert.GreaterOrEqual(t, limit, 2*cfg.Memory.SoftLimit>>20, "a memory limit with room above memory.soft_limit")
	assert.GreaterOrEqual(t, limit, int64(64), "at least the measured bound (RSS 53-61 MiB at the default budget)")

	assert.Equal(t, c.Ports[0].Name, c.ReadinessProbe.HTTPGet.Port)

	workers := readManifests(t, "../deploy/k8s/worker.yaml")
	require.Len(t, workers, 1)
	require.Equal(t, "Deployment", workers[0].Kind)
	wc := workers[0].Spec.Template.Spec.Containers
	require.Len(t, wc, 1)
	assert.Contains(t, wc[0].Args, "-workflow-pollers=16", "16 workflow-task pollers (the SDK's 2 halve fan-out throughput)")
	assert.Contains(t, wc[0].Args, "-config=/etc/sagabridge/bridge.yaml", "the worker shares the bridge's connection settings")
	var wenv []string
	for _, e := range wc[0].Env {
		wenv = append(wenv, e.Name)
	}
	assert.Contains(t, wenv, cfg.Kafka.SASL.PasswordEnv, "the worker gets the SASL password too")
}

// The pods run as non-root (runAsNonRoot), and the kubelet can check that
// only against a numeric user: an image whose USER is a name (distroless's
// "nonroot") fails to start with CreateContainerConfigError ("image has
// non-numeric user (nonroot), cannot verify user is non-root") unless the
// pod sets runAsUser. No container engine runs here, so the Dockerfile's
// USER is read and checked against the manifests.
func TestTheImagesUserSatisfiesTheManifestsRunAsNonRoot(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	require.NoError(t, err)
	user := ""
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) == 2 && strings.EqualFold(f[0], "USER") {
			user = f[1] // the last USER of the last stage is the image's
		}
	}
	require.NotEmpty(t, user, "the Dockerfile sets no USER: the image would run as root")
	uid, _, _ := strings.Cut(user, ":")
	n, numeric := strconv.Atoi(uid)
	for _, path := range []string{"../deploy/k8s/bridge.yaml", "../deploy/k8s/worker.yaml"} {
		for _, o := range readManifests(t, path) {
			sc := o.Spec.Template.Spec.SecurityContext
			if o.Kind != "Deployment" || !sc.RunAsNonRoot || sc.RunAsUser != nil {
				continue
			}
			if assert.NoError(t, numeric, "%s: %s runs as non-root without runAsUser, so the image's USER %q must be numeric", path, o.Metadata.Name, user) {
				assert.NotZero(t, n, "%s: the image's USER is root", path)
			}
		}
	}
}
