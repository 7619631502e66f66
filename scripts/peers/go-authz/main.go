// authz_client: grpc-go 1.33 as a client with client certificates and per-call tokens
// against a server enforcing a gRFC A43 authorization policy (grpc-rust's
// tests/peer_go.rs starts that server).
//
// The policy the test installs allows grpc.health.v1.Health/Check for the principal of
// --cert (its subject) with "authorization: Bearer <--token>", and nothing else. Checks,
// each printed on a line, "OK" at the end; exit status 1 on the first mismatch:
//
//	allowed: Check with the allowed certificate and the token as a per-call credential
//	denied by path: Watch (server streaming) with the same credentials
//	denied by principal: Check with --other_cert
//	denied by header: Check with a wrong per-call token
//
// Denials must be PERMISSION_DENIED "unauthorized RPC request rejected".
// Built by scripts/peers/build-go.sh (GOPATH mode, Debian's grpc-go source) into
// $GRPC_RUST_PEERS/go/bin/authz_client.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io/ioutil"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

var (
	addr      = flag.String("server_addr", "", "host:port of the server")
	caFile    = flag.String("ca", "", "CA certificate (PEM) the server's certificate chains to")
	certFile  = flag.String("cert", "", "allowed client certificate (PEM)")
	keyFile   = flag.String("key", "", "its key")
	otherCert = flag.String("other_cert", "", "a client certificate the policy does not name")
	otherKey  = flag.String("other_key", "", "its key")
	token     = flag.String("token", "", "the token the policy expects")
)

// bearer is a per-RPC credential: "authorization: Bearer <token>", TLS only.
type bearer string

func (b bearer) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (b bearer) RequireTransportSecurity() bool { return true }

func dial(cert, key string) *grpc.ClientConn {
	pair, err := tls.LoadX509KeyPair(cert, key)
	check(err)
	pem, err := ioutil.ReadFile(*caFile)
	check(err)
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		fail("no CA certificate in %s", *caFile)
	}
	creds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: "localhost"})
	conn, err := grpc.Dial(*addr, grpc.WithTransportCredentials(creds))
	check(err)
	return conn
}

func expect(what string, err error, want codes.Code) {
	got := status.Code(err)
	fmt.Printf("%s: %v\n", what, got)
	if got != want {
		fail("%s: got %v (%v), want %v", what, got, err, want)
	}
	if got == codes.PermissionDenied && status.Convert(err).Message() != "unauthorized RPC request rejected" {
		fail("%s: the denial says %q", what, status.Convert(err).Message())
	}
}

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := &healthpb.HealthCheckRequest{}

	allowed := healthpb.NewHealthClient(dial(*certFile, *keyFile))
	_, err := allowed.Check(ctx, req, grpc.PerRPCCredentials(bearer(*token)))
	expect("allowed principal, token, path", err, codes.OK)

	stream, err := allowed.Watch(ctx, req, grpc.PerRPCCredentials(bearer(*token)))
	if err == nil {
		_, err = stream.Recv()
	}
	expect("denied by path (Watch)", err, codes.PermissionDenied)

	other := healthpb.NewHealthClient(dial(*otherCert, *otherKey))
	_, err = other.Check(ctx, req, grpc.PerRPCCredentials(bearer(*token)))
	expect("denied by principal", err, codes.PermissionDenied)

	_, err = allowed.Check(ctx, req, grpc.PerRPCCredentials(bearer("wrong")))
	expect("denied by header (token)", err, codes.PermissionDenied)
	fmt.Println("OK")
}
