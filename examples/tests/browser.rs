//! The browser example's binary without a browser (scripts/browser-test.sh drives the page
//! in headless Chromium): the page and its script are served on the page port, the gRPC
//! port answers the BrowserDemo calls over native gRPC, and gRPC-Web's CORS lets the
//! page's origin in and keeps other origins out.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use examples::pb::browser::browser_demo_client::BrowserDemoClient;
use examples::pb::browser::{CountRequest, EchoRequest, FailRequest};
use grpc_runtime::Code;

struct Example {
    child: Child,
    grpc: String,
    page: String,
}

impl Example {
    fn start() -> Example {
        let mut child = Command::new(env!("CARGO_BIN_EXE_grpc-web-browser"))
            .args(["--addr", "127.0.0.1:0", "--page-addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut first, mut second) = (String::new(), String::new());
        out.read_line(&mut first).unwrap();
        out.read_line(&mut second).unwrap();
        let grpc = first
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next());
        let page = second
            .strip_prefix("page: http://")
            .and_then(|r| r.split('/').next());
        let (Some(grpc), Some(page)) = (grpc, page) else {
            panic!("unexpected output {first:?} {second:?}")
        };
        Example {
            grpc: grpc.to_string(),
            page: page.to_string(),
            child,
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; returns the head (lower-cased) and the body.
fn http(addr: &str, request: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of head")
        + 4;
    (
        String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase(),
        raw[end..].to_vec(),
    )
}

#[test]
fn serves_the_page_and_its_script() {
    let ex = Example::start();
    let grpc_port = ex.grpc.rsplit(':').next().unwrap();
    let (head, body) = http(&ex.page, "GET / HTTP/1.1\r\nhost: x\r\n\r\n");
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    let page = String::from_utf8(body).unwrap();
    assert!(
        page.contains(&format!(r#"<meta name="grpc-port" content="{grpc_port}">"#)),
        "{page}"
    );
    assert!(page.contains(r#"<script type="module" src="/app.js">"#));

    let (head, body) = http(&ex.page, "GET /app.js HTTP/1.1\r\nhost: x\r\n\r\n");
    assert!(
        head.starts_with("http/1.1 200 ok\r\n") && head.contains("content-type: text/javascript"),
        "{head}"
    );
    assert_eq!(body, examples::browser::APP_JS.as_bytes());
    assert!(
        examples::browser::APP_JS.contains("createGrpcWebTransport")
            || examples::browser::APP_JS.contains("grpc-web")
    );

    let (head, _) = http(&ex.page, "GET /nothing HTTP/1.1\r\nhost: x\r\n\r\n");
    assert!(head.starts_with("http/1.1 404 "), "{head}");
    let (head, _) = http(
        &ex.page,
        "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n",
    );
    assert!(head.starts_with("http/1.1 405 "), "{head}");
}

#[test]
fn cors_lets_the_page_origin_in_only() {
    let ex = Example::start();
    let preflight = |origin: &str| {
        http(
            &ex.grpc,
            &format!(
                "OPTIONS /grpc.examples.browser.BrowserDemo/Echo HTTP/1.1\r\nhost: x\r\norigin: {origin}\r\n\
                 access-control-request-method: POST\r\naccess-control-request-headers: content-type,x-grpc-web\r\n\
                 connection: close\r\n\r\n"
            ),
        )
        .0
    };
    let port = ex.page.rsplit(':').next().unwrap();
    for origin in [
        format!("http://{}", ex.page),
        format!("http://localhost:{port}"),
    ] {
        let head = preflight(&origin);
        assert!(head.starts_with("http/1.1 204 "), "{head}");
        assert!(
            head.contains(&format!("access-control-allow-origin: {origin}\r\n")),
            "{head}"
        );
    }
    let head = preflight("http://elsewhere.example");
    assert!(
        head.starts_with("http/1.1 403 ") && !head.contains("access-control-allow-origin"),
        "{head}"
    );
}

#[tokio::test]
async fn the_service_over_native_grpc() {
    let ex = Example::start();
    let client = BrowserDemoClient::new(
        examples::connect(&format!("http://{}", ex.grpc))
            .await
            .unwrap(),
    );

    let reply = client
        .echo(EchoRequest {
            message: "hi ✓".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.message, "echo: hi ✓");

    let count = |n, fail_code, fail_message: &str| CountRequest {
        count: n,
        interval_ms: 10,
        fail_code,
        fail_message: fail_message.into(),
    };
    let mut stream = client.count(count(3, 0, "")).await.unwrap().into_inner();
    let mut got = Vec::new();
    while let Some(r) = stream.message().await.unwrap() {
        got.push(r.index);
    }
    assert_eq!(got, [1, 2, 3]);

    let mut stream = client
        .count(count(2, 8, "enough"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().map(|r| r.index), Some(1));
    assert_eq!(stream.message().await.unwrap().map(|r| r.index), Some(2));
    let status = stream.message().await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::ResourceExhausted, "enough")
    );

    // Refused before any reply (the status may surface at the call or at the first read).
    let status = match client.count(count(101, 0, "")).await {
        Ok(r) => r.into_inner().message().await.unwrap_err(),
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::InvalidArgument);

    let status = client
        .fail(FailRequest {
            code: 9,
            message: "100% sûr".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::FailedPrecondition, "100% sûr")
    );
    let status = client
        .fail(FailRequest {
            code: 0,
            message: "ok?".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unknown);
}
