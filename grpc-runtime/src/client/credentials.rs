//! Call credentials: authentication metadata (tokens, API keys) that a channel or a single
//! call attaches to each attempt, and the transport security they require.
//!
//! A [`CallCredentials`] is asked for metadata once per attempt, after the interceptors
//! ran and a connection was picked, so it sees the connection's [`SecurityLevel`] and the
//! call's service URL and method (grpc-go's `PerRPCCredentials`, the gRPC auth guide's
//! "call credentials"). Credentials set on the channel
//! ([`Endpoint::call_credentials`](crate::client::Endpoint::call_credentials)) run first,
//! in the order they were added, then the call's own
//! ([`Request::set_call_credentials`](crate::Request::set_call_credentials)); their
//! metadata is appended in that order.
//!
//! Each credential declares the minimum security it needs, by default
//! [`SecurityLevel::PrivacyAndIntegrity`]: on a plaintext TCP connection such a call fails
//! with UNAUTHENTICATED before its request is sent, so a token never leaves in clear
//! text. [`allow_insecure`] lifts that for one credential (e.g. localhost tests). Unix
//! domain sockets count as private (local, as grpc-go's local credentials treat them).
//!
//! Ready-made: [`MetadataCredentials`] (a static bearer token or any fixed metadata) and
//! [`TokenSource`] (a refreshing token: an async closure returning a token and its expiry,
//! cached until shortly before it expires, with one refresh in flight at a time).
//!
//! A credential that fails returns a [`Status`]; it becomes the call's status, except
//! that codes a control plane must not produce (gRFC A54: INVALID_ARGUMENT, NOT_FOUND,
//! ALREADY_EXISTS, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, DATA_LOSS) turn into
//! INTERNAL.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::metadata::MetadataMap;
use crate::request::Request;
use crate::status::{Code, Status};

/// The security a connection provides, ordered from none to full (gRPC's
/// `SecurityLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecurityLevel {
    /// Plaintext TCP.
    NoSecurity,
    /// Integrity protection only.
    IntegrityOnly,
    /// TLS, or a Unix domain socket (local to the host).
    PrivacyAndIntegrity,
}

/// What a [`CallCredentials`] knows about the attempt it authenticates.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    service_url: String,
    method: String,
    authority: String,
    security_level: SecurityLevel,
}

impl RequestInfo {
    pub(crate) fn new(path: &str, authority: &str, security_level: SecurityLevel) -> RequestInfo {
        let (service, method) = path
            .trim_start_matches('/')
            .rsplit_once('/')
            .unwrap_or((path, ""));
        // grpc-go's audience: https://<authority without :443>/<package.Service>.
        let host = authority.strip_suffix(":443").unwrap_or(authority);
        RequestInfo {
            service_url: format!("https://{host}/{service}"),
            method: method.to_string(),
            authority: authority.to_string(),
            security_level,
        }
    }

    /// The audience of a token for this call: `https://<authority>/<package.Service>`
    /// (`:443` dropped), as grpc-go and the other gRPC implementations compute it.
    pub fn service_url(&self) -> &str {
        &self.service_url
    }

    /// The method name, e.g. `SayHello`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The `:authority` the call is sent with.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The security of the connection the attempt was picked for.
    pub fn security_level(&self) -> SecurityLevel {
        self.security_level
    }
}

/// The future [`CallCredentials::request_metadata`] returns.
pub type CredentialsFuture<'a> =
    Pin<Box<dyn Future<Output = Result<MetadataMap, Status>> + Send + 'a>>;

/// Authentication metadata for each attempt of a call (grpc-go's `PerRPCCredentials`).
///
/// ```
/// use grpc_runtime::client::credentials::{CallCredentials, CredentialsFuture, RequestInfo};
/// use grpc_runtime::{MetadataMap, Status};
///
/// /// Signs each call with the method it is for.
/// struct Signed;
///
/// impl CallCredentials for Signed {
///     fn request_metadata<'a>(&'a self, info: &'a RequestInfo) -> CredentialsFuture<'a> {
///         Box::pin(async move {
///             let mut md = MetadataMap::new();
///             md.insert("x-signed-for", info.method()).map_err(|e| Status::internal(e.to_string()))?;
///             Ok(md)
///         })
///     }
/// }
/// ```
pub trait CallCredentials: Send + Sync + 'static {
    /// The metadata to add to this attempt's request headers, or the status to fail the
    /// call with.
    fn request_metadata<'a>(&'a self, info: &'a RequestInfo) -> CredentialsFuture<'a>;

    /// The least connection security these credentials may be sent over (default:
    /// [`SecurityLevel::PrivacyAndIntegrity`]).
    fn min_security_level(&self) -> SecurityLevel {
        SecurityLevel::PrivacyAndIntegrity
    }
}

impl<C: CallCredentials + ?Sized> CallCredentials for Arc<C> {
    fn request_metadata<'a>(&'a self, info: &'a RequestInfo) -> CredentialsFuture<'a> {
        (**self).request_metadata(info)
    }
    fn min_security_level(&self) -> SecurityLevel {
        (**self).min_security_level()
    }
}

/// Fixed metadata on every call, e.g. a static bearer token or an API key.
///
/// ```
/// use grpc_runtime::client::credentials::MetadataCredentials;
///
/// let token = MetadataCredentials::bearer_token("s3cr3t").unwrap();
/// let api_key = MetadataCredentials::single("x-api-key", "k-123").unwrap();
/// # let _ = (token, api_key);
/// ```
#[derive(Debug, Clone)]
pub struct MetadataCredentials {
    metadata: MetadataMap,
}

impl MetadataCredentials {
    /// Sends `metadata` with every call.
    pub fn new(metadata: MetadataMap) -> MetadataCredentials {
        MetadataCredentials { metadata }
    }

    /// `authorization: Bearer <token>`.
    pub fn bearer_token(token: &str) -> Result<MetadataCredentials, Status> {
        MetadataCredentials::single("authorization", &format!("Bearer {token}"))
    }

    /// One ASCII metadata entry.
    pub fn single(key: &str, value: &str) -> Result<MetadataCredentials, Status> {
        let mut md = MetadataMap::new();
        md.insert(key, value).map_err(|e| {
            Status::invalid_argument(format!("invalid credential metadata {key:?}: {e}"))
        })?;
        Ok(MetadataCredentials { metadata: md })
    }
}

impl CallCredentials for MetadataCredentials {
    fn request_metadata<'a>(&'a self, _info: &'a RequestInfo) -> CredentialsFuture<'a> {
        let md = self.metadata.clone();
        Box::pin(async move { Ok(md) })
    }
}

/// A token with the instant it stops being valid, as a [`TokenSource`]'s closure returns
/// it.
#[derive(Debug, Clone)]
pub struct Token {
    /// The token, sent as `authorization: Bearer <value>`.
    pub value: String,
    /// When the token expires; `None` if it never does.
    pub expires_in: Option<Duration>,
}

type FetchFuture = Pin<Box<dyn Future<Output = Result<Token, Status>> + Send>>;
type Fetch = Box<dyn Fn() -> FetchFuture + Send + Sync>;

/// A refreshing bearer token: `fetch` is called for the first call, then again once the
/// cached token is within [`TokenSource::refresh_margin`] (default 10 s, as Go's oauth2)
/// of its expiry. Concurrent calls share one fetch: the others wait for it. A failed
/// fetch fails the calls waiting for it (with its status); the next call fetches again.
///
/// ```
/// use std::time::Duration;
/// use grpc_runtime::client::credentials::{Token, TokenSource};
///
/// let source = TokenSource::new(|| async {
///     // e.g. ask an identity provider
///     Ok(Token { value: "fresh-token".into(), expires_in: Some(Duration::from_secs(3600)) })
/// });
/// # let _ = source;
/// ```
pub struct TokenSource {
    fetch: Fetch,
    margin: Duration,
    cached: tokio::sync::Mutex<Option<(MetadataMap, Option<Instant>)>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A token source calling `fetch` whenever it needs a token.
    pub fn new<F, Fut>(fetch: F) -> TokenSource
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Token, Status>> + Send + 'static,
    {
        TokenSource {
            fetch: Box::new(move || Box::pin(fetch())),
            margin: Duration::from_secs(10),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// How long before its expiry a token is replaced (default 10 s).
    pub fn refresh_margin(mut self, margin: Duration) -> TokenSource {
        self.margin = margin;
        self
    }

    async fn current(&self) -> Result<MetadataMap, Status> {
        // Held across the fetch: one fetch in flight, the other calls wait for its token.
        let mut cached = self.cached.lock().await;
        if let Some((md, expiry)) = cached.as_ref() {
            if expiry.map_or(true, |e| Instant::now() + self.margin < e) {
                return Ok(md.clone());
            }
        }
        let token = (self.fetch)().await?;
        let mut md = MetadataMap::new();
        md.insert("authorization", format!("Bearer {}", token.value))
            .map_err(|e| {
                Status::unauthenticated(format!("token source returned an invalid token: {e}"))
            })?;
        let expiry = token.expires_in.map(|d| Instant::now() + d);
        *cached = Some((md.clone(), expiry));
        Ok(md)
    }
}

impl CallCredentials for TokenSource {
    fn request_metadata<'a>(&'a self, _info: &'a RequestInfo) -> CredentialsFuture<'a> {
        Box::pin(self.current())
    }
}

/// `credentials`, allowed over any transport, plaintext included: for tests against
/// localhost, or a network the deployment trusts. Without it, credentials that need
/// privacy fail the call on a plaintext connection.
///
/// ```
/// use grpc_runtime::client::credentials::{allow_insecure, MetadataCredentials};
///
/// let local_test_token = allow_insecure(MetadataCredentials::bearer_token("test").unwrap());
/// # let _ = local_test_token;
/// ```
pub fn allow_insecure<C: CallCredentials>(credentials: C) -> InsecureAllowed<C> {
    InsecureAllowed(credentials)
}

/// Credentials allowed over plaintext; see [`allow_insecure`].
#[derive(Debug, Clone)]
pub struct InsecureAllowed<C>(C);

impl<C: CallCredentials> CallCredentials for InsecureAllowed<C> {
    fn request_metadata<'a>(&'a self, info: &'a RequestInfo) -> CredentialsFuture<'a> {
        self.0.request_metadata(info)
    }
    fn min_security_level(&self) -> SecurityLevel {
        SecurityLevel::NoSecurity
    }
}

/// Runs `creds` in order for one attempt; their metadata, appended in order.
pub(crate) async fn request_metadata(
    creds: &[Arc<dyn CallCredentials>],
    info: &RequestInfo,
) -> Result<MetadataMap, Status> {
    let mut out = MetadataMap::new();
    for c in creds {
        let need = c.min_security_level();
        if info.security_level < need {
            return Err(Status::unauthenticated(format!(
                "call credentials require transport security ({need:?}) but the connection has {:?}; \
                 use TLS, or wrap the credentials in credentials::allow_insecure",
                info.security_level
            )));
        }
        let md = c.request_metadata(info).await.map_err(restrict_code)?;
        out.merge(md);
    }
    Ok(out)
}

/// gRFC A54: a credential may not produce codes that only a server's application logic
/// may return; those become INTERNAL.
fn restrict_code(status: Status) -> Status {
    match status.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss => Status::internal(format!(
            "call credentials returned illegal status code {:?}: {}",
            status.code(),
            status.message()
        )),
        _ => status,
    }
}

/// A request's own call credentials (in its extensions, so `Request` stays one size).
#[derive(Clone)]
struct CallCredentialsExt(Vec<Arc<dyn CallCredentials>>);

/// Per-call credentials ride in the request's extensions; the methods live here so the
/// shared request envelope (`request.rs`) does not know the client's credentials.
impl<T> Request<T> {
    /// Client side: call credentials for this call only (grpc-go's `grpc.PerRPCCredentials`
    /// call option), run after the channel's; calling it again adds more, in order.
    ///
    /// ```
    /// use grpc_runtime::client::credentials::MetadataCredentials;
    /// use grpc_runtime::Request;
    ///
    /// let mut req = Request::new(());
    /// req.set_call_credentials(MetadataCredentials::bearer_token("user-token").unwrap());
    /// ```
    pub fn set_call_credentials(&mut self, credentials: impl CallCredentials) {
        let c: Arc<dyn CallCredentials> = Arc::new(credentials);
        match self.extensions_mut().get_mut::<CallCredentialsExt>() {
            Some(list) => list.0.push(c),
            None => {
                self.extensions_mut().insert(CallCredentialsExt(vec![c]));
            }
        }
    }

    /// Client side: the call's own credentials, taken out of the request.
    pub(crate) fn take_call_credentials(&mut self) -> Vec<Arc<dyn CallCredentials>> {
        self.extensions_mut()
            .remove::<CallCredentialsExt>()
            .map(|c| c.0)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn info(level: SecurityLevel) -> RequestInfo {
        RequestInfo::new("/pkg.Greeter/SayHello", "example.com:443", level)
    }

    #[test]
    fn service_url_and_method_follow_grpc_go() {
        let i = info(SecurityLevel::PrivacyAndIntegrity);
        assert_eq!(i.service_url(), "https://example.com/pkg.Greeter");
        assert_eq!(i.method(), "SayHello");
        let i = RequestInfo::new(
            "/pkg.Greeter/SayHello",
            "localhost:50051",
            SecurityLevel::NoSecurity,
        );
        assert_eq!(i.service_url(), "https://localhost:50051/pkg.Greeter");
    }

    #[tokio::test]
    async fn plaintext_refuses_private_credentials_unless_allowed() {
        let token: Arc<dyn CallCredentials> =
            Arc::new(MetadataCredentials::bearer_token("t").unwrap());
        let err = request_metadata(
            std::slice::from_ref(&token),
            &info(SecurityLevel::NoSecurity),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        assert!(
            err.message().contains("allow_insecure"),
            "{}",
            err.message()
        );
        let md = request_metadata(&[token], &info(SecurityLevel::PrivacyAndIntegrity))
            .await
            .unwrap();
        assert_eq!(md.get("authorization"), Some("Bearer t"));
        let open: Arc<dyn CallCredentials> = Arc::new(allow_insecure(
            MetadataCredentials::bearer_token("t").unwrap(),
        ));
        assert!(request_metadata(&[open], &info(SecurityLevel::NoSecurity))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn composed_in_order_and_illegal_codes_become_internal() {
        let a: Arc<dyn CallCredentials> =
            Arc::new(MetadataCredentials::single("x-order", "a").unwrap());
        let b: Arc<dyn CallCredentials> =
            Arc::new(MetadataCredentials::single("x-order", "b").unwrap());
        let md = request_metadata(&[a, b], &info(SecurityLevel::PrivacyAndIntegrity))
            .await
            .unwrap();
        assert_eq!(md.get_all("x-order").collect::<Vec<_>>(), ["a", "b"]);

        struct Fails(Status);
        impl CallCredentials for Fails {
            fn request_metadata<'a>(&'a self, _: &'a RequestInfo) -> CredentialsFuture<'a> {
                let s = self.0.clone();
                Box::pin(async move { Err(s) })
            }
        }
        let f: Arc<dyn CallCredentials> = Arc::new(Fails(Status::unavailable("idp down")));
        let e = request_metadata(&[f], &info(SecurityLevel::PrivacyAndIntegrity))
            .await
            .unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::Unavailable, "idp down"));
        let f: Arc<dyn CallCredentials> = Arc::new(Fails(Status::not_found("no such key")));
        let e = request_metadata(&[f], &info(SecurityLevel::PrivacyAndIntegrity))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Internal);
        assert!(e.message().contains("no such key"));
    }

    #[tokio::test(start_paused = true)]
    async fn token_source_refreshes_once_before_expiry_and_shares_the_fetch() {
        let fetches = Arc::new(AtomicUsize::new(0));
        let n = Arc::clone(&fetches);
        let source = Arc::new(TokenSource::new(move || {
            let k = n.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(Token {
                    value: format!("t{k}"),
                    expires_in: Some(Duration::from_secs(60)),
                })
            }
        }));
        let i = info(SecurityLevel::PrivacyAndIntegrity);
        let calls: Vec<_> = (0..100)
            .map(|_| {
                let (s, i) = (Arc::clone(&source), i.clone());
                tokio::spawn(async move {
                    s.request_metadata(&i)
                        .await
                        .unwrap()
                        .get("authorization")
                        .map(str::to_string)
                })
            })
            .collect();
        for c in calls {
            assert_eq!(c.await.unwrap().as_deref(), Some("Bearer t0"));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // Still valid 45 s later; within the 10 s margin at 51 s: one new fetch.
        tokio::time::advance(Duration::from_secs(45)).await;
        assert_eq!(
            source
                .request_metadata(&i)
                .await
                .unwrap()
                .get("authorization"),
            Some("Bearer t0")
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(
            source
                .request_metadata(&i)
                .await
                .unwrap()
                .get("authorization"),
            Some("Bearer t1")
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_fetch_fails_the_call_and_the_next_call_fetches_again() {
        let fetches = Arc::new(AtomicUsize::new(0));
        let n = Arc::clone(&fetches);
        let source = TokenSource::new(move || {
            let k = n.fetch_add(1, Ordering::SeqCst);
            async move {
                if k == 0 {
                    Err(Status::unavailable("identity provider unreachable"))
                } else {
                    Ok(Token {
                        value: "ok".into(),
                        expires_in: None,
                    })
                }
            }
        });
        let i = info(SecurityLevel::PrivacyAndIntegrity);
        assert_eq!(
            source.request_metadata(&i).await.unwrap_err().code(),
            Code::Unavailable
        );
        assert_eq!(
            source
                .request_metadata(&i)
                .await
                .unwrap()
                .get("authorization"),
            Some("Bearer ok")
        );
        assert_eq!(
            source
                .request_metadata(&i)
                .await
                .unwrap()
                .get("authorization"),
            Some("Bearer ok")
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }
}
