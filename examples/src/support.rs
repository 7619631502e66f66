//! Helpers the examples share: [`Transcript`] (the lines an example reports, collected
//! for tests and optionally printed live by the binaries), [`RunningServer`] (a server
//! on a real TCP port, usually `127.0.0.1:0`, with graceful shutdown) and [`connect`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use grpc_runtime::server::ServerBuilder;
use grpc_runtime::Channel;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The error type of the examples' entry points.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// The readable output of an example: lines in order. Binaries print them as they come
/// (see [`Transcript::with_sink`]); tests read them back with [`Transcript::lines`].
/// Clones share the same lines, so servers and interceptors can write to it too.
#[derive(Clone, Default)]
pub struct Transcript {
    lines: Arc<Mutex<Vec<String>>>,
    sink: Option<Sink>,
}

impl std::fmt::Debug for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcript")
            .field("lines", &self.lines())
            .finish()
    }
}

impl Transcript {
    /// A transcript that only collects lines.
    pub fn new() -> Transcript {
        Transcript::default()
    }

    /// A transcript that also hands every line to `sink` as it is added (the binaries
    /// pass `|l| println!("{l}")`).
    pub fn with_sink(sink: impl Fn(&str) + Send + Sync + 'static) -> Transcript {
        Transcript {
            lines: Arc::default(),
            sink: Some(Arc::new(sink)),
        }
    }

    /// Adds one line.
    pub fn line(&self, line: impl Into<String>) {
        let line = line.into();
        tracing::debug!(target: "examples::transcript", "{line}");
        if let Some(sink) = &self.sink {
            sink(&line);
        }
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    /// All lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// True if some line contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.lines().iter().any(|l| l.contains(needle))
    }
}

/// A server running in a background task on a real TCP listener.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Starts `builder` on `127.0.0.1:0` (an ephemeral port).
    pub async fn start(builder: ServerBuilder) -> std::io::Result<RunningServer> {
        RunningServer::start_on(builder, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts `builder` on `addr`.
    pub async fn start_on(
        builder: ServerBuilder,
        addr: SocketAddr,
    ) -> std::io::Result<RunningServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel::<()>();
        let signal = async move {
            let _ = rx.await;
        };
        let task = tokio::spawn(builder.serve_with_incoming_shutdown(listener, signal));
        Ok(RunningServer {
            addr,
            shutdown: Some(tx),
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address as a channel target, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shuts the server down gracefully and waits for it to stop.
    pub async fn shutdown(mut self) -> Result<(), BoxError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await??;
        Ok(())
    }

    /// Serves until the process is stopped (what the server binaries do).
    pub async fn wait(mut self) -> Result<(), BoxError> {
        (&mut self.task).await??;
        Ok(())
    }
}

/// Connects a channel to `target` (`http://host:port`), failing if the first connection
/// cannot be made.
pub async fn connect(target: &str) -> Result<Channel, BoxError> {
    Ok(Channel::builder(target).connect().await?)
}

/// The value following `flag` on the command line (`--flag VALUE` or `--flag=VALUE`).
pub fn arg_value(args: &[String], flag: &str) -> Option<String> {
    let prefix = format!("{flag}=");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == flag {
            return it.next().cloned();
        }
        if let Some(v) = a.strip_prefix(&prefix) {
            return Some(v.to_string());
        }
    }
    None
}

/// Returns `Err(message)` from the enclosing function unless `cond` holds: the examples
/// check what they receive, so a wrong answer makes them fail (and exit non-zero).
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+).into());
        }
    };
}

/// A metadata map from `(key, value)` ASCII pairs.
pub fn metadata(pairs: &[(&str, &str)]) -> Result<grpc_runtime::MetadataMap, BoxError> {
    let mut md = grpc_runtime::MetadataMap::new();
    for (k, v) in pairs {
        md.insert(k, *v)?;
    }
    Ok(md)
}
