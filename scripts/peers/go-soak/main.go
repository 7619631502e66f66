// soak_client: the rpc_soak and channel_soak interop cases on grpc-go 1.33.
//
// grpc-go 1.33's interop client predates the soak cases (grpc-go added DoSoakTest in
// a later release), so this small driver runs them with grpc-go 1.33's own client
// (grpc.Dial, its transport and codec), following grpc's interop-test-descriptions and
// the grpc C++ 1.51 interop client (PerformSoakTest): each iteration is a large_unary
// (271828-byte request, 314159-byte response) without a deadline, its latency checked
// against --soak_per_iteration_max_acceptable_latency_ms; channel_soak dials a new
// ClientConn per iteration (dial counted in the latency, close not). Each iteration is
// logged as grpc-go's later DoSoakTest logs it:
//
//	soak iteration: N elapsed_ms: N peer: ADDR server_uri: TARGET succeeded|failed: ...
//
// Built by scripts/peers/build-go.sh (GOPATH mode, against the Debian grpc-go source)
// into $GRPC_RUST_PEERS/go/bin/soak_client. Exit status 1 when the soak fails.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/peer"
)

const (
	largeReqSize  = 271828
	largeRespSize = 314159
)

var (
	serverHost         = flag.String("server_host", "localhost", "server host")
	serverPort         = flag.Int("server_port", 10000, "server port")
	testCase           = flag.String("test_case", "rpc_soak", "rpc_soak or channel_soak")
	useTLS             = flag.Bool("use_tls", false, "use TLS")
	caFile             = flag.String("ca_file", "", "CA certificate file (with --use_tls)")
	serverHostOverride = flag.String("server_host_override", "", "TLS server name")
	iterations         = flag.Int("soak_iterations", 10, "RPCs to perform")
	maxFailures        = flag.Int("soak_max_failures", 0, "failures tolerated")
	maxLatencyMs       = flag.Int("soak_per_iteration_max_acceptable_latency_ms", 1000, "per-iteration latency bound")
	minGapMs           = flag.Int("soak_min_time_ms_between_rpcs", 0, "minimum time between RPC starts")
	overallTimeoutS    = flag.Int("soak_overall_timeout_seconds", 10, "overall time bound")
)

func dialOpts() []grpc.DialOption {
	if !*useTLS {
		return []grpc.DialOption{grpc.WithInsecure()}
	}
	creds, err := credentials.NewClientTLSFromFile(*caFile, *serverHostOverride)
	if err != nil {
		fmt.Fprintf(os.Stderr, "TLS credentials: %v\n", err)
		os.Exit(2)
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(creds)}
}

// one runs one soak iteration: its latency, the server that answered and its error.
func one(ctx context.Context, shared testpb.TestServiceClient, target string, opts []grpc.DialOption) (time.Duration, string, error) {
	start := time.Now()
	client := shared
	if client == nil {
		conn, err := grpc.Dial(target, opts...)
		if err != nil {
			return time.Since(start), "nil", fmt.Errorf("dial: %v", err)
		}
		defer conn.Close() // after the latency is taken: channel teardown is not counted
		client = testpb.NewTestServiceClient(conn)
	}
	var p peer.Peer
	req := &testpb.SimpleRequest{
		ResponseType: testpb.PayloadType_COMPRESSABLE,
		ResponseSize: largeRespSize,
		Payload:      &testpb.Payload{Type: testpb.PayloadType_COMPRESSABLE, Body: make([]byte, largeReqSize)},
	}
	reply, err := client.UnaryCall(ctx, req, grpc.Peer(&p))
	latency := time.Since(start)
	addr := "nil"
	if p.Addr != nil {
		addr = p.Addr.String()
	}
	if err != nil {
		return latency, addr, fmt.Errorf("/TestService/UnaryCall RPC failed: %v", err)
	}
	if t, n := reply.GetPayload().GetType(), len(reply.GetPayload().GetBody()); t != testpb.PayloadType_COMPRESSABLE || n != largeRespSize {
		return latency, addr, fmt.Errorf("got a reply with type %d len %d; want %d, %d", t, n, testpb.PayloadType_COMPRESSABLE, largeRespSize)
	}
	return latency, addr, nil
}

func main() {
	flag.Parse()
	if *testCase != "rpc_soak" && *testCase != "channel_soak" {
		fmt.Fprintf(os.Stderr, "unsupported test case %q (rpc_soak, channel_soak)\n", *testCase)
		os.Exit(2)
	}
	target := net.JoinHostPort(*serverHost, strconv.Itoa(*serverPort))
	opts := dialOpts()
	var shared testpb.TestServiceClient
	if *testCase == "rpc_soak" {
		conn, err := grpc.Dial(target, opts...)
		if err != nil {
			fmt.Fprintf(os.Stderr, "dial %s: %v\n", target, err)
			os.Exit(1)
		}
		defer conn.Close()
		shared = testpb.NewTestServiceClient(conn)
	}
	start := time.Now()
	deadline := start.Add(time.Duration(*overallTimeoutS) * time.Second)
	// No per-RPC deadline (the description asks for none), but nothing past the overall one.
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	maxLatency := time.Duration(*maxLatencyMs) * time.Millisecond
	var latencies []time.Duration
	done, failures := 0, 0
	for i := 0; i < *iterations && time.Now().Before(deadline); i++ {
		next := time.Now().Add(time.Duration(*minGapMs) * time.Millisecond)
		latency, addr, err := one(ctx, shared, target, opts)
		done++
		latencies = append(latencies, latency)
		ms := latency.Milliseconds()
		switch {
		case err != nil:
			failures++
			fmt.Printf("soak iteration: %d elapsed_ms: %d peer: %s server_uri: %s failed: %v\n", i, ms, addr, target, err)
		case latency > maxLatency:
			failures++
			fmt.Printf("soak iteration: %d elapsed_ms: %d peer: %s server_uri: %s exceeds max acceptable latency: %d\n", i, ms, addr, target, *maxLatencyMs)
		default:
			fmt.Printf("soak iteration: %d elapsed_ms: %d peer: %s server_uri: %s succeeded\n", i, ms, addr, target)
		}
		time.Sleep(time.Until(next))
	}
	sort.Slice(latencies, func(a, b int) bool { return latencies[a] < latencies[b] })
	pct := func(p int) float64 {
		if len(latencies) == 0 {
			return 0
		}
		k := len(latencies) * p / 100
		if k >= len(latencies) {
			k = len(latencies) - 1
		}
		return float64(latencies[k].Microseconds()) / 1000
	}
	fmt.Printf("(server_uri: %s) soak test ran: %d / %d iterations. total failures: %d. max failures threshold: %d. "+
		"latencies in milliseconds: p50 %.3f p90 %.3f max %.3f. took %.1f s\n",
		target, done, *iterations, failures, *maxFailures, pct(50), pct(90), pct(100), time.Since(start).Seconds())
	if done < *iterations {
		fmt.Fprintf(os.Stderr, "soak test consumed all %d seconds and quit early: %d of %d iterations\n", *overallTimeoutS, done, *iterations)
		os.Exit(1)
	}
	if failures > *maxFailures {
		fmt.Fprintf(os.Stderr, "soak test total failures %d exceed the threshold %d\n", failures, *maxFailures)
		os.Exit(1)
	}
}
