package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat (USER_HZ, 100 on
// Linux whatever the kernel's own tick rate).
const userHZ = 100

// cpuTime returns the CPU time, user and system, that process pid has used
// so far, from /proc/<pid>/stat (Linux).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("CPU time of process %d: %w", pid, err)
	}
	return parseCPUTime(string(b))
}

// parseCPUTime reads utime and stime (fields 14 and 15) from a
// /proc/<pid>/stat line. The process name, field 2, is in parentheses and
// may hold spaces and parentheses itself, so fields are counted from the
// last ')'.
func parseCPUTime(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc stat line without a process name: %q", stat)
	}
	f := strings.Fields(stat[i+1:]) // from field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat line has %d fields after the name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] { // utime, stime
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat CPU time %q: %w", s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// cpuUse is the CPU a latency run used, in cores (CPU seconds per second)
// over the run's measured part: the dev server's, and the benchmark
// process's (the worker and the clients; for the engine also the embedded
// broker, the producer and the bridge).
type cpuUse struct{ server, bench float64 }

// cpuMark is the CPU times of the dev server and of this process at a
// moment.
type cpuMark struct {
	at            time.Time
	server, bench time.Duration
}

// markCPU reads the CPU times of process server and of this process; the
// zero mark when either cannot be read (not Linux).
func markCPU(server int) cpuMark {
	s, err1 := cpuTime(server)
	b, err2 := cpuTime(os.Getpid())
	if err1 != nil || err2 != nil {
		return cpuMark{}
	}
	return cpuMark{at: time.Now(), server: s, bench: b}
}

// since is the CPU used from m to now, in cores; zero if m is.
func (m cpuMark) since(server int) cpuUse {
	now := markCPU(server)
	if m.at.IsZero() || now.at.IsZero() {
		return cpuUse{}
	}
	wall := now.at.Sub(m.at).Seconds()
	return cpuUse{server: (now.server - m.server).Seconds() / wall, bench: (now.bench - m.bench).Seconds() / wall}
}

// burn keeps this process busy for share of one core until ctx ends: in
// every 10 ms it spins for share of them and sleeps the rest. In a window
// client's run (-window-burn) it stands in for the CPU the engine's runs
// spend on the embedded broker, the producer and the consumer, on the
// cores the dev server shares, so that one can measure how much of a
// difference between the two is that CPU.
func burn(ctx context.Context, share float64) {
	const period = 10 * time.Millisecond
	spin := time.Duration(share * float64(period))
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		for end := time.Now().Add(spin); time.Now().Before(end); {
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
