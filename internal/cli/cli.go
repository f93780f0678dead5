// Package cli holds the start-up plumbing the commands share: logging,
// shutdown on signals, listeners and tracing. The worker's search-attribute
// check is public, in sagaworker (RequireSearchAttributes), since users'
// worker mains need it too.
//
// The commands (cmd/, examples' mains) and sagaworker, which runs users'
// worker mains, import it; it must not import the bridge engine.
package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sagabridge/sagabridge/internal/rpcerr"
	"google.golang.org/grpc/codes"
)

// NewLogger returns a JSON logger on stderr at level (debug, info, warn, error).
func NewLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level: %q is not one of debug, info, warn, error", level)
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// SignalContext is cancelled on SIGINT, SIGTERM or SIGHUP, which log says
// (nil: nothing is logged). SIGHUP (a terminal hanging up, or `kill -HUP`
// out of habit: there is no live reload) stops the program as SIGTERM
// does, through its drain and final commit; Go's default for it ended the
// process at once. A program started with SIGHUP ignored (nohup) keeps
// ignoring it. It catches only the first: a second gets Go's default
// and ends the process at once, for a shutdown that is stuck (a broker
// that accepts connections and never answers holds a start up to
// kafka.connect_timeout).
func SignalContext(log *slog.Logger) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	stopOn := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) { // nohup: a hang-up stays ignored
		stopOn = append(stopOn, syscall.SIGHUP)
	}
	signal.Notify(sigs, stopOn...)
	go func() {
		select {
		case sig := <-sigs:
			signal.Stop(sigs)
			if log != nil {
				log.Info("stopping; a second signal ends the process at once", "signal", sig.String())
			}
			cancel()
		case <-ctx.Done():
			signal.Stop(sigs)
		}
	}()
	return ctx, cancel
}

// SplitList splits a comma-separated flag value, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// StoppedWhileStarting reports whether err, returned while a program
// started, only says that ctx ended meanwhile (a stop during start-up,
// connecting to a Kafka or Temporal out of reach, say): a clean stop, exit
// 0. The Temporal SDK's is a gRPC Canceled that does not wrap the
// context's. Any other error stays one, a stop meanwhile or not.
func StoppedWhileStarting(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || rpcerr.Code(err) == codes.Canceled)
}

// Fatal logs err and exits with status 1.
func Fatal(log *slog.Logger, msg string, err error) {
	log.Error(msg, "err", err)
	os.Exit(1)
}
