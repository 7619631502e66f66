//! Call credentials over real sockets (issue 16): a token never leaves over plaintext TCP
//! unless allowed, channel then per-call credentials in order over TLS, Unix sockets count
//! as local, a failing credential fails only its call, a refreshing token is fetched once
//! for 100 concurrent calls, and credentials run once per attempt. A raw h2 server records
//! the request headers each stream arrived with.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::raw_h2::*;
use grpc_runtime::client::credentials::{
    allow_insecure, CallCredentials, CredentialsFuture, MetadataCredentials, RequestInfo, Token,
    TokenSource,
};
use grpc_runtime::{Channel, Code, MetadataMap, Request, Status};

const PATH: &str = "/test.Echo/Call";

/// Answers with the request's `authorization` and `x-order` values, joined.
fn reflect_auth() -> Handler {
    handler(|req, send| async move {
        let h = req.headers();
        let mut seen: Vec<String> = h
            .get_all("authorization")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        seen.extend(
            h.get_all("x-order")
                .iter()
                .map(|v| v.to_str().unwrap().to_string()),
        );
        let mut body = req.into_body();
        let _ = read_body(&mut body).await;
        respond(send, vec![frame_msg(&echo(&seen.join(",")))], 0, "").await;
    })
}

#[tokio::test]
async fn a_token_never_leaves_over_plaintext_unless_allowed() {
    let srv = raw_server(reflect_auth()).await;
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .call_credentials(MetadataCredentials::bearer_token("s3cr3t").unwrap())
        .connect()
        .await
        .unwrap();
    let err = ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(
        err.message().contains("transport security"),
        "{}",
        err.message()
    );
    // The request was never sent: the server saw no stream at all.
    assert!(srv.requests.lock().unwrap().is_empty());

    // Per call too, on a channel without credentials.
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .connect()
        .await
        .unwrap();
    let mut req = Request::new(echo("x"));
    req.set_call_credentials(MetadataCredentials::bearer_token("s3cr3t").unwrap());
    assert_eq!(
        ch.unary::<Echo, Echo>(PATH, req).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert!(srv.requests.lock().unwrap().is_empty());
    // The connection is fine for calls without credentials.
    assert_eq!(
        ch.unary::<Echo, Echo>(PATH, Request::new(echo("x")))
            .await
            .unwrap()
            .get_ref()
            .text,
        ""
    );

    // Explicitly allowed: sent.
    let mut req = Request::new(echo("x"));
    req.set_call_credentials(allow_insecure(
        MetadataCredentials::bearer_token("s3cr3t").unwrap(),
    ));
    assert_eq!(
        ch.unary::<Echo, Echo>(PATH, req)
            .await
            .unwrap()
            .get_ref()
            .text,
        "Bearer s3cr3t"
    );
}

#[tokio::test]
async fn channel_then_call_credentials_in_order_over_tls() {
    let (srv, tls) = raw_tls_test_server(reflect_auth(), &[b"h2"]).await;
    let ch = Channel::builder(format!("https://{}", srv.addr))
        .tls_config(tls)
        .call_credentials(MetadataCredentials::bearer_token("channel-token").unwrap())
        .call_credentials(MetadataCredentials::single("x-order", "a").unwrap())
        .connect()
        .await
        .unwrap();
    let mut req = Request::new(echo("x"));
    req.set_call_credentials(MetadataCredentials::single("x-order", "b").unwrap());
    req.set_call_credentials(MetadataCredentials::single("x-order", "c").unwrap());
    let r = ch.unary::<Echo, Echo>(PATH, req).await.unwrap();
    assert_eq!(r.get_ref().text, "Bearer channel-token,a,b,c");
    // Streaming calls carry them as well.
    let reqs = futures_util::stream::iter(vec![echo("1")]);
    let mut s = ch
        .bidi_streaming::<_, Echo, Echo>(PATH, Request::new(reqs))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        s.message().await.unwrap().unwrap().text,
        "Bearer channel-token,a"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn unix_sockets_are_local_enough_for_tokens() {
    let dir = std::env::temp_dir().join(format!("grpc-creds-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let _conns = raw_unix_server(reflect_auth(), &path).await;
    let ch = Channel::builder(format!("unix:{}", path.display()))
        .call_credentials(MetadataCredentials::bearer_token("local").unwrap())
        .connect()
        .await
        .unwrap();
    let r = ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap();
    assert_eq!(r.get_ref().text, "Bearer local");
    let _ = std::fs::remove_dir_all(&dir);
}

struct Failing(Status, Arc<AtomicUsize>);

impl CallCredentials for Failing {
    fn request_metadata<'a>(&'a self, _: &'a RequestInfo) -> CredentialsFuture<'a> {
        self.1.fetch_add(1, Ordering::SeqCst);
        let s = self.0.clone();
        Box::pin(async move { Err(s) })
    }
}

/// Records what each attempt was told.
struct Recording(Arc<std::sync::Mutex<Vec<(String, String)>>>);

impl CallCredentials for Recording {
    fn request_metadata<'a>(&'a self, info: &'a RequestInfo) -> CredentialsFuture<'a> {
        self.0
            .lock()
            .unwrap()
            .push((info.service_url().to_string(), info.method().to_string()));
        Box::pin(async { Ok(MetadataMap::new()) })
    }
}

#[tokio::test]
async fn a_failing_credential_fails_only_its_call_with_its_status() {
    let (srv, tls) = raw_tls_test_server(reflect_auth(), &[b"h2"]).await;
    let ch = Channel::builder(format!("https://{}", srv.addr))
        .tls_config(tls)
        .connect()
        .await
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut req = Request::new(echo("x"));
    req.set_call_credentials(Failing(
        Status::unavailable("identity provider down"),
        calls.clone(),
    ));
    let err = ch.unary::<Echo, Echo>(PATH, req).await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unavailable, "identity provider down")
    );
    // gRFC A54: a code only application logic may return becomes INTERNAL.
    let mut req = Request::new(echo("x"));
    req.set_call_credentials(Failing(
        Status::failed_precondition("no key"),
        calls.clone(),
    ));
    assert_eq!(
        ch.unary::<Echo, Echo>(PATH, req).await.unwrap_err().code(),
        Code::Internal
    );
    assert!(srv.requests.lock().unwrap().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The next call on the same channel goes through.
    assert_eq!(
        ch.unary::<Echo, Echo>(PATH, Request::new(echo("x")))
            .await
            .unwrap()
            .get_ref()
            .text,
        ""
    );

    // What a credential sees: the audience of the call, grpc-go style.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut req = Request::new(echo("x"));
    req.set_call_credentials(Recording(seen.clone()));
    ch.unary::<Echo, Echo>(PATH, req).await.unwrap();
    assert_eq!(
        seen.lock().unwrap()[0],
        (
            format!("https://{}/test.Echo", ch.authority()),
            "Call".to_string()
        )
    );
}

#[tokio::test]
async fn a_refreshing_token_is_fetched_once_for_100_concurrent_calls() {
    let (srv, tls) = raw_tls_test_server(reflect_auth(), &[b"h2"]).await;
    let fetches = Arc::new(AtomicUsize::new(0));
    let n = fetches.clone();
    let source = TokenSource::new(move || {
        let k = n.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(Token {
                value: format!("t{k}"),
                expires_in: Some(Duration::from_secs(3600)),
            })
        }
    });
    let ch = Channel::builder(format!("https://{}", srv.addr))
        .tls_config(tls)
        .call_credentials(source)
        .connect()
        .await
        .unwrap();
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let ch = ch.clone();
            tokio::spawn(async move {
                ch.unary::<Echo, Echo>(PATH, Request::new(echo("x")))
                    .await
                    .map(|r| r.into_inner().text)
            })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), "Bearer t0");
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert_eq!(srv.requests.lock().unwrap().len(), 100);
}

#[tokio::test]
async fn credentials_run_once_per_attempt() {
    // The server fails the first two attempts with UNAVAILABLE; the retry policy retries.
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let h = handler(move |req, send| {
        let n = a.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut send = send;
            let auth = req
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let mut body = req.into_body();
            let _ = read_body(&mut body).await;
            if n < 2 {
                // Trailers-Only UNAVAILABLE: retryable.
                let r = http::Response::builder()
                    .status(200)
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "14")
                    .body(())
                    .unwrap();
                let _ = send.send_response(r, true);
            } else {
                respond(send, vec![frame_msg(&echo(&auth))], 0, "").await;
            }
        }
    });
    let srv = raw_server(h).await;
    let config = r#"{"methodConfig":[{"name":[{"service":"test.Echo"}],"retryPolicy":{"maxAttempts":3,"initialBackoff":"0.01s","maxBackoff":"0.01s","backoffMultiplier":1,"retryableStatusCodes":["UNAVAILABLE"]}}]}"#;
    let runs = Arc::new(AtomicUsize::new(0));
    let r2 = runs.clone();
    let counting = TokenSource::new(move || {
        r2.fetch_add(1, Ordering::SeqCst);
        async {
            Ok(Token {
                value: "t".into(),
                expires_in: Some(Duration::ZERO),
            })
        }
    });
    let ch = Channel::builder(format!("http://{}", srv.addr))
        .default_service_config(config)
        .call_credentials(allow_insecure(counting))
        .connect()
        .await
        .unwrap();
    let r = ch
        .unary::<Echo, Echo>(PATH, Request::new(echo("x")))
        .await
        .unwrap();
    assert_eq!(r.get_ref().text, "Bearer t");
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    // An expired token is fetched again for each attempt.
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}
