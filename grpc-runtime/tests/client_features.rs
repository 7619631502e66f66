//! Client features against a raw h2 server: TLS, unix sockets, interceptors, deadline
//! propagation.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::pki::test_pki;
use common::raw_h2::*;
use grpc_runtime::client::interceptor::InterceptFuture;
use grpc_runtime::client::{interceptor_fn, ClientCallContext, Interceptor};
use grpc_runtime::transport::ClientTlsConfig;
use grpc_runtime::{scope_deadline, Channel, Code, Deadline, Request, Status};

const PATH: &str = "/test.Echo/Unary";

/// Answers with the request's text and echoes `x-*` request headers as `x-seen-*` trailers.
fn echo_handler() -> Handler {
    handler(|req: http::Request<h2::RecvStream>, mut send| async move {
        let (parts, mut body) = req.into_parts();
        let Ok(data) = read_body(&mut body).await else {
            return;
        };
        let text = unframe(&data)
            .iter()
            .map(|(_, p)| <Echo as prost::Message>::decode(&p[..]).unwrap().text)
            .collect::<Vec<_>>()
            .join("+");
        let Ok(mut s) = send.send_response(response_headers(), false) else {
            return;
        };
        let _ = s.send_data(frame_msg(&echo(&text)), false);
        let mut t = trailers(0, "");
        for (k, v) in parts.headers.iter() {
            if let Some(rest) = k.as_str().strip_prefix("x-") {
                t.append(
                    http::HeaderName::try_from(format!("x-seen-{rest}")).unwrap(),
                    v.clone(),
                );
            }
        }
        let _ = s.send_trailers(t);
    })
}

#[tokio::test]
async fn tls_with_test_ca_and_server_name_override() {
    let (srv, tls) = raw_tls_test_server(echo_handler(), &[b"h2"]).await;
    let ch = Channel::builder(format!("https://{}", srv.addr))
        .tls_config(tls.clone())
        .connect()
        .await
        .unwrap();
    let r = ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("secure")))
        .await
        .unwrap();
    assert_eq!(r.get_ref().text, "secure");
    assert_eq!(
        srv.requests.lock().unwrap()[0].uri.scheme_str(),
        Some("https")
    );

    // wrong expected name -> connection fails -> UNAVAILABLE
    let ch = Channel::builder(format!("https://{}", srv.addr))
        .tls_config(tls.domain_name("other.example.com"))
        .connect_lazy()
        .unwrap();
    let err = ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);

    // a CA that did not sign the server cert
    let (other_ca, _, _) = test_pki(&["foo.test.google.fr"]);
    let tls = ClientTlsConfig::new()
        .ca_certificate_pem(&other_ca)
        .domain_name("foo.test.google.fr");
    assert!(Channel::builder(format!("https://{}", srv.addr))
        .tls_config(tls)
        .connect()
        .await
        .is_err());

    // invalid PEM is refused when building
    let tls = ClientTlsConfig::new().ca_certificate_pem("not a pem");
    assert!(Channel::builder(format!("https://{}", srv.addr))
        .tls_config(tls)
        .connect_lazy()
        .is_err());
}

#[tokio::test]
async fn tls_requires_alpn_h2() {
    let (srv, tls) = raw_tls_test_server(echo_handler(), &[b"http/1.1"]).await;
    let err = Channel::builder(format!("https://{}", srv.addr))
        .tls_config(tls)
        .connect()
        .await
        .unwrap_err();
    // rustls servers refuse the mismatch themselves with a no_application_protocol alert
    assert_eq!(
        err.kind(),
        grpc_runtime::transport::TransportErrorKind::Tls,
        "{err}"
    );
    assert!(
        err.to_string().contains("ALPN") || err.to_string().contains("NoApplicationProtocol"),
        "{err}"
    );
    // a server without ALPN at all: our client refuses
    let (srv, tls) = raw_tls_test_server(echo_handler(), &[]).await;
    let err = Channel::builder(format!("https://{}", srv.addr))
        .tls_config(tls)
        .connect()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ALPN"), "{err}");
}

#[cfg(unix)]
#[tokio::test]
async fn unix_socket_target() {
    let dir = std::env::temp_dir().join(format!("grpc-client-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let conns = raw_unix_server(echo_handler(), &path).await;
    for target in [
        format!("unix:{}", path.display()),
        format!("unix://{}", path.display()),
    ] {
        let ch = Channel::builder(target).connect().await.unwrap();
        for i in 0..3 {
            let r = ch
                .unary::<Echo, Echo>(PATH, Request::new(echo(&i.to_string())))
                .await
                .unwrap();
            assert_eq!(r.get_ref().text, i.to_string());
        }
    }
    assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Records start/finish order and can add metadata or reject.
struct Recorder {
    name: &'static str,
    log: Arc<Mutex<Vec<String>>>,
    reject: bool,
}

impl Interceptor for Recorder {
    fn start<'a>(&'a self, call: &'a mut ClientCallContext) -> InterceptFuture<'a> {
        Box::pin(async move {
            tokio::task::yield_now().await; // really async
            self.log
                .lock()
                .unwrap()
                .push(format!("start:{}:{}", self.name, call.path()));
            let prev = call.metadata().get("x-chain").unwrap_or("").to_string();
            call.metadata_mut()
                .insert("x-chain", format!("{prev}{}", self.name))
                .unwrap();
            if self.reject && call.metadata().get("x-reject").is_some() {
                return Err(Status::permission_denied(format!(
                    "rejected by {}",
                    self.name
                )));
            }
            Ok(())
        })
    }
    fn finish(&self, _path: &'static str, status: &Status) {
        self.log
            .lock()
            .unwrap()
            .push(format!("finish:{}:{:?}", self.name, status.code()));
    }
}

#[tokio::test]
async fn interceptors_chain_in_order_and_see_final_status() {
    let srv = raw_server(echo_handler()).await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .interceptor(Recorder {
            name: "a",
            log: log.clone(),
            reject: false,
        })
        .interceptor(Recorder {
            name: "b",
            log: log.clone(),
            reject: true,
        })
        .interceptor(interceptor_fn(|call| {
            call.set_timeout(Some(Duration::from_secs(7)));
            Ok(())
        }))
        .connect()
        .await
        .unwrap();
    let r = ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap();
    assert_eq!(
        r.trailers().unwrap().get("x-seen-chain"),
        Some("ab"),
        "a (outermost) ran first"
    );
    let sent = srv.requests.lock().unwrap()[0]
        .headers
        .get("grpc-timeout")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        sent.ends_with('u') || sent.ends_with('m'),
        "interceptor-set timeout sent: {sent}"
    );
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "start:a:/test.Echo/Unary",
            "start:b:/test.Echo/Unary",
            "finish:b:Ok",
            "finish:a:Ok"
        ]
    );
    log.lock().unwrap().clear();

    // rejection: b rejects, the call never reaches the server, a sees the status
    let before = srv.requests.lock().unwrap().len();
    let mut req = Request::new(echo("x"));
    req.metadata_mut().insert("x-reject", "1").unwrap();
    let err = ch.unary::<Echo, Echo>(PATH, req).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "rejected by b");
    assert_eq!(srv.requests.lock().unwrap().len(), before);
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "start:a:/test.Echo/Unary",
            "start:b:/test.Echo/Unary",
            "finish:a:PermissionDenied"
        ]
    );
    log.lock().unwrap().clear();

    // streaming: finish runs when the response stream ends
    let mut s = ch
        .server_streaming::<Echo, Echo>(PATH, Request::new(echo("s")))
        .await
        .unwrap()
        .into_inner();
    assert!(log.lock().unwrap().iter().all(|l| l.starts_with("start")));
    assert_eq!(s.message().await.unwrap().unwrap().text, "s");
    assert!(s.message().await.unwrap().is_none());
    assert_eq!(
        log.lock().unwrap()[2..],
        ["finish:b:Ok".to_string(), "finish:a:Ok".to_string()]
    );
    log.lock().unwrap().clear();

    // a dropped stream is reported as CANCELLED
    let s = ch
        .server_streaming::<Echo, Echo>(PATH, Request::new(echo("s")))
        .await
        .unwrap()
        .into_inner();
    drop(s);
    assert_eq!(
        log.lock().unwrap()[2..],
        [
            "finish:b:Cancelled".to_string(),
            "finish:a:Cancelled".to_string()
        ]
    );
}

#[tokio::test]
async fn deadline_is_inherited_from_the_current_call() {
    let srv = raw_server(echo_handler()).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    let timeout_of = |i: usize| -> Duration {
        let reqs = srv.requests.lock().unwrap();
        let v = reqs[i]
            .headers
            .get("grpc-timeout")
            .map(|v| v.as_bytes().to_vec());
        grpc_runtime::timeout::decode_timeout(&v.expect("grpc-timeout sent")).unwrap()
    };
    // inside a handler scope with 2 s left, a call without its own timeout inherits it
    let ch2 = ch.clone();
    scope_deadline(Some(Deadline::after(Duration::from_secs(2))), async move {
        ch2.unary::<Echo, Echo>(PATH, Request::new(echo("x")))
            .await
            .unwrap();
        let mut own = Request::new(echo("x"));
        own.set_timeout(Duration::from_secs(30));
        ch2.unary::<Echo, Echo>(PATH, own).await.unwrap();
        let mut shorter = Request::new(echo("x"));
        shorter.set_timeout(Duration::from_millis(500));
        ch2.unary::<Echo, Echo>(PATH, shorter).await.unwrap();
    })
    .await;
    let t0 = timeout_of(0);
    assert!(
        t0 <= Duration::from_secs(2) && t0 > Duration::from_millis(1500),
        "{t0:?}"
    );
    let t1 = timeout_of(1);
    assert!(
        t1 <= Duration::from_secs(2),
        "a longer own timeout cannot extend the inherited deadline: {t1:?}"
    );
    let t2 = timeout_of(2);
    assert!(
        t2 <= Duration::from_millis(500) && t2 > Duration::from_millis(300),
        "a shorter own timeout wins: {t2:?}"
    );
    // outside any scope: no grpc-timeout
    ch.unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap();
    assert!(srv.requests.lock().unwrap()[3]
        .headers
        .get("grpc-timeout")
        .is_none());

    // an already expired inherited deadline fails at once, without a stream
    let ch3 = ch.clone();
    let err = scope_deadline(Some(Deadline::after(Duration::ZERO)), async move {
        ch3.unary::<Echo, Echo>(PATH, Request::new(echo("x")))
            .await
            .unwrap_err()
    })
    .await;
    assert_eq!(err.code(), Code::DeadlineExceeded);
    assert_eq!(srv.requests.lock().unwrap().len(), 4);

    // channel default timeout applies when nothing else does
    let ch4 = Channel::builder(format!("http://{}", srv.addr))
        .timeout(Duration::from_secs(9))
        .connect()
        .await
        .unwrap();
    ch4.unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap();
    let t = timeout_of(4);
    assert!(
        t > Duration::from_secs(8) && t <= Duration::from_secs(9),
        "{t:?}"
    );
}

#[tokio::test]
async fn user_agent_prefix_and_authority_override() {
    let srv = raw_server(echo_handler()).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .user_agent("my-app/1.2")
        .authority("svc.example.com:443")
        .connect()
        .await
        .unwrap();
    ch.unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap();
    let reqs = srv.requests.lock().unwrap();
    let ua = reqs[0].headers.get("user-agent").unwrap().to_str().unwrap();
    assert!(ua.starts_with("my-app/1.2 grpc-rust/"), "{ua}");
    assert_eq!(
        reqs[0].uri.authority().unwrap().as_str(),
        "svc.example.com:443"
    );
}

#[tokio::test]
async fn dns_target_resolves_localhost() {
    let srv = raw_server(echo_handler()).await;
    let ch = Channel::builder(format!("localhost:{}", srv.addr.port()))
        .connect_lazy()
        .unwrap();
    // localhost may resolve to ::1 first; pick_first falls through to 127.0.0.1
    let r = ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("dns")))
        .await
        .unwrap();
    assert_eq!(r.get_ref().text, "dns");
    assert_eq!(
        srv.requests.lock().unwrap()[0]
            .uri
            .authority()
            .unwrap()
            .as_str(),
        format!("localhost:{}", srv.addr.port())
    );
}

#[tokio::test]
async fn user_agent_metadata_is_prefixed_to_ours() {
    let srv = raw_server(echo_handler()).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    let mut req = Request::new(echo("x"));
    req.metadata_mut().insert("user-agent", "custom/9").unwrap();
    ch.unary::<Echo, Echo>(PATH, req).await.unwrap();
    let reqs = srv.requests.lock().unwrap();
    let all: Vec<_> = reqs[0].headers.get_all("user-agent").iter().collect();
    assert_eq!(all.len(), 1);
    assert!(
        all[0].to_str().unwrap().starts_with("custom/9 grpc-rust/"),
        "{:?}",
        all[0]
    );
}

#[tokio::test]
async fn dropping_the_last_channel_clone_closes_the_connection() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        serve_conn(tcp, echo_handler(), Arc::default()).await;
        let _ = closed_tx.send(());
    });
    let ch = Channel::builder(format!("http://{addr}"))
        .connect()
        .await
        .unwrap();
    let ch2 = ch.clone();
    ch2.unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap();
    drop(ch);
    drop(ch2);
    tokio::time::timeout(Duration::from_secs(2), closed_rx)
        .await
        .expect("connection closed")
        .unwrap();
}
