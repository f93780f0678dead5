package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRouteSettingsLoadWithTheirDefaultsAndTypes(t *testing.T) {
	cfg, err := Parse([]byte(`kafka: {brokers: [b:9092], group: g}
dispatch: {concurrency: 16}
routes:
  - {topic: a, workflow_type: W, workflow_id: "a-{key}", task_queue: qa}
  - topic: b
    name: payments
    workflow_type: W
    workflow_id: "b-{key}"
    task_queue: qb
    concurrency: 4
    run_timeout: 1h
    execution_timeout: 24h
    memo: {team: billing, tier: 2}
    search_attributes:
      CustomerTier: {type: keyword, value: gold}
      Priority: {type: int, value: 3}
      Score: {type: double, value: 1}
      Since: {type: datetime, value: "2026-01-02T03:04:05Z"}
      Tags: {type: keyword_list, value: [a, b]}
`))
	require.NoError(t, err)
	assert.Equal(t, 16, cfg.Routes[0].Concurrency, "a route may use every worker by default")
	r := cfg.Routes[1]
	assert.Equal(t, "payments", r.Name)
	assert.Equal(t, 4, r.Concurrency)
	assert.Equal(t, time.Hour, r.RunTimeout)
	assert.Equal(t, 24*time.Hour, r.ExecutionTimeout)
	assert.Equal(t, map[string]any{"team": "billing", "tier": 2}, r.Memo)
	for name, want := range map[string]any{
		"CustomerTier": "gold", "Priority": int64(3), "Score": 1.0,
		"Since": time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "Tags": []string{"a", "b"},
	} {
		got, err := r.SearchAttributes[name].Typed()
		require.NoError(t, err, name)
		assert.Equal(t, want, got, name)
	}
}

func TestRouteSettingsErrorsNameTheField(t *testing.T) {
	const head = "kafka: {brokers: [b:9092], group: g}\ndispatch: {concurrency: 8}\nroutes:\n  - {topic: t, workflow_type: W, workflow_id: \"w-{key}\", task_queue: q, "
	for yaml, want := range map[string]string{
		head + "concurrency: 9}":                                         "routes[0].concurrency: must not exceed dispatch.concurrency (8)",
		head + "concurrency: -1}":                                        "routes[0].concurrency: must be at least 1",
		head + "run_timeout: -1s}":                                       "routes[0].run_timeout: must not be negative",
		head + "run_timeout: 2h, execution_timeout: 1h}":                 "routes[0].execution_timeout: must be at least run_timeout (2h0m0s)",
		head + "memo: {sagabridge.applied: x}}":                          "routes[0].memo.sagabridge.applied: is the bridge's own memo key",
		head + "name: 'a b'}":                                            `routes[0].name: "a b": use letters, digits`,
		head + "search_attributes: {Tier: {type: keyword, value: 3}}}":   "routes[0].search_attributes.Tier: 3 (int) is not a keyword value",
		head + "search_attributes: {Tier: {type: kw, value: x}}}":        `routes[0].search_attributes.Tier: type "kw" is not one of keyword, text, int`,
		head + "search_attributes: {Tier: {type: int}}}":                 "routes[0].search_attributes.Tier: a int value is required",
		head + "search_attributes: {At: {type: datetime, value: soon}}}": `routes[0].search_attributes.At: "soon" is not an RFC 3339 time`,
		// The SDK could not encode them: every start of the route failed,
		// retried for as long as the bridge ran.
		head + "search_attributes: {Score: {type: double, value: .nan}}}":                                     "routes[0].search_attributes.Score: NaN is not a double value JSON can carry",
		head + "search_attributes: {Score: {type: double, value: -.inf}}}":                                    "routes[0].search_attributes.Score: -Inf is not a double value JSON can carry",
		head + "search_attributes: {Tier: {type: keyword, valu: x}}}":                                         "routes[0].search_attributes.Tier.valu: unknown field (line 4); did you mean value?",
		head + "name: x}\n  - {topic: u, workflow_type: W, workflow_id: \"w-{key}\", task_queue: q, name: x}": `routes[1].name: "x" is the name of routes[0] too`,
	} {
		_, err := Parse([]byte(yaml))
		require.Error(t, err, yaml)
		assert.Contains(t, err.Error(), want, yaml)
	}
}
