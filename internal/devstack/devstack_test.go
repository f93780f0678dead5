package devstack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// A dev server that exits before it serves, as one does when another
// process took one of its ports between FreePorts and its bind ("address
// already in use"), is started again on new ports. (The benchmark lost a
// 2 h 40 min run to one such start: the server's HTTP port was taken.)
// The first start here is a stand-in for the temporal CLI that fails as
// that server did; the second runs the real one.
func TestADevServerThatExitsBeforeItServesIsStartedAgain(t *testing.T) {
	real, err := FindTemporal()
	require.NoError(t, err)
	dir := t.TempDir()
	mark := filepath.Join(dir, "failed-once")
	bin := filepath.Join(dir, "temporal")
	script := fmt.Sprintf(`#!/bin/sh
if [ ! -e %[1]q ]; then
	touch %[1]q
	echo "failed listening for HTTP API: bind: address already in use" >&2
	exit 1
fi
exec %[2]q "$@"
`, mark, real)
	require.NoError(t, os.WriteFile(bin, []byte(script), 0o755))

	tc, err := StartTemporal(context.Background(), TemporalOptions{Bin: bin})
	require.NoError(t, err, "the second start was not tried")
	defer tc.Close()
	require.FileExists(t, mark, "the first start did not fail")
}
