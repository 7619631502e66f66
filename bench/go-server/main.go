// go-bench-server: grpc-go's own benchmark server (benchmark.StartServer, the code behind
// grpc-go's benchmark/server and benchmark/worker) without the CPU/heap profiling that
// benchmark/server/main.go always turns on, so it can be compared fairly. Listens on
// 127.0.0.1:--port, prints "listening on ADDR", stops on SIGINT/SIGTERM.
// Built by scripts/bench.sh in GOPATH mode against the grpc-go tree scripts/peers/build-go.sh
// unpacks (Debian golang-google-grpc).
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc/benchmark"
)

func main() {
	port := flag.Int("port", 50052, "port on 127.0.0.1")
	flag.Parse()
	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	fmt.Println("listening on", lis.Addr())
	stop := benchmark.StartServer(benchmark.ServerInfo{Type: "protobuf", Listener: lis})
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	<-ch
	stop()
}
