package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Profiles and key redaction are off unless asked for, and the file turns
// them on.
func TestProfilesAndKeyRedactionAreOffByDefault(t *testing.T) {
	d := Default()
	assert.False(t, d.Metrics.Pprof, "metrics.pprof defaults to off")
	assert.False(t, d.Log.RedactKeys, "log.redact_keys defaults to off")

	cfg, err := Parse([]byte(`kafka: {brokers: [b:9092], group: g}
metrics: {listen: "127.0.0.1:9464", pprof: true}
log: {redact_keys: true}
routes: [{topic: t, workflow_type: W, workflow_id: "w-{key}", task_queue: q}]`))
	require.NoError(t, err)
	assert.True(t, cfg.Metrics.Pprof)
	assert.True(t, cfg.Log.RedactKeys)
}
