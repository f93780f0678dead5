package e2e

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// authProxy stands in front of the dev server (which checks no credentials)
// as Temporal Cloud does: TLS, and an API key in the authorization header
// of every call. A call with another key is refused with Unauthenticated.
// Calls are forwarded as raw bytes, whatever the method.
type authProxy struct {
	addr string
	mu   sync.Mutex
	key  string // the only key accepted
}

// startAuthProxy serves TLS with cfg on a free port and forwards to target;
// it stops with the test.
func startAuthProxy(t *testing.T, target string, cfg *tls.Config, key string) *authProxy {
	t.Helper()
	up, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	require.NoError(t, err)
	p := &authProxy{key: key}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)), grpc.ForceServerCodecV2(rawCodec{}),
		grpc.UnknownServiceHandler(func(_ any, in grpc.ServerStream) error { return p.forward(up, in) }))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p.addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); _ = up.Close() })
	return p
}

// Accept makes key the only key accepted (the previous one is revoked).
func (p *authProxy) Accept(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.key = key
}

func (p *authProxy) forward(up *grpc.ClientConn, in grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(in)
	md, _ := metadata.FromIncomingContext(in.Context())
	p.mu.Lock()
	want := "Bearer " + p.key
	p.mu.Unlock()
	if got := md.Get("authorization"); len(got) != 1 || got[0] != want {
		return status.Error(codes.Unauthenticated, "the API key is not valid (revoked or unknown)")
	}
	ctx := metadata.NewOutgoingContext(in.Context(), md.Copy())
	out, err := up.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { // client → server
		for {
			var frame []byte
			if err := in.RecvMsg(&frame); err != nil {
				_ = out.CloseSend()
				if errors.Is(err, io.EOF) {
					err = nil
				}
				errc <- err
				return
			}
			if err := out.SendMsg(&frame); err != nil {
				errc <- nil // the server's answer says why
				return
			}
		}
	}()
	if h, err := out.Header(); err == nil {
		_ = in.SendHeader(h)
	}
	for { // server → client
		var frame []byte
		if err := out.RecvMsg(&frame); err != nil {
			in.SetTrailer(out.Trailer())
			if errors.Is(err, io.EOF) {
				return <-errc
			}
			return err // the server's status, as it answered
		}
		if err := in.SendMsg(&frame); err != nil {
			return err
		}
	}
}

// rawCodec passes gRPC messages through as bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*(v.(*[]byte)))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }
