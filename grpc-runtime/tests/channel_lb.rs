//! The client channel over several real backends: target forms of the naming doc,
//! pick_first and round_robin, resolver updates at run time, service config (LB
//! selection, per-method timeout / wait-for-ready / size limits) and a custom LB policy.
//! Every backend is a real server on 127.0.0.1; calls tell which one answered by
//! `Response::remote_addr`.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{start, EchoReply, EchoRequest, TestServer};
use grpc_runtime::client::lb::{
    ChannelController, LbPolicy, LbPolicyBuilder, LbUpdate, Pick, PickInfo, PickResult, Picker,
    QueuePicker,
};
use grpc_runtime::client::resolver::{ManualResolver, ResolvedAddress, ResolverUpdate};
use grpc_runtime::client::{Subchannel, SubchannelState};
use grpc_runtime::{Channel, Code, ConnectivityState, Request, Response, Status};

const UNARY: &str = "/test.Echo/Unary";

fn req(message: &str, sleep_ms: i64) -> Request<EchoRequest> {
    Request::new(EchoRequest {
        message: message.into(),
        count: 0,
        sleep_ms,
    })
}

async fn call(ch: &Channel, sleep_ms: i64) -> Result<Response<EchoReply>, Status> {
    ch.unary::<_, EchoReply>(UNARY, req("hi", sleep_ms)).await
}

/// Which backend answered `n` sequential calls.
async fn spread(ch: &Channel, n: usize) -> HashMap<SocketAddr, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = call(ch, 0).await.expect("call succeeds");
        *seen.entry(r.remote_addr().expect("tcp peer")).or_insert(0) += 1;
    }
    seen
}

async fn backends(n: usize) -> Vec<TestServer> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(start(|b| b).await);
    }
    v
}

fn ipv4(addrs: &[SocketAddr]) -> String {
    format!(
        "ipv4:{}",
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// An address nothing listens on.
async fn dead_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Waits until calls have reached every address in `want` (round_robin connects to all,
/// but is READY with the first).
async fn until_all_used(ch: &Channel, want: &[SocketAddr]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = spread(ch, 3 * want.len()).await;
        if want.iter().all(|a| seen.contains_key(a)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "backends never all used: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn round_robin_spreads_calls_evenly_over_three_backends() {
    let srvs = backends(3).await;
    let addrs: Vec<SocketAddr> = srvs.iter().map(|s| s.addr).collect();
    let ch = Channel::builder(ipv4(&addrs))
        .load_balancing_policy("round_robin")
        .connect()
        .await
        .unwrap();
    until_all_used(&ch, &addrs).await;
    let seen = spread(&ch, 300).await;
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (a, n) in &seen {
        assert!(
            (90..=110).contains(n),
            "backend {a} got {n} of 300: {seen:?}"
        );
    }
}

#[tokio::test]
async fn pick_first_sticks_to_the_first_reachable_address_and_fails_over_in_order() {
    let srvs = backends(2).await;
    let dead = dead_addr().await;
    let (a, b) = (srvs[0].addr, srvs[1].addr);
    let ch = Channel::builder(ipv4(&[dead, a, b]))
        .connect()
        .await
        .unwrap();
    let seen = spread(&ch, 20).await;
    assert_eq!(
        seen.get(&a),
        Some(&20),
        "all calls on the first reachable address: {seen:?}"
    );
    // The chosen backend goes away: the next calls walk the list again and land on b.
    let mut srvs = srvs;
    srvs[0].shutdown();
    let _ = (&mut srvs[0].handle).await;
    let seen = spread(&ch, 20).await;
    assert_eq!(seen.get(&b), Some(&20), "{seen:?}");
}

#[tokio::test]
async fn resolver_updates_add_and_remove_backends_without_failing_calls() {
    let srvs = backends(3).await;
    let (a, b, c) = (srvs[0].addr, srvs[1].addr, srvs[2].addr);
    let backends = ManualResolver::new("test-lb");
    backends.update(ResolverUpdate::new(vec![
        ResolvedAddress::new(a),
        ResolvedAddress::new(b),
    ]));
    let ch = Channel::builder("test-lb:///echo")
        .resolver(backends.clone())
        .load_balancing_policy("round_robin")
        .connect()
        .await
        .unwrap();
    until_all_used(&ch, &[a, b]).await;
    // Slow calls in flight on a and b while a is replaced by c.
    let mut slow = Vec::new();
    for _ in 0..6 {
        let ch = ch.clone();
        slow.push(tokio::spawn(async move { call(&ch, 400).await }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    backends.update(ResolverUpdate::new(vec![
        ResolvedAddress::new(b),
        ResolvedAddress::new(c),
    ]));
    let mut on = HashMap::new();
    for s in slow {
        let r = s
            .await
            .unwrap()
            .expect("an in-flight call survives the update");
        *on.entry(r.remote_addr().unwrap()).or_insert(0) += 1;
    }
    assert!(
        on.contains_key(&a),
        "some slow calls ran on the removed backend: {on:?}"
    );
    until_all_used(&ch, &[b, c]).await;
    let seen = spread(&ch, 60).await;
    assert!(
        !seen.contains_key(&a),
        "no new call goes to the removed backend: {seen:?}"
    );
    assert_eq!(seen.get(&b), Some(&30), "{seen:?}");
    assert_eq!(seen.get(&c), Some(&30), "{seen:?}");
}

#[tokio::test]
async fn round_robin_skips_a_backend_that_shuts_down_and_loses_no_call() {
    let mut srvs = backends(3).await;
    let addrs: Vec<SocketAddr> = srvs.iter().map(|s| s.addr).collect();
    let ch = Channel::builder(ipv4(&addrs))
        .load_balancing_policy("round_robin")
        .connect()
        .await
        .unwrap();
    until_all_used(&ch, &addrs).await;
    // Calls keep flowing while one backend drains and stops (GOAWAY, then close).
    let running = Arc::new(AtomicUsize::new(1));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (ch, running) = (ch.clone(), Arc::clone(&running));
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while running.load(Ordering::SeqCst) == 1 {
                call(&ch, 5)
                    .await
                    .expect("no call fails while a backend leaves");
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    srvs[1].shutdown();
    let _ = (&mut srvs[1].handle).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.store(0, Ordering::SeqCst);
    for l in load {
        assert!(l.await.unwrap() > 0);
    }
    let seen = spread(&ch, 40).await;
    assert!(!seen.contains_key(&addrs[1]), "{seen:?}");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(ch.state(), ConnectivityState::Ready);
}

#[tokio::test]
async fn resolver_service_config_selects_the_policy() {
    let srvs = backends(2).await;
    let (a, b) = (srvs[0].addr, srvs[1].addr);
    let r = ManualResolver::new("with-config");
    r.update(
        ResolverUpdate::new(vec![ResolvedAddress::new(a), ResolvedAddress::new(b)])
            .with_service_config(
                r#"{"loadBalancingConfig": [{"no_such_policy": {}}, {"round_robin": {}}]}"#,
            ),
    );
    let ch = Channel::builder("with-config:///x")
        .resolver(r.clone())
        .connect()
        .await
        .unwrap();
    until_all_used(&ch, &[a, b]).await;
    // A channel told to ignore the resolver's config keeps its default (pick_first).
    let pf = Channel::builder("with-config:///x")
        .resolver(r.clone())
        .ignore_resolver_service_config(true)
        .connect()
        .await
        .unwrap();
    let seen = spread(&pf, 10).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    // An invalid config from the resolver is ignored: the previous one stays.
    r.update(
        ResolverUpdate::new(vec![ResolvedAddress::new(a), ResolvedAddress::new(b)])
            .with_service_config("{not json"),
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = spread(&ch, 10).await;
    assert_eq!(
        (seen.get(&a), seen.get(&b)),
        (Some(&5), Some(&5)),
        "{seen:?}"
    );
    // A resolution error keeps the policy, its config and its backends.
    r.update(ResolverUpdate::error("registry unreachable"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = spread(&ch, 10).await;
    assert_eq!(
        (seen.get(&a), seen.get(&b)),
        (Some(&5), Some(&5)),
        "{seen:?}"
    );
}

#[tokio::test]
async fn method_config_timeout_wait_for_ready_and_size_limits() {
    let srv = start(|b| b).await;
    let config = r#"{"methodConfig": [
        {"name": [{"service": "test.Echo", "method": "Unary"}], "timeout": "0.2s", "maxResponseMessageBytes": 64},
        {"name": [{}], "waitForReady": true}
    ]}"#;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .default_service_config(config)
        .connect()
        .await
        .unwrap();
    let started = Instant::now();
    let s = call(&ch, 2000).await.unwrap_err();
    assert_eq!(s.code(), Code::DeadlineExceeded, "{s:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    // The call's own shorter timeout still wins.
    let mut r = req("hi", 2000);
    r.set_timeout(Duration::from_millis(50));
    let started = Instant::now();
    assert_eq!(
        ch.unary::<_, EchoReply>(UNARY, r).await.unwrap_err().code(),
        Code::DeadlineExceeded
    );
    assert!(
        started.elapsed() < Duration::from_millis(180),
        "{:?}",
        started.elapsed()
    );
    // maxResponseMessageBytes: a reply over 64 bytes is RESOURCE_EXHAUSTED.
    let s = ch
        .unary::<_, EchoReply>(UNARY, req(&"x".repeat(100), 0))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(ch
        .unary::<_, EchoReply>(UNARY, req("small", 0))
        .await
        .is_ok());

    // waitForReady from the default entry: a call to a dead backend waits (until its
    // deadline) instead of failing fast with UNAVAILABLE.
    let dead = dead_addr().await;
    let ch = Channel::builder(format!("http://{dead}"))
        .default_service_config(config)
        .connect_lazy()
        .unwrap();
    let mut r = Request::new(EchoRequest::default());
    r.set_timeout(Duration::from_millis(300));
    let s = ch
        .unary::<_, EchoReply>("/test.Echo/Other", r)
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::DeadlineExceeded, "{s:?}");
    // ... unless the call itself says otherwise.
    let mut r = Request::new(EchoRequest::default());
    r.set_wait_for_ready(false);
    r.set_timeout(Duration::from_millis(3000));
    let s = ch
        .unary::<_, EchoReply>("/test.Echo/Other", r)
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
}

#[test]
fn invalid_targets_and_configs_fail_the_build() {
    let err = |b: grpc_runtime::Endpoint| b.connect_lazy().unwrap_err().to_string();
    let e = err(Channel::builder("dns://8.8.8.8/example.com:443"));
    assert!(e.contains("not supported"), "{e}");
    let e = err(Channel::builder("nosuch://x/y"));
    assert!(e.contains("no resolver is registered"), "{e}");
    let e = err(Channel::builder("ipv4:1.2.3.4:1,bad"));
    assert!(e.contains("not an ipv4 address"), "{e}");
    let e = err(Channel::builder("127.0.0.1:1").default_service_config("{\"methodConfig\": 3}"));
    assert!(e.contains("invalid default service config"), "{e}");
    let e = err(Channel::builder("127.0.0.1:1").load_balancing_policy("no_such_policy"));
    assert!(e.contains("no supported policy"), "{e}");
    // Building needs no runtime; every form of the naming doc is accepted.
    for t in [
        "dns:///localhost:50051",
        "localhost:50051",
        "ipv4:127.0.0.1:1,127.0.0.2:2",
        "ipv6:[::1]:50051",
        "unix:relative.sock",
        "unix:///tmp/abs.sock",
        "unix-abstract:grpc-test",
        "passthrough:///127.0.0.1:50051",
        "http://[::1]:8080",
    ] {
        let ch = Channel::builder(t)
            .connect_lazy()
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(ch.state(), ConnectivityState::Idle);
    }
    assert_eq!(
        Channel::builder("unix:///tmp/abs.sock")
            .connect_lazy()
            .unwrap()
            .authority(),
        "localhost"
    );
    assert_eq!(
        Channel::builder("ipv4:127.0.0.1:7,127.0.0.2:8")
            .connect_lazy()
            .unwrap()
            .authority(),
        "127.0.0.1:7"
    );
    assert_eq!(
        Channel::builder("dns:///foo.test:9")
            .connect_lazy()
            .unwrap()
            .authority(),
        "foo.test:9"
    );
}

#[tokio::test]
async fn passthrough_ipv6_and_dns_targets_reach_a_server() {
    let srv = start(|b| b).await;
    let port = srv.addr.port();
    for t in [
        format!("passthrough:///127.0.0.1:{port}"),
        format!("dns:///localhost:{port}"),
        format!("ipv4:127.0.0.1:{port}"),
    ] {
        let ch = Channel::builder(&t)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(
            call(&ch, 0).await.unwrap().into_inner().message,
            "hi",
            "{t}"
        );
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn unix_abstract_target() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("grpc-rust-test-{}", std::process::id());
    let sa = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let l = std::os::unix::net::UnixListener::bind_addr(&sa).unwrap();
    l.set_nonblocking(true).unwrap();
    let l = tokio::net::UnixListener::from_std(l).unwrap();
    let (etx, _erx) = tokio::sync::mpsc::unbounded_channel();
    let server = grpc_runtime::Server::builder().add_service(common::echo_server::EchoServer::new(
        common::TestEcho { events: etx },
    ));
    tokio::spawn(server.serve_unix_incoming_shutdown(l, std::future::pending()));
    let ch = Channel::builder(format!("unix-abstract:{name}"))
        .connect()
        .await
        .unwrap();
    assert_eq!(call(&ch, 0).await.unwrap().into_inner().message, "hi");
}

// ------------------------------------------------------------ a custom policy

/// Sends every call to the READY backend with the highest `Weight` attribute and counts
/// the final statuses its picks saw.
struct Heaviest {
    subchannels: Vec<Subchannel>,
    done: Arc<Mutex<Vec<Code>>>,
}

#[derive(Debug)]
struct Weight(u32);

struct HeaviestPicker {
    sc: Subchannel,
    done: Arc<Mutex<Vec<Code>>>,
}

impl Picker for HeaviestPicker {
    fn pick(&self, _: &PickInfo<'_>) -> PickResult {
        let done = Arc::clone(&self.done);
        PickResult::Pick(
            Pick::new(self.sc.clone()).on_done(move |s| done.lock().unwrap().push(s.code())),
        )
    }
}

impl Heaviest {
    fn publish(&self, cx: &mut dyn ChannelController) {
        let best = self
            .subchannels
            .iter()
            .filter(|s| s.state() == ConnectivityState::Ready)
            .max_by_key(|s| s.address().attribute::<Weight>().map_or(0, |w| w.0));
        match best {
            Some(sc) => cx.update_picker(
                ConnectivityState::Ready,
                Arc::new(HeaviestPicker {
                    sc: sc.clone(),
                    done: Arc::clone(&self.done),
                }),
            ),
            None => cx.update_picker(ConnectivityState::Connecting, Arc::new(QueuePicker)),
        }
    }
}

impl LbPolicy for Heaviest {
    fn resolver_update(
        &mut self,
        update: LbUpdate,
        cx: &mut dyn ChannelController,
    ) -> Result<(), String> {
        self.subchannels = update
            .addresses
            .iter()
            .map(|a| cx.new_subchannel(a))
            .collect();
        for s in &self.subchannels {
            s.connect();
        }
        self.publish(cx);
        Ok(())
    }
    fn resolver_error(&mut self, _: String, _: &mut dyn ChannelController) {}
    fn subchannel_update(
        &mut self,
        sc: &Subchannel,
        state: &SubchannelState,
        cx: &mut dyn ChannelController,
    ) {
        if state.state == ConnectivityState::Idle {
            sc.connect();
        }
        self.publish(cx);
    }
    fn exit_idle(&mut self, _: &mut dyn ChannelController) {}
}

struct HeaviestBuilder(Arc<Mutex<Vec<Code>>>);

impl LbPolicyBuilder for HeaviestBuilder {
    fn name(&self) -> &'static str {
        "test_heaviest"
    }
    fn parse_config(
        &self,
        config: &serde_json::Value,
    ) -> Result<grpc_runtime::client::lb::LbConfig, String> {
        match config.get("strict") {
            None | Some(serde_json::Value::Bool(_)) => Ok(Default::default()),
            Some(_) => Err("strict must be a boolean".into()),
        }
    }
    fn build(&self) -> Box<dyn LbPolicy> {
        Box::new(Heaviest {
            subchannels: Vec::new(),
            done: Arc::clone(&self.0),
        })
    }
}

#[tokio::test]
async fn custom_policy_by_service_config_reads_attributes_and_sees_final_status() {
    let srvs = backends(3).await;
    let r = ManualResolver::new("weighted");
    r.update(ResolverUpdate::new(vec![
        ResolvedAddress::new(srvs[0].addr).with_attribute(Weight(1)),
        ResolvedAddress::new(srvs[1].addr).with_attribute(Weight(5)),
        ResolvedAddress::new(srvs[2].addr).with_attribute(Weight(2)),
    ]));
    let done = Arc::new(Mutex::new(Vec::new()));
    // Its own config is validated when the channel is built.
    let bad = Channel::builder("weighted:///x")
        .resolver(r.clone())
        .lb_policy(HeaviestBuilder(Arc::clone(&done)))
        .default_service_config(r#"{"loadBalancingConfig": [{"test_heaviest": {"strict": 1}}]}"#)
        .connect_lazy();
    assert!(bad
        .unwrap_err()
        .to_string()
        .contains("strict must be a boolean"));
    let ch = Channel::builder("weighted:///x")
        .resolver(r.clone())
        .lb_policy(HeaviestBuilder(Arc::clone(&done)))
        .default_service_config(r#"{"loadBalancingConfig": [{"test_heaviest": {"strict": true}}]}"#)
        .connect()
        .await
        .unwrap();
    // Wait until every backend is READY so the heaviest is chosen.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !spread(&ch, 1).await.contains_key(&srvs[1].addr) {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done.lock().unwrap().clear();
    let seen = spread(&ch, 10).await;
    assert_eq!(seen.get(&srvs[1].addr), Some(&10), "{seen:?}");
    let s = ch
        .unary::<_, EchoReply>(UNARY, req("fail:5", 0))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    let codes = done.lock().unwrap().clone();
    assert_eq!(codes.len(), 11, "{codes:?}");
    assert_eq!(codes[10], Code::NotFound);
    assert!(codes[..10].iter().all(|c| *c == Code::Ok));
}

// ------------------------------------------------------------ client-side health checking (A17)

#[tokio::test]
async fn health_checked_round_robin_skips_a_not_serving_backend_and_returns_to_it() {
    use grpc_runtime::services::health::HealthReporter;
    let mut reporters = Vec::new();
    let mut srvs = Vec::new();
    for _ in 0..3 {
        let r = HealthReporter::new();
        r.set_serving("test.Echo");
        let svc = r.service();
        srvs.push(start(move |b| b.add_service(svc)).await);
        reporters.push(r);
    }
    // A fourth backend without the health service (UNIMPLEMENTED): used as if serving.
    srvs.push(start(|b| b).await);
    let addrs: Vec<SocketAddr> = srvs.iter().map(|s| s.addr).collect();
    let config = r#"{"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": "test.Echo"}}"#;
    let ch = Channel::builder(ipv4(&addrs))
        .default_service_config(config)
        .connect()
        .await
        .unwrap();
    until_all_used(&ch, &addrs).await;
    // Backend 1 reports NOT_SERVING: its connection stays, but calls skip it.
    reporters[1].set_not_serving("test.Echo");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = spread(&ch, 40).await;
        if !seen.contains_key(&addrs[1]) {
            assert_eq!(seen.len(), 3, "{seen:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a NOT_SERVING backend still gets calls: {seen:?}"
        );
    }
    let seen = spread(&ch, 60).await;
    assert!(!seen.contains_key(&addrs[1]), "{seen:?}");
    // SERVING again: back in rotation.
    reporters[1].set_serving("test.Echo");
    until_all_used(&ch, &addrs).await;
    // Every checked backend NOT_SERVING: only the one without a health service is left.
    for r in &reporters {
        r.set_not_serving("test.Echo");
    }
    let mut seen_only_unchecked = false;
    for _ in 0..100 {
        let s = spread(&ch, 8).await;
        if s.len() == 1 && s.contains_key(&addrs[3]) {
            seen_only_unchecked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen_only_unchecked,
        "only the backend without a health service is left"
    );
}

#[tokio::test]
async fn pick_first_does_not_health_check() {
    use grpc_runtime::services::health::HealthReporter;
    let r = HealthReporter::new();
    r.set_not_serving("test.Echo");
    let svc = r.service();
    let srv = start(move |b| b.add_service(svc)).await;
    let config = r#"{"healthCheckConfig": {"serviceName": "test.Echo"}}"#;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .default_service_config(config)
        .connect()
        .await
        .unwrap();
    assert!(call(&ch, 0).await.is_ok());
}
