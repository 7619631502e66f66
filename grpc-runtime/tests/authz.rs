//! gRFC A43 authorization policies over real sockets (issue 16): our Server with TLS and
//! client certificates (a test CA made by rcgen), our Channel presenting an identity,
//! and the authz interceptors deciding by path, header and principal. A counting
//! interceptor added after the policy shows whether a call got past it.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pki::{Identity, TestCa};
use common::*;
use grpc_runtime::server::authz::{AuthzInterceptor, FileWatcherInterceptor, DENIED_MESSAGE};
use grpc_runtime::server::{interceptor_fn, Interceptor, ServerTlsConfig};
use grpc_runtime::{Channel, ClientTlsConfig, Code, Request, Status};
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, SanType};

const UNARY: &str = "/test.Echo/Unary";
const STREAM: &str = "/test.Echo/ServerStream";

/// A client certificate from `ca` with these URI and DNS SANs and common name.
fn client(ca: &TestCa, uris: &[&str], dns: &[&str], cn: &str) -> Identity {
    let mut p =
        CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
    for u in uris {
        p.subject_alt_names
            .push(SanType::URI((*u).try_into().unwrap()));
    }
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    ca.sign(p)
}

/// A TLS server requiring client certificates from `ca`, with `authz` then a counter.
struct Setup {
    ca: TestCa,
    srv: TestServer,
    reached: Arc<AtomicUsize>,
}

async fn server_with(authz: impl Interceptor, client_auth_optional: bool) -> Setup {
    let ca = TestCa::new("authz test CA");
    let id = ca.server(&["localhost"]);
    let tls = ServerTlsConfig::new(&id.cert, &id.key)
        .client_ca_pem(ca.pem())
        .client_auth_optional(client_auth_optional);
    let reached = Arc::new(AtomicUsize::new(0));
    let counter = reached.clone();
    let srv = start(move |b| {
        b.tls_config(tls)
            .add_interceptor(authz)
            .add_interceptor(interceptor_fn(move |head, next| {
                counter.fetch_add(1, Ordering::SeqCst);
                next.run(head)
            }))
    })
    .await;
    Setup { ca, srv, reached }
}

async fn server(policy: &str) -> Setup {
    server_with(AuthzInterceptor::from_json(policy).unwrap(), false).await
}

async fn channel(s: &Setup, identity: Option<&Identity>) -> Channel {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate_pem(s.ca.pem())
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity_pem(&id.cert, &id.key);
    }
    Channel::builder(format!("https://{}", s.srv.addr))
        .tls_config(tls)
        .connect()
        .await
        .unwrap()
}

fn echo_req(msg: &str, md: &[(&str, &str)]) -> Request<EchoRequest> {
    let mut r = Request::new(EchoRequest {
        message: msg.into(),
        count: 0,
        sleep_ms: 0,
    });
    for (k, v) in md {
        r.metadata_mut().append(k, v.to_string()).unwrap();
    }
    r
}

async fn unary(ch: &Channel, md: &[(&str, &str)]) -> Result<String, Status> {
    ch.unary::<EchoRequest, EchoReply>(UNARY, echo_req("hi", md))
        .await
        .map(|r| r.into_inner().message)
}

async fn server_stream(ch: &Channel) -> Result<Vec<String>, Status> {
    let req = Request::new(EchoRequest {
        message: "s".into(),
        count: 2,
        sleep_ms: 0,
    });
    let mut s = ch
        .server_streaming::<EchoRequest, EchoReply>(STREAM, req)
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.message().await? {
        out.push(m.message);
    }
    Ok(out)
}

/// A rejected call: PERMISSION_DENIED with grpc-go's message, nothing about the policy.
fn assert_denied(r: Result<impl std::fmt::Debug, Status>) {
    let e = r.expect_err("the call must be denied");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert_eq!(e.message(), DENIED_MESSAGE);
    assert!(e.details().is_empty(), "no details: {e:?}");
}

const ADMIN: &str = "spiffe://foo.com/sa/admin";

const POLICY: &str = r#"{
  "name": "authz-test",
  "deny_rules": [
    {"name": "banned", "source": {"principals": ["spiffe://foo.com/sa/banned"]}}
  ],
  "allow_rules": [
    {"name": "admins", "source": {"principals": ["spiffe://foo.com/sa/admin"]},
     "request": {"paths": ["/test.Echo/*"]}},
    {"name": "devs-with-header", "source": {"principals": ["*.dev.example.com"]},
     "request": {"paths": ["/test.Echo/Unary"], "headers": [{"key": "X-Dev-Path", "values": ["/dev/path/*"]}]}},
    {"name": "banned-may-stream", "source": {"principals": ["spiffe://foo.com/sa/banned"]}}
  ]
}"#;

#[tokio::test]
async fn allowed_principal_and_path_reach_the_handler() {
    let s = server(POLICY).await;
    let ch = channel(&s, Some(&client(&s.ca, &[ADMIN], &[], "admin"))).await;
    assert_eq!(unary(&ch, &[]).await.unwrap(), "hi");
    assert_eq!(server_stream(&ch).await.unwrap().len(), 2);
    assert_eq!(s.reached.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn denied_by_path() {
    let policy = r#"{"name": "p", "allow_rules": [{"name": "unary-only", "request": {"paths": ["/test.Echo/Unary"]}}]}"#;
    let s = server(policy).await;
    let ch = channel(&s, Some(&client(&s.ca, &[ADMIN], &[], "admin"))).await;
    assert_eq!(unary(&ch, &[]).await.unwrap(), "hi");
    assert_denied(server_stream(&ch).await);
    // The streaming call never got past the policy.
    assert_eq!(s.reached.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn denied_by_header() {
    let s = server(POLICY).await;
    let ch = channel(
        &s,
        Some(&client(&s.ca, &[], &["alice.dev.example.com"], "alice")),
    )
    .await;
    assert_denied(unary(&ch, &[]).await);
    assert_denied(unary(&ch, &[("x-dev-path", "/prod/path")]).await);
    assert_eq!(s.reached.load(Ordering::SeqCst), 0);
    assert_eq!(
        unary(&ch, &[("x-dev-path", "/dev/path/a")]).await.unwrap(),
        "hi"
    );
    // The rule only covers Unary.
    assert_denied(server_stream(&ch).await);
    assert_eq!(s.reached.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn denied_by_principal() {
    let s = server(POLICY).await;
    // Another SPIFFE ID; its DNS SAN would match the dev rule, but URI SANs come first.
    let other = client(
        &s.ca,
        &["spiffe://foo.com/sa/guest"],
        &["bob.dev.example.com"],
        "bob",
    );
    let ch = channel(&s, Some(&other)).await;
    assert_denied(unary(&ch, &[("x-dev-path", "/dev/path/a")]).await);
    // The subject is only looked at without SANs, and then as "CN=...".
    let cn_only = client(&s.ca, &[], &[], "spiffe://foo.com/sa/admin");
    let ch = channel(&s, Some(&cn_only)).await;
    assert_denied(unary(&ch, &[]).await);
    assert_eq!(s.reached.load(Ordering::SeqCst), 0);

    let by_subject =
        r#"{"name": "p", "allow_rules": [{"name": "cn", "source": {"principals": ["CN=svc-a"]}}]}"#;
    let s = server(by_subject).await;
    let ch = channel(&s, Some(&client(&s.ca, &[], &[], "svc-a"))).await;
    assert_eq!(unary(&ch, &[]).await.unwrap(), "hi");
    let ch = channel(&s, Some(&client(&s.ca, &[], &[], "svc-b"))).await;
    assert_denied(unary(&ch, &[]).await);
}

#[tokio::test]
async fn principals_without_a_client_certificate_and_without_tls() {
    // "" matches a TLS client that presented no certificate; "*" does not.
    let policy = r#"{"name": "p", "allow_rules": [
        {"name": "anonymous-tls", "source": {"principals": [""]}, "request": {"paths": ["/test.Echo/Unary"]}},
        {"name": "any-cert", "source": {"principals": ["*"]}, "request": {"paths": ["/test.Echo/ServerStream"]}}
    ]}"#;
    let s = server_with(AuthzInterceptor::from_json(policy).unwrap(), true).await;
    let anon = channel(&s, None).await;
    assert_eq!(unary(&anon, &[]).await.unwrap(), "hi");
    assert_denied(server_stream(&anon).await);
    let with_cert = channel(&s, Some(&client(&s.ca, &[ADMIN], &[], "admin"))).await;
    assert_eq!(server_stream(&with_cert).await.unwrap().len(), 2);
    assert_denied(unary(&with_cert, &[]).await);

    // Over plaintext no principal matches, not even "".
    let srv = start(|b| b.add_interceptor(AuthzInterceptor::from_json(policy).unwrap())).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    assert_denied(unary(&ch, &[]).await);
    let open = r#"{"name": "p", "allow_rules": [{"name": "any", "request": {"paths": ["/test.Echo/Unary"]}}]}"#;
    let srv = start(|b| b.add_interceptor(AuthzInterceptor::from_json(open).unwrap())).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    assert_eq!(unary(&ch, &[]).await.unwrap(), "hi");
}

#[tokio::test]
async fn deny_rules_win_over_allow_rules() {
    let s = server(POLICY).await;
    // "banned" is allowed by "banned-may-stream", but the deny rule comes first.
    let ch = channel(
        &s,
        Some(&client(
            &s.ca,
            &["spiffe://foo.com/sa/banned"],
            &[],
            "banned",
        )),
    )
    .await;
    assert_denied(unary(&ch, &[]).await);
    assert_denied(server_stream(&ch).await);
    assert_eq!(s.reached.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn default_deny_when_no_allow_rule_matches() {
    let policy = r#"{"name": "p", "allow_rules": [{"name": "other", "request": {"paths": ["/other.Service/*"]}}]}"#;
    let s = server(policy).await;
    let ch = channel(&s, Some(&client(&s.ca, &[ADMIN], &[], "admin"))).await;
    assert_denied(unary(&ch, &[]).await);
    assert_denied(server_stream(&ch).await);
    assert_eq!(s.reached.load(Ordering::SeqCst), 0);
}

struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Replaces the file's contents in one step (write aside, rename), so the watcher never
/// reads a half-written policy.
fn replace(path: &std::path::Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Calls until `want(result)` or 10 s.
async fn until(
    ch: &Channel,
    want: impl Fn(&Result<String, Status>) -> bool,
) -> Result<String, Status> {
    let start = Instant::now();
    loop {
        let r = unary(ch, &[]).await;
        if want(&r) || start.elapsed() > Duration::from_secs(10) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn file_watcher_reloads_the_policy_and_keeps_the_last_good_one() {
    let file =
        TempFile(std::env::temp_dir().join(format!("grpc-authz-test-{}.json", std::process::id())));
    let allow = r#"{"name": "v1", "allow_rules": [{"name": "echo", "request": {"paths": ["/test.Echo/*"]}}]}"#;
    let deny = r#"{"name": "v2", "deny_rules": [{"name": "no-unary", "request": {"paths": ["*/Unary"]}}],
                   "allow_rules": [{"name": "echo", "request": {"paths": ["/test.Echo/*"]}}]}"#;
    std::fs::write(&file.0, allow).unwrap();
    let watcher = FileWatcherInterceptor::new(&file.0, Duration::from_millis(25)).unwrap();
    let handle = watcher.clone();
    let s = server_with(watcher, false).await;
    let ch = channel(&s, Some(&client(&s.ca, &[ADMIN], &[], "admin"))).await;
    assert_eq!(unary(&ch, &[]).await.unwrap(), "hi");

    replace(&file.0, deny);
    assert_denied(until(&ch, |r| r.is_err()).await);
    assert_eq!(handle.policy().name(), "v2");
    assert_eq!(
        server_stream(&ch).await.unwrap().len(),
        2,
        "v2 still allows streaming"
    );

    // A broken policy is refused and v2 stays in force.
    replace(
        &file.0,
        r#"{"name": "v3", "allow_rules": [{"name": "x", "request": {"headers": [{"key": ":path", "values": ["*"]}]}}]}"#,
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(handle.policy().name(), "v2");
    assert_denied(unary(&ch, &[]).await);

    // A good one after it is picked up.
    replace(&file.0, allow);
    assert_eq!(until(&ch, |r| r.is_ok()).await.unwrap(), "hi");
    assert_eq!(handle.policy().name(), "v1");
}

#[test]
fn file_watcher_refuses_a_missing_or_invalid_file_at_start() {
    let missing = std::env::temp_dir().join("grpc-authz-test-does-not-exist.json");
    let e = FileWatcherInterceptor::new(&missing, Duration::from_secs(1)).unwrap_err();
    assert!(e.to_string().contains("cannot read policy file"), "{e}");
    let file = TempFile(
        std::env::temp_dir().join(format!("grpc-authz-test-bad-{}.json", std::process::id())),
    );
    std::fs::write(
        &file.0,
        r#"{"name": "p", "allow_rules": [{"name": "a", "request": {"paths": ["/x"], "verbs": []}}]}"#,
    )
    .unwrap();
    let e = FileWatcherInterceptor::new(&file.0, Duration::from_secs(1)).unwrap_err();
    assert!(
        e.to_string()
            .contains("allow_rules[0].request.verbs: unknown field"),
        "{e}"
    );
    let e = FileWatcherInterceptor::new(&file.0, Duration::ZERO).unwrap_err();
    assert!(e.to_string().contains("refresh interval"), "{e}");
}

/// Peer identity for handlers and interceptors (issue 16): the TLS session (version,
/// cipher, ALPN) and the client certificate's names (URI, DNS and IP SANs, subject,
/// principal) through `ServerContext::tls_info` and `peer_identity`.
#[tokio::test]
async fn interceptors_see_the_tls_session_and_the_client_identity() {
    use grpc_runtime::server::authz::PeerIdentity;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    let s = server_with(
        interceptor_fn(move |head, next| {
            let ctx = head.context();
            let tls = ctx.tls_info().map(|t| {
                format!(
                    "{} {} {}",
                    t.protocol_version(),
                    t.cipher_suite(),
                    String::from_utf8_lossy(t.alpn_protocol().unwrap_or(b""))
                )
            });
            let who = match ctx.peer_identity() {
                Ok(PeerIdentity::Certificate(c)) => format!(
                    "{} {:?} {:?} {}",
                    c.principal(),
                    c.dns_sans,
                    c.ip_sans,
                    c.subject
                ),
                other => format!("{other:?}"),
            };
            record
                .lock()
                .unwrap()
                .push(format!("{} | {who}", tls.unwrap_or_default()));
            next.run(head)
        }),
        false,
    )
    .await;
    let mut p = CertificateParams::new(vec!["client.example".to_string()]).unwrap();
    p.subject_alt_names
        .push(SanType::IpAddress("10.9.8.7".parse().unwrap()));
    p.subject_alt_names.push(SanType::URI(
        "spiffe://example.org/ns/prod/sa/web".try_into().unwrap(),
    ));
    p.distinguished_name.push(DnType::CommonName, "web");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let id = s.ca.sign(p);
    let ch = channel(&s, Some(&id)).await;
    unary(&ch, &[]).await.unwrap();
    let line = seen.lock().unwrap()[0].clone();
    assert!(line.starts_with("TLSv1_3 TLS13_"), "{line}");
    assert!(
        line.contains(
            " h2 | spiffe://example.org/ns/prod/sa/web [\"client.example\"] [10.9.8.7] CN=web"
        ),
        "{line}"
    );
}
