package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCPUTimeCountsFromTheLastParenthesis(t *testing.T) {
	// comm "(a) b)" holds a space and parentheses; utime 250, stime 50 ticks.
	line := "4242 ((a) b)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1000 0 0"
	got, err := parseCPUTime(line)
	require.NoError(t, err)
	assert.Equal(t, 3*time.Second, got)
	_, err = parseCPUTime("4242 (x) S 1 2")
	assert.ErrorContains(t, err, "fields after the name")
	_, err = parseCPUTime("no name")
	assert.Error(t, err)
}

func TestThisProcessCPUTimeGrowsWithWork(t *testing.T) {
	m := markCPU(os.Getpid())
	require.False(t, m.at.IsZero(), "/proc/self/stat unreadable")
	deadline := time.Now().Add(300 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ { // busy
		_ = x * x
	}
	use := m.since(os.Getpid())
	assert.Positive(t, use.bench, "300 ms of a busy loop used no CPU: %+v", use)
	assert.InDelta(t, use.server, use.bench, 0.1, "the same process on both sides")
}

// The burner uses CPU while its context lasts, about the share asked for
// (here at least a tenth of it, the machine being shared), and returns
// when the context ends.
func TestBurnUsesCPUUntilItsContextEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	m := markCPU(os.Getpid())
	require.False(t, m.at.IsZero(), "/proc/self/stat unreadable")
	done := make(chan struct{})
	go func() { burn(ctx, 0.5); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("burn did not return after its context ended")
	}
	use := m.since(os.Getpid())
	assert.Greater(t, use.bench, 0.05, "half a core asked for: %+v", use)
}
