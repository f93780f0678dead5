package bridge

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// /readyz while sessions fail and start again never panics. (It read
// sessionErr twice, and a session that started between the reads made
// it dereference nil.)
func TestReadyzWhileSessionsFailAndStartNeverPanics(t *testing.T) {
	b := newTestBridge(t, &fakeTemporal{}, &fakeDLQ{})
	b.running.Store(true)
	h := b.Handler()
	var stop atomic.Bool
	go func() { // runGroup's failure path, then claimHandler.Setup, over and over
		why := "kafka: coordinator not available"
		for !stop.Load() {
			b.sessionErr.Store(&why)
			b.joined.Store(false)
			b.sessionErr.Store(nil)
			b.joined.Store(true)
		}
	}()
	defer stop.Store(true)
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		var p any
		func() {
			defer func() { p = recover() }()
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/readyz", nil))
		}()
		if p != nil {
			t.Fatalf("/readyz panicked after %d requests: %v", i, fmt.Sprint(p))
		}
	}
}
