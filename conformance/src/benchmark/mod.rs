//! The benchmark side of the conformance crate: grpc's `BenchmarkService` ([`service`]), the
//! `WorkerService` the official qps driver talks to ([`worker`]), the gpr-compatible latency
//! histogram ([`histogram`]), process/machine counters ([`stats`]) and the load client used by
//! scripts/bench.sh ([`load`]). The `benchmark_worker` binary puts them together.

pub mod histogram;
pub mod load;
pub mod service;
pub mod stats;
pub mod worker;
