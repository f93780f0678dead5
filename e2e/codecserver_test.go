package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sagabridge/sagabridge/config"
	"github.com/sagabridge/sagabridge/internal/connect"
	"github.com/sagabridge/sagabridge/internal/devstack"
)

// codecRequest sends a request to the codec server and returns its status,
// headers and body.
func codecRequest(t *testing.T, method, url string, body []byte, headers map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	require.NoError(t, err)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(out)
}

// `bridge codec-server` with a token file and an allowed UI origin, in
// front of a workflow whose input is encrypted: a request without the
// token is 401; with it /decode returns the plaintext and /encode is 404; a
// body over -max-body is 413; the Temporal UI's preflight from the allowed
// origin gets the CORS headers, another origin gets none; the real
// Temporal CLI shows the input with --codec-auth and not without it, and
// `temporal workflow query` (which encodes an empty argument list first)
// works with /encode off.
func TestCodecServerBinaryAuthenticatesLimitsAndAnswersTheUI(t *testing.T) {
	e := newEnv(t, 1)
	dir := t.TempDir()
	key := make([]byte, 32)
	_, err := rand.Read(key)
	require.NoError(t, err)
	keyFile := filepath.Join(dir, "codec.key")
	require.NoError(t, os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600))
	const token = "e2e-codec-token"
	tokenFile := filepath.Join(dir, "codec.token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(token+"\n"), 0o600))
	const origin = "https://temporal-ui.example.com"

	// A workflow whose input is encrypted, held open by a worker with the
	// key that answers the query "input" with it.
	tcfg := config.Temporal{Address: stack.Temporal.Address, Namespace: "default", Codec: config.Codec{KeyFile: keyFile, KeyID: "e2e"}}
	opts, err := connect.ClientOptions(tcfg, quietLogger())
	require.NoError(t, err)
	tc, err := client.Dial(opts)
	require.NoError(t, err)
	t.Cleanup(tc.Close)
	w := worker.New(tc, e.taskQueue+"-codec", worker.Options{})
	w.RegisterWorkflowWithOptions(holdInput, workflow.RegisterOptions{Name: "CodecHoldInput"})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	secret := "codec-secret-" + e.id
	wfID := "codec-e2e-" + e.id
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: wfID, TaskQueue: e.taskQueue + "-codec"}, "CodecHoldInput", secret)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tc.TerminateWorkflow(context.Background(), wfID, "", "test done") })

	// The payload as the UI and the CLI send it.
	pc, err := connect.PayloadCodec(tcfg)
	require.NoError(t, err)
	plain, err := converter.GetDefaultDataConverter().ToPayload(secret)
	require.NoError(t, err)
	enc, err := pc.Encode([]*commonpb.Payload{plain})
	require.NoError(t, err)
	encrypted, err := protojson.Marshal(&commonpb.Payloads{Payloads: enc})
	require.NoError(t, err)
	require.NotContains(t, string(encrypted), secret)
	require.NotContains(t, string(encrypted), base64.StdEncoding.EncodeToString([]byte(`"`+secret+`"`)))

	cfgPath := filepath.Join(dir, "bridge.yaml")
	data, err := yaml.Marshal(map[string]any{
		"kafka":    map[string]any{"brokers": stack.Kafka.Brokers, "group": e.topic},
		"temporal": map[string]any{"address": stack.Temporal.Address, "namespace": "default", "codec": map[string]any{"key_file": keyFile, "key_id": "e2e"}},
	})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfgPath, data, 0o600))
	ports, err := devstack.FreePorts(1)
	require.NoError(t, err)
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	var out syncBuffer
	cs, err := devstack.StartProcess(&out, bridgeBin, "codec-server", "-config", cfgPath, "-listen", addr,
		"-token-file", tokenFile, "-allow-origin", origin, "-max-body", "65536")
	require.NoError(t, err)
	t.Cleanup(func() {
		cs.Kill()
		if t.Failed() {
			t.Logf("codec server output:\n%s", out.String())
		}
	})
	waitListening(t, addr, &out)
	url := "http://" + addr
	auth := map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json", "X-Namespace": "default"}

	// Without the token, or with a wrong one: 401, nothing decoded.
	for _, h := range []map[string]string{{"Content-Type": "application/json"}, {"Authorization": "Bearer nope"}} {
		status, hdr, body := codecRequest(t, http.MethodPost, url+"/decode", encrypted, h)
		assert.Equal(t, http.StatusUnauthorized, status, "%v: %s", h, body)
		assert.Contains(t, hdr.Get("WWW-Authenticate"), "Bearer")
		assert.NotContains(t, body, base64.StdEncoding.EncodeToString([]byte(`"`+secret+`"`)))
	}

	// With it: the plaintext.
	status, _, body := codecRequest(t, http.MethodPost, url+"/decode", encrypted, auth)
	require.Equal(t, http.StatusOK, status, body)
	var decoded commonpb.Payloads
	require.NoError(t, protojson.Unmarshal([]byte(body), &decoded))
	require.Len(t, decoded.Payloads, 1)
	var got string
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(decoded.Payloads[0], &got))
	assert.Equal(t, secret, got)

	// /encode is off by default: a payload to encrypt gets 404, even with
	// the token.
	plainJSON, err := protojson.Marshal(&commonpb.Payloads{Payloads: []*commonpb.Payload{plain}})
	require.NoError(t, err)
	status, _, body = codecRequest(t, http.MethodPost, url+"/encode", plainJSON, auth)
	assert.Equal(t, http.StatusNotFound, status, "/encode: %s", body)

	// A body over -max-body: 413, and the server still answers.
	status, _, body = codecRequest(t, http.MethodPost, url+"/decode", bytes.Repeat([]byte(" "), 65537), auth)
	assert.Equal(t, http.StatusRequestEntityTooLarge, status, body)
	status, _, _ = codecRequest(t, http.MethodPost, url+"/decode", encrypted, auth)
	assert.Equal(t, http.StatusOK, status, "after the oversized request")

	// Another namespace's request: 403.
	other := map[string]string{"Authorization": "Bearer " + token, "X-Namespace": "payments"}
	status, _, body = codecRequest(t, http.MethodPost, url+"/decode", encrypted, other)
	assert.Equal(t, http.StatusForbidden, status, body)

	// The Temporal UI's preflight, as its browser sends it.
	preflight := func(from string) (int, http.Header) {
		status, hdr, _ := codecRequest(t, http.MethodOptions, url+"/decode", nil, map[string]string{
			"Origin": from, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-namespace",
		})
		return status, hdr
	}
	status, hdr := preflight(origin)
	assert.Equal(t, http.StatusNoContent, status)
	assert.Equal(t, origin, hdr.Get("Access-Control-Allow-Origin"))
	assert.Equal(t, "POST, OPTIONS", hdr.Get("Access-Control-Allow-Methods"))
	assert.Contains(t, hdr.Get("Access-Control-Allow-Headers"), "Content-Type, X-Namespace, Authorization")
	assert.Equal(t, "true", hdr.Get("Access-Control-Allow-Credentials"))
	assert.Contains(t, hdr.Values("Vary"), "Origin")
	status, hdr = preflight("https://elsewhere.example.com")
	assert.Equal(t, http.StatusForbidden, status)
	assert.Empty(t, hdr.Get("Access-Control-Allow-Origin"), "a disallowed origin got CORS headers")

	// The real CLI: --codec-auth carries the token.
	cli := func(command string, extra ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		args := append([]string{"workflow", command, "--address", stack.Temporal.Address, "--workflow-id", wfID,
			"--output", "json", "--codec-endpoint", url}, extra...)
		raw, err := exec.CommandContext(ctx, stack.Temporal.Bin, args...).CombinedOutput()
		return string(raw), err
	}
	shown := base64.StdEncoding.EncodeToString([]byte(`"` + secret + `"`)) // the JSON output's json/plain data
	raw, err := cli("show", "--codec-auth", "Bearer "+token)
	require.NoError(t, err, "temporal workflow show with --codec-auth: %s", raw)
	assert.Contains(t, raw, shown, "the CLI shows the decrypted input")
	assert.Contains(t, raw, base64.StdEncoding.EncodeToString([]byte("json/plain")))
	raw, err = cli("query", "--type", "input", "--codec-auth", "Bearer "+token)
	require.NoError(t, err, "temporal workflow query with --codec-auth: %s", raw)
	assert.Contains(t, raw, `"`+secret+`"`, "the query's answer, decrypted")
	refusedBefore := strings.Count(out.String(), `"status":401`)
	raw, err = cli("show")
	t.Logf("without --codec-auth (err %v): %s", err, strings.Join(strings.Fields(raw), " "))
	assert.NotContains(t, raw, shown, "the CLI decrypted without the token")
	assert.Greater(t, strings.Count(out.String(), `"status":401`), refusedBefore, "the codec server refused the CLI")
}

// holdInput stays open and answers the query "input" with its input.
func holdInput(ctx workflow.Context, input string) error {
	if err := workflow.SetQueryHandler(ctx, "input", func() (string, error) { return input, nil }); err != nil {
		return err
	}
	return workflow.Await(ctx, func() bool { return false })
}
