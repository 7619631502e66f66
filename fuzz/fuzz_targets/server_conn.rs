//! A server connection fed arbitrary bytes: our [`grpc_runtime::Server`] serves one
//! connection over `tokio::io::duplex` (through the public
//! `ServerBuilder::serve_with_incoming_stream`), the input is written as the client's
//! bytes (behind a valid preface + SETTINGS unless it starts like the preface itself),
//! the client's side is then closed, and everything the server writes is read until it
//! closes the connection. The connection must end within a bound (on a paused clock, so
//! timers cost no wall time) and nothing may panic, in the connection task or in any
//! call's task. The server has health, reflection and an echo service with one method of
//! each kind (see `grpc_rust_fuzz::server`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = grpc_rust_fuzz::run_connection(data);
});
