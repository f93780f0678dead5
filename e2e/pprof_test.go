package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sagabridge/sagabridge/internal/devstack"
)

// pprofPaths are net/http/pprof's handlers (and two named profiles behind
// the index).
var pprofPaths = []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine", "/debug/pprof/cmdline",
	"/debug/pprof/profile?seconds=1", "/debug/pprof/symbol", "/debug/pprof/trace?seconds=1"}

// runMetricsBridge starts the bridge binary with the metrics section and
// waits until its /healthz answers on 127.0.0.1 at the listener's port.
func (e *env) runMetricsBridge(group string, metrics map[string]any, out *syncBuffer) (url string, stop func()) {
	e.t.Helper()
	listen := metrics["listen"].(string)
	port := listen[strings.LastIndex(listen, ":")+1:]
	url = "http://127.0.0.1:" + port
	p := e.startBridgeProcessWith(group, e.temporal, map[string]any{"metrics": metrics}, out)
	require.Eventually(e.t, func() bool { return httpStatus(url+"/healthz") == http.StatusOK }, 60*time.Second, 50*time.Millisecond,
		"the bridge never served /healthz on %s:\n%s", listen, lastLines(out.String(), 20))
	return url, func() { require.NoError(e.t, p.Stop(20*time.Second), "bridge output:\n%s", out.String()) }
}

// slowStatus is httpStatus for handlers that take a second (a CPU
// profile, a trace): the status of a GET of url, 0 if it failed.
func slowStatus(url string) int {
	c := http.Client{Timeout: 15 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// logLine returns the first line of out that holds text.
func logLine(out, text string) string {
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, text) {
			return line
		}
	}
	return ""
}

// The bridge binary serves Go's profiles only with metrics.pprof. On a
// wildcard address without it, /metrics and the probes answer, every
// profile is 404, and the log warns that the listener exposes every
// interface; with it on a loopback address every profile answers and
// nothing is warned; with it on a wildcard address the warning is an error
// that names the profiles.
func TestProfilesOnlyWithMetricsPprofAndWildcardListenersAreLogged(t *testing.T) {
	e := newEnv(t, 1)
	ports, err := devstack.FreePorts(3)
	require.NoError(t, err)
	const wildcard = "binds every interface"

	var out, outPprof, outLoud syncBuffer
	url, stop := e.runMetricsBridge(e.topic+"-a", map[string]any{"listen": fmt.Sprintf("0.0.0.0:%d", ports[0])}, &out)
	assert.Equal(t, http.StatusOK, httpStatus(url+"/metrics"))
	for _, p := range pprofPaths {
		assert.Equal(t, http.StatusNotFound, slowStatus(url+p), "%s without metrics.pprof", p)
	}
	warn := logLine(out.String(), wildcard)
	require.NotEmpty(t, warn, "no wildcard warning in:\n%s", out.String())
	assert.Contains(t, warn, `"level":"WARN"`)
	assert.Contains(t, warn, "metrics.listen binds every interface: it exposes /metrics, /healthz and /readyz to every network")
	assert.Contains(t, warn, `"interfaces":[`)
	assert.Contains(t, warn, `"127.0.0.1"`, "the interfaces are named")
	assert.NotContains(t, warn, "pprof")
	stop()

	url, stop = e.runMetricsBridge(e.topic+"-b", map[string]any{"listen": fmt.Sprintf("127.0.0.1:%d", ports[1]), "pprof": true}, &outPprof)
	for _, p := range pprofPaths {
		assert.Equal(t, http.StatusOK, slowStatus(url+p), "%s with metrics.pprof", p)
	}
	assert.Contains(t, httpBody(t, url+"/debug/pprof/cmdline"), "-config", "the command line is served")
	assert.Empty(t, logLine(outPprof.String(), wildcard), "a loopback listener was warned about")
	stop()

	url, stop = e.runMetricsBridge(e.topic+"-c", map[string]any{"listen": fmt.Sprintf(":%d", ports[2]), "pprof": true}, &outLoud)
	assert.Equal(t, http.StatusOK, httpStatus(url+"/debug/pprof/"))
	loud := logLine(outLoud.String(), wildcard)
	require.NotEmpty(t, loud, "no wildcard warning in:\n%s", outLoud.String())
	assert.Contains(t, loud, `"level":"ERROR"`, "profiles on every interface are logged louder")
	assert.Contains(t, loud, "/debug/pprof/")
	stop()
}
