//! Authorization policies (gRFC A43): the JSON policy language grpc-go's
//! `authz` package and gRPC C++ accept, its evaluation against one call
//! (method path, request metadata, the client's mTLS identity), and the two
//! server interceptors that enforce it: [`AuthzInterceptor`] for a fixed
//! policy and [`FileWatcherInterceptor`] for a policy file reloaded when it
//! changes.
//!
//! A policy has `deny_rules` and `allow_rules`. A call matching any deny rule
//! is rejected; otherwise a call matching any allow rule goes on to the
//! handler; anything else is rejected (default deny). Rejected calls end with
//! `PERMISSION_DENIED` and the message `unauthorized RPC request rejected`,
//! never naming the policy or the rule, and never reach the handler.
//!
//! ```
//! use grpc_runtime::server::authz::AuthzInterceptor;
//! use grpc_runtime::server::Server;
//!
//! let policy = r#"{
//!   "name": "example",
//!   "deny_rules": [{"name": "no-secrets", "request": {"paths": ["*/Secret"]}}],
//!   "allow_rules": [{
//!     "name": "admins",
//!     "source": {"principals": ["spiffe://example.org/admin"]},
//!     "request": {"paths": ["/pkg.Service/*"]}
//!   }]
//! }"#;
//! let builder = Server::builder().add_interceptor(AuthzInterceptor::from_json(policy)?);
//! # drop(builder);
//! # Ok::<(), grpc_runtime::server::authz::PolicyError>(())
//! ```
//!
//! Matching follows grpc-go (see `docs/security.md`):
//! - patterns (paths, header values, principals): `"abc"` exact, `"abc*"`
//!   prefix, `"*abc"` suffix, `"*"` any non-empty value;
//! - `paths` match the full method path (`/pkg.Service/Method`); several
//!   paths are ORed;
//! - `headers` are ANDed; each header's `values` are ORed and matched against
//!   all of the header's values joined with `,`; an absent header matches
//!   nothing (not even `"*"`);
//! - `principals` are ORed and need TLS: without TLS none matches; over TLS
//!   without a client certificate only `""` matches; with a certificate the
//!   principal is matched against its URI SANs if it has any, else its DNS
//!   SANs if it has any, else its subject as Go prints it (`CN=client,O=Org`);
//! - an empty or missing `source` / `request` matches every call.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, RwLock};
use std::time::Duration;

use serde_json::{Map, Value};

use super::interceptor::{CallHead, Interceptor, Next};
use crate::context::ServerContext;
use crate::metadata::{MetadataMap, MetadataValue};
use crate::request::BoxFuture;
use crate::status::Status;

/// The status message of every rejected call (grpc-go's), deliberately
/// saying nothing about the policy.
pub const DENIED_MESSAGE: &str = "unauthorized RPC request rejected";

/// Header keys a policy may not match on (gRFC A43: `host`, hop-by-hop
/// headers; pseudo headers and `grpc-*` are refused separately).
const UNSUPPORTED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

// ------------------------------------------------------------------ errors

/// Why a policy (or a policy file) was refused. The message names the
/// offending field, e.g. `allow_rules[0].request.headers[1].key: ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyError {
    message: String,
}

impl PolicyError {
    fn new(message: impl Into<String>) -> PolicyError {
        PolicyError {
            message: message.into(),
        }
    }

    fn at(field: &str, message: impl fmt::Display) -> PolicyError {
        PolicyError::new(format!("{field}: {message}"))
    }

    /// The reason, without the `invalid authorization policy` prefix.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid authorization policy: {}", self.message)
    }
}

impl std::error::Error for PolicyError {}

/// A client certificate that could not be read (the call is denied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateError(String);

impl fmt::Display for CertificateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read the client certificate: {}", self.0)
    }
}

impl std::error::Error for CertificateError {}

// ------------------------------------------------------------------ patterns

/// One A43 string pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// `"abc"`
    Exact(String),
    /// `"abc*"`
    Prefix(String),
    /// `"*abc"`
    Suffix(String),
    /// `"*"`: any non-empty value.
    Present,
}

impl Pattern {
    fn parse(s: &str) -> Pattern {
        if s == "*" {
            Pattern::Present
        } else if let Some(p) = s.strip_suffix('*') {
            Pattern::Prefix(p.to_string())
        } else if let Some(p) = s.strip_prefix('*') {
            Pattern::Suffix(p.to_string())
        } else {
            Pattern::Exact(s.to_string())
        }
    }

    fn matches(&self, value: &[u8]) -> bool {
        match self {
            Pattern::Exact(s) => value == s.as_bytes(),
            Pattern::Prefix(p) => value.starts_with(p.as_bytes()),
            Pattern::Suffix(p) => value.ends_with(p.as_bytes()),
            Pattern::Present => !value.is_empty(),
        }
    }
}

// ------------------------------------------------------------------ policy

#[derive(Clone, Debug)]
struct HeaderRule {
    key: String,
    values: Vec<Pattern>,
}

#[derive(Clone, Debug)]
struct Rule {
    /// Shared with every [`Decision`] it makes (no copy per call).
    name: Arc<str>,
    /// Empty: any peer.
    principals: Vec<Pattern>,
    /// Empty: any path.
    paths: Vec<Pattern>,
    /// All must match.
    headers: Vec<HeaderRule>,
}

/// When audit events are emitted (gRFC A59 `audit_condition`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuditCondition {
    /// Never (the default).
    #[default]
    None,
    /// For denied calls.
    OnDeny,
    /// For allowed calls.
    OnAllow,
    /// For every call.
    OnDenyAndAllow,
}

impl AuditCondition {
    fn applies(self, allowed: bool) -> bool {
        match self {
            AuditCondition::None => false,
            AuditCondition::OnDeny => !allowed,
            AuditCondition::OnAllow => allowed,
            AuditCondition::OnDenyAndAllow => true,
        }
    }
}

/// A parsed, validated gRFC A43 authorization policy.
///
/// ```
/// use grpc_runtime::server::authz::{AuthorizationPolicy, PeerIdentity};
/// use grpc_runtime::MetadataMap;
///
/// let policy = AuthorizationPolicy::from_json(
///     r#"{"name": "p", "allow_rules": [{"name": "echo", "request": {"paths": ["/test.Echo/*"]}}]}"#,
/// )?;
/// let md = MetadataMap::new();
/// assert!(policy.evaluate("/test.Echo/Unary", &md, &PeerIdentity::Plaintext).is_allowed());
/// assert!(!policy.evaluate("/other.Svc/Call", &md, &PeerIdentity::Plaintext).is_allowed());
/// # Ok::<(), grpc_runtime::server::authz::PolicyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct AuthorizationPolicy {
    name: String,
    deny_rules: Vec<Rule>,
    allow_rules: Vec<Rule>,
    audit_condition: AuditCondition,
    /// `stdout_logger` configured: emit audit events as tracing events.
    audit_to_log: bool,
    /// Some rule has principals, or audit events name the principal: only then
    /// is the client certificate read for a call.
    needs_identity: bool,
}

/// The outcome of evaluating a policy for one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    rule: Option<Arc<str>>,
}

impl Decision {
    /// True when the call may go on to the handler.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }

    /// The rule that decided: the deny rule that matched, or the allow rule
    /// that matched; `None` when the call was denied because no allow rule
    /// matched.
    pub fn matched_rule(&self) -> Option<&str> {
        self.rule.as_deref()
    }
}

/// Who the client is, for `principals`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerIdentity {
    /// The call did not arrive over TLS: no principal matches, not even `""`.
    Plaintext,
    /// TLS without a client certificate: only the principal `""` matches.
    TlsWithoutCertificate,
    /// TLS with a client certificate.
    Certificate(CertificateIdentity),
}

/// The names of a client certificate that principals are matched against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateIdentity {
    /// URI subject alternative names (e.g. SPIFFE IDs).
    pub uri_sans: Vec<String>,
    /// DNS subject alternative names.
    pub dns_sans: Vec<String>,
    /// IP address subject alternative names (not used for principals, as in grpc-go).
    pub ip_sans: Vec<std::net::IpAddr>,
    /// The subject distinguished name as Go's `pkix.Name.String()` prints it
    /// (RFC 2253 style, most specific first: `CN=client,OU=dev,O=Org,C=US`).
    pub subject: String,
}

impl CertificateIdentity {
    /// Reads the names of a DER-encoded X.509 certificate. Needs the `tls` feature
    /// (webpki parses the certificate).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn from_der(der: &[u8]) -> Result<CertificateIdentity, CertificateError> {
        let der = rustls::pki_types::CertificateDer::from(der);
        let cert =
            webpki::EndEntityCert::try_from(&der).map_err(|e| CertificateError(e.to_string()))?;
        let subject = go_subject_string(cert.subject())
            .ok_or_else(|| CertificateError("malformed subject".into()))?;
        Ok(CertificateIdentity {
            uri_sans: cert.valid_uri_names().map(str::to_string).collect(),
            dns_sans: cert.valid_dns_names().map(str::to_string).collect(),
            ip_sans: ip_sans(der.as_ref()),
            subject,
        })
    }

    /// The authenticated principal: the first name principals are matched against (the
    /// first URI SAN, else the first DNS SAN, else the subject).
    pub fn principal(&self) -> &str {
        self.names().first().copied().unwrap_or("")
    }

    /// The identity principals are matched against, in grpc-go's order: the
    /// URI SANs if there are any, else the DNS SANs if there are any, else
    /// the subject.
    fn names(&self) -> Vec<&str> {
        if !self.uri_sans.is_empty() {
            self.uri_sans.iter().map(String::as_str).collect()
        } else if !self.dns_sans.is_empty() {
            self.dns_sans.iter().map(String::as_str).collect()
        } else {
            vec![self.subject.as_str()]
        }
    }
}

impl PeerIdentity {
    /// The identity of the client of a server call: its leaf certificate's
    /// names over TLS with client authentication.
    pub fn from_context(ctx: &ServerContext) -> Result<PeerIdentity, CertificateError> {
        if !ctx.is_tls() {
            return Ok(PeerIdentity::Plaintext);
        }
        #[cfg(feature = "tls")]
        match ctx.peer_certificates().and_then(|c| c.first()) {
            None => Ok(PeerIdentity::TlsWithoutCertificate),
            Some(leaf) => CertificateIdentity::from_der(leaf).map(PeerIdentity::Certificate),
        }
        // Without the feature no call arrives over TLS.
        #[cfg(not(feature = "tls"))]
        Ok(PeerIdentity::TlsWithoutCertificate)
    }

    fn matches_any(&self, principals: &[Pattern]) -> bool {
        match self {
            PeerIdentity::Plaintext => false,
            PeerIdentity::TlsWithoutCertificate => principals.iter().any(|p| p.matches(b"")),
            PeerIdentity::Certificate(c) => {
                let names = c.names();
                principals
                    .iter()
                    .any(|p| names.iter().any(|n| p.matches(n.as_bytes())))
            }
        }
    }

    /// The SPIFFE ID (first `spiffe://` URI SAN) for audit events, or "".
    fn audit_principal(&self) -> &str {
        match self {
            PeerIdentity::Certificate(c) => c
                .uri_sans
                .iter()
                .find(|u| u.starts_with("spiffe://"))
                .map(String::as_str)
                .unwrap_or(""),
            _ => "",
        }
    }
}

impl Rule {
    fn matches(&self, path: &str, metadata: &MetadataMap, peer: &PeerIdentity) -> bool {
        (self.principals.is_empty() || peer.matches_any(&self.principals))
            && (self.paths.is_empty() || self.paths.iter().any(|p| p.matches(path.as_bytes())))
            && self.headers.iter().all(|h| h.matches(metadata))
    }
}

impl HeaderRule {
    fn matches(&self, metadata: &MetadataMap) -> bool {
        let mut joined: Option<Vec<u8>> = None;
        for (key, value) in metadata.iter() {
            if key != self.key {
                continue;
            }
            let bytes: &[u8] = match value {
                MetadataValue::Ascii(v) => v.as_bytes(),
                MetadataValue::Binary(b) => b,
            };
            match &mut joined {
                None => joined = Some(bytes.to_vec()),
                Some(j) => {
                    j.push(b',');
                    j.extend_from_slice(bytes);
                }
            }
        }
        match joined {
            None => false,
            Some(v) => self.values.iter().any(|p| p.matches(&v)),
        }
    }
}

impl AuthorizationPolicy {
    /// Parses and validates a policy. Unknown fields, missing required
    /// fields (`name`, `allow_rules`, rule `name`s, header `key`/`values`),
    /// wrong JSON types, duplicate rule names and headers that may not be
    /// matched (`:`-pseudo headers, `grpc-*`, `host`, hop-by-hop headers,
    /// `content-type`) are errors naming the field.
    pub fn from_json(json: &str) -> Result<AuthorizationPolicy, PolicyError> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| PolicyError::new(format!("not valid JSON: {e}")))?;
        let top = object(&value, "policy")?;
        check_fields(
            top,
            "",
            &["name", "deny_rules", "allow_rules", "audit_logging_options"],
        )?;
        let name = match opt_string(top, "name", "name")? {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => return Err(PolicyError::at("name", "is required")),
        };
        let deny_rules = parse_rules(top.get("deny_rules"), "deny_rules")?;
        let allow_rules = parse_rules(top.get("allow_rules"), "allow_rules")?;
        if allow_rules.is_empty() {
            return Err(PolicyError::at(
                "allow_rules",
                "is required and must not be empty",
            ));
        }
        let (audit_condition, audit_to_log) = parse_audit(top.get("audit_logging_options"))?;
        let needs_identity = (audit_to_log && audit_condition != AuditCondition::None)
            || deny_rules
                .iter()
                .chain(&allow_rules)
                .any(|r| !r.principals.is_empty());
        Ok(AuthorizationPolicy {
            name,
            deny_rules,
            allow_rules,
            audit_condition,
            audit_to_log,
            needs_identity,
        })
    }

    /// The policy's `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configured audit condition (`audit_logging_options`).
    pub fn audit_condition(&self) -> AuditCondition {
        self.audit_condition
    }

    /// Decides one call: deny rules first, then allow rules, else deny.
    pub fn evaluate(&self, path: &str, metadata: &MetadataMap, peer: &PeerIdentity) -> Decision {
        if let Some(r) = self
            .deny_rules
            .iter()
            .find(|r| r.matches(path, metadata, peer))
        {
            return Decision {
                allowed: false,
                rule: Some(Arc::clone(&r.name)),
            };
        }
        match self
            .allow_rules
            .iter()
            .find(|r| r.matches(path, metadata, peer))
        {
            Some(r) => Decision {
                allowed: true,
                rule: Some(Arc::clone(&r.name)),
            },
            None => Decision {
                allowed: false,
                rule: None,
            },
        }
    }

    /// Evaluates the call `head` describes and logs the decision; `Err` is
    /// the status to end a rejected call with.
    fn authorize(&self, head: &CallHead) -> Result<(), Status> {
        let method = head.method();
        let identity = if self.needs_identity {
            PeerIdentity::from_context(head.context())
        } else {
            // No rule looks at it: skip reading the certificate.
            Ok(PeerIdentity::Plaintext)
        };
        let peer = match identity {
            Ok(p) => p,
            Err(e) => {
                // rustls accepted the certificate, so this is not expected; fail closed.
                tracing::warn!(policy = %self.name, method, "denying call: {e}");
                return Err(Status::permission_denied(DENIED_MESSAGE));
            }
        };
        let decision = self.evaluate(method, &head.metadata, &peer);
        if self.audit_to_log && self.audit_condition.applies(decision.allowed) {
            tracing::info!(
                target: "grpc_runtime::authz::audit",
                rpc_method = method,
                principal = peer.audit_principal(),
                policy_name = %self.name,
                matched_rule = decision.matched_rule().unwrap_or(""),
                authorized = decision.allowed,
                "authorization decision"
            );
        }
        if decision.allowed {
            return Ok(());
        }
        tracing::debug!(
            policy = %self.name,
            rule = decision.matched_rule().unwrap_or("<no allow rule matched>"),
            method,
            "{DENIED_MESSAGE}"
        );
        Err(Status::permission_denied(DENIED_MESSAGE))
    }
}

// ------------------------------------------------------------------ JSON helpers

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn join(base: &str, field: &str) -> String {
    if base.is_empty() {
        field.to_string()
    } else {
        format!("{base}.{field}")
    }
}

fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>, PolicyError> {
    v.as_object()
        .ok_or_else(|| PolicyError::at(field, format!("must be an object, not {}", type_name(v))))
}

/// Unknown fields are errors: a policy written for a newer gRPC must not be
/// half-applied (gRFC A43).
fn check_fields(obj: &Map<String, Value>, base: &str, known: &[&str]) -> Result<(), PolicyError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(PolicyError::at(
            &join(base, k),
            format!("unknown field (expected one of: {})", known.join(", ")),
        )),
    }
}

/// A field that may be absent or `null` (both mean "not set", as in grpc-go).
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn opt_string<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, PolicyError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(PolicyError::at(
            path,
            format!("must be a string, not {}", type_name(v)),
        )),
    }
}

fn opt_array<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a [Value], PolicyError> {
    match field(obj, key) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(PolicyError::at(
            path,
            format!("must be an array, not {}", type_name(v)),
        )),
    }
}

fn patterns(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Vec<Pattern>, PolicyError> {
    opt_array(obj, key, path)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(Pattern::parse(s)),
            other => Err(PolicyError::at(
                &format!("{path}[{i}]"),
                format!("must be a string, not {}", type_name(other)),
            )),
        })
        .collect()
}

fn parse_rules(v: Option<&Value>, list: &str) -> Result<Vec<Rule>, PolicyError> {
    let items = match v.filter(|v| !v.is_null()) {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(PolicyError::at(
                list,
                format!("must be an array, not {}", type_name(other)),
            ))
        }
    };
    let mut names = HashSet::new();
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{list}[{i}]");
        let rule = parse_rule(item, &at)?;
        if !names.insert(rule.name.clone()) {
            return Err(PolicyError::at(
                &join(&at, "name"),
                format!("duplicate rule name {:?} in {list}", rule.name),
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

fn parse_rule(v: &Value, at: &str) -> Result<Rule, PolicyError> {
    let obj = object(v, at)?;
    check_fields(obj, at, &["name", "source", "request"])?;
    let name: Arc<str> = match opt_string(obj, "name", &join(at, "name"))? {
        Some(n) if !n.is_empty() => n.into(),
        _ => return Err(PolicyError::at(&join(at, "name"), "is required")),
    };
    let mut principals = Vec::new();
    if let Some(source) = field(obj, "source") {
        let sat = join(at, "source");
        let source = object(source, &sat)?;
        check_fields(source, &sat, &["principals"])?;
        principals = patterns(source, "principals", &join(&sat, "principals"))?;
    }
    let (mut paths, mut headers) = (Vec::new(), Vec::new());
    if let Some(request) = field(obj, "request") {
        let rat = join(at, "request");
        let request = object(request, &rat)?;
        check_fields(request, &rat, &["paths", "headers"])?;
        paths = patterns(request, "paths", &join(&rat, "paths"))?;
        for (i, h) in opt_array(request, "headers", &join(&rat, "headers"))?
            .iter()
            .enumerate()
        {
            headers.push(parse_header(h, &format!("{rat}.headers[{i}]"))?);
        }
    }
    Ok(Rule {
        name,
        principals,
        paths,
        headers,
    })
}

fn parse_header(v: &Value, at: &str) -> Result<HeaderRule, PolicyError> {
    let obj = object(v, at)?;
    check_fields(obj, at, &["key", "values"])?;
    let kat = join(at, "key");
    let key = match opt_string(obj, "key", &kat)? {
        Some(k) if !k.is_empty() => k.to_ascii_lowercase(),
        _ => return Err(PolicyError::at(&kat, "is required")),
    };
    if key.starts_with(':') {
        return Err(PolicyError::at(
            &kat,
            format!("unsupported header {key:?}: pseudo headers cannot be matched"),
        ));
    }
    if key.starts_with("grpc-") {
        return Err(PolicyError::at(
            &kat,
            format!("unsupported header {key:?}: grpc-* headers cannot be matched"),
        ));
    }
    if UNSUPPORTED_HEADERS.contains(&key.as_str()) {
        return Err(PolicyError::at(
            &kat,
            format!("unsupported header {key:?}: host and hop-by-hop headers cannot be matched"),
        ));
    }
    if key == "content-type" {
        // grpc-go would match it; our interceptors never see it (the server
        // validates it), so a rule on it could only fail open or closed.
        return Err(PolicyError::at(
            &kat,
            "unsupported header \"content-type\": it is not part of the request metadata",
        ));
    }
    let vat = join(at, "values");
    let values = patterns(obj, "values", &vat)?;
    if values.is_empty() {
        return Err(PolicyError::at(&vat, "is required and must not be empty"));
    }
    Ok(HeaderRule { key, values })
}

/// Audit loggers this runtime has: `stdout_logger` (grpc-go's built-in name)
/// writes tracing events under the target `grpc_runtime::authz::audit`.
const AUDIT_LOGGERS: &[&str] = &["stdout_logger"];

fn parse_audit(v: Option<&Value>) -> Result<(AuditCondition, bool), PolicyError> {
    const AT: &str = "audit_logging_options";
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok((AuditCondition::None, false));
    };
    let obj = object(v, AT)?;
    check_fields(obj, AT, &["audit_condition", "audit_loggers"])?;
    let cat = join(AT, "audit_condition");
    let condition = match opt_string(obj, "audit_condition", &cat)? {
        None | Some("NONE") => AuditCondition::None,
        Some("ON_DENY") => AuditCondition::OnDeny,
        Some("ON_ALLOW") => AuditCondition::OnAllow,
        Some("ON_DENY_AND_ALLOW") => AuditCondition::OnDenyAndAllow,
        Some(other) => {
            return Err(PolicyError::at(
                &cat,
                format!(
                "unknown value {other:?} (expected NONE, ON_DENY, ON_ALLOW or ON_DENY_AND_ALLOW)"
            ),
            ))
        }
    };
    let mut to_log = false;
    for (i, l) in opt_array(obj, "audit_loggers", &join(AT, "audit_loggers"))?
        .iter()
        .enumerate()
    {
        let lat = format!("{AT}.audit_loggers[{i}]");
        let lobj = object(l, &lat)?;
        check_fields(lobj, &lat, &["name", "config", "is_optional"])?;
        let name = match opt_string(lobj, "name", &join(&lat, "name"))? {
            Some(n) if !n.is_empty() => n,
            _ => return Err(PolicyError::at(&join(&lat, "name"), "is required")),
        };
        if let Some(c) = field(lobj, "config") {
            object(c, &join(&lat, "config"))?;
        }
        let optional = match field(lobj, "is_optional") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(PolicyError::at(
                    &join(&lat, "is_optional"),
                    format!("must be a boolean, not {}", type_name(other)),
                ))
            }
        };
        if AUDIT_LOGGERS.contains(&name) {
            to_log = true;
        } else if optional {
            tracing::debug!(logger = name, "skipping unknown optional audit logger");
        } else {
            return Err(PolicyError::at(
                &join(&lat, "name"),
                format!(
                    "unknown audit logger {name:?} (this runtime has: {}; set \"is_optional\": true to skip it)",
                    AUDIT_LOGGERS.join(", ")
                ),
            ));
        }
    }
    Ok((condition, to_log))
}

// ------------------------------------------------------------------ subject names

#[cfg(feature = "tls")]
/// One DER TLV read off the front of some input.
#[derive(Debug, PartialEq, Eq)]
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    /// Tag, length and content.
    whole: &'a [u8],
    /// The input after this TLV.
    rest: &'a [u8],
}

#[cfg(feature = "tls")]
/// Reads one TLV. Single-byte tags and definite lengths only; `None` on
/// anything malformed or truncated.
fn der_tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, r) = rest.split_at(n);
        rest = r;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if rest.len() < len {
        return None;
    }
    let header_len = input.len() - rest.len();
    let (content, after) = rest.split_at(len);
    Some(Tlv {
        tag,
        content,
        whole: &input[..header_len + len],
        rest: after,
    })
}

#[cfg(feature = "tls")]
/// The iPAddress entries of a certificate's subjectAltName extension (RFC 5280 4.2.1.6);
/// empty when there are none or the DER is not what it should be.
fn ip_sans(cert: &[u8]) -> Vec<std::net::IpAddr> {
    const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];
    let walk = || -> Option<Vec<std::net::IpAddr>> {
        let certificate = der_tlv(cert)?;
        let tbs = der_tlv(certificate.content)?;
        // The explicit [3] extensions wrapper, after the fixed fields.
        let mut fields = tbs.content;
        let extensions = loop {
            let f = der_tlv(fields)?;
            if f.tag == 0xa3 {
                break der_tlv(f.content)?.content;
            }
            fields = f.rest;
        };
        let mut rest = extensions;
        while !rest.is_empty() {
            let ext = der_tlv(rest)?;
            rest = ext.rest;
            let oid = der_tlv(ext.content)?;
            if oid.tag != 0x06 || oid.content != SAN_OID {
                continue;
            }
            let mut value = der_tlv(oid.rest)?;
            if value.tag == 0x01 {
                value = der_tlv(value.rest)?; // the critical flag
            }
            let names = der_tlv(value.content)?;
            let mut out = Vec::new();
            let mut entries = names.content;
            while !entries.is_empty() {
                let name = der_tlv(entries)?;
                entries = name.rest;
                if name.tag == 0x87 {
                    match name.content.len() {
                        4 => out.push(std::net::IpAddr::from(
                            <[u8; 4]>::try_from(name.content).ok()?,
                        )),
                        16 => out.push(std::net::IpAddr::from(
                            <[u8; 16]>::try_from(name.content).ok()?,
                        )),
                        _ => {}
                    }
                }
            }
            return Some(out);
        }
        Some(Vec::new())
    };
    walk().unwrap_or_default()
}

#[cfg(feature = "tls")]
/// Dotted form of an OID's content bytes.
fn oid_string(content: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for (i, b) in content.iter().enumerate() {
        acc = acc.checked_mul(128)?.checked_add(u64::from(b & 0x7f))?;
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        } else if i + 1 == content.len() {
            return None;
        }
    }
    if arcs.is_empty() {
        return None;
    }
    Some(
        arcs.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

#[cfg(feature = "tls")]
/// The value of a string-typed attribute as Go's `encoding/asn1` reads it
/// into an `interface{}`; `None` for other types.
fn der_string(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, NumericString, PrintableString, IA5String
        0x0c | 0x12 | 0x13 | 0x16 => std::str::from_utf8(content).ok().map(str::to_string),
        // T61String: Go keeps the bytes as they are
        0x14 => Some(String::from_utf8_lossy(content).into_owned()),
        // BMPString: UCS-2 big endian
        0x1e => {
            if content.len() % 2 != 0 {
                return None;
            }
            let mut units: Vec<u16> = content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            if units.last() == Some(&0) {
                units.pop();
            }
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

#[cfg(feature = "tls")]
/// Go's `asn1.Marshal` of a string: PrintableString when every character
/// allows it, else UTF8String.
fn go_marshal_string(s: &str) -> Vec<u8> {
    let printable = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b));
    let mut out = vec![if printable { 0x13 } else { 0x0c }];
    let len = s.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(s.as_bytes());
    out
}

#[cfg(feature = "tls")]
fn go_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.len().saturating_sub(1);
    for (k, c) in value.char_indices() {
        let escape = match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => k == 0 || k == last,
            '#' => k == 0,
            _ => false,
        };
        if escape {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(feature = "tls")]
/// Prints a certificate subject (the content of its Name SEQUENCE) the way
/// Go's `pkix.Name.String()` does, so principals written for grpc-go match
/// here too: the named attributes in Go's fixed order, most specific first
/// (`SERIALNUMBER`, `CN`, `OU`, `O`, `POSTALCODE`, `STREET`, `L`, `ST`, `C`;
/// values of one type joined with `+`), then other attributes as
/// `oid=#hex`. `None` if the DER is malformed.
fn go_subject_string(name: &[u8]) -> Option<String> {
    // (type name, values) in Go's ToRDNSequence order.
    const NAMED: &[(u64, &str)] = &[
        (6, "C"),
        (8, "ST"),
        (7, "L"),
        (9, "STREET"),
        (17, "POSTALCODE"),
        (10, "O"),
        (11, "OU"),
        (3, "CN"),
        (5, "SERIALNUMBER"),
    ];
    let mut named: Vec<Vec<String>> = vec![Vec::new(); NAMED.len()];
    let mut others: Vec<String> = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let Tlv {
            tag,
            content: set,
            rest: after,
            ..
        } = der_tlv(rest)?;
        rest = after;
        if tag != 0x31 {
            return None;
        }
        let mut atvs = set;
        while !atvs.is_empty() {
            let Tlv {
                tag,
                content: atv,
                rest: after,
                ..
            } = der_tlv(atvs)?;
            atvs = after;
            if tag != 0x30 {
                return None;
            }
            let Tlv {
                tag: otag,
                content: oid,
                rest: value,
                ..
            } = der_tlv(atv)?;
            if otag != 0x06 {
                return None;
            }
            let Tlv {
                tag: vtag,
                content: vcontent,
                whole: vwhole,
                ..
            } = der_tlv(value)?;
            let text = der_string(vtag, vcontent);
            let attr = match oid {
                [0x55, 0x04, n] => NAMED.iter().position(|(id, _)| *id == u64::from(*n)),
                _ => None,
            };
            match attr {
                // Go keeps only string values of the named types, and one CN / SERIALNUMBER (the last).
                Some(i) => {
                    if let Some(t) = text {
                        if matches!(NAMED[i].1, "CN" | "SERIALNUMBER") {
                            named[i].clear();
                        }
                        named[i].push(t);
                    }
                }
                None => {
                    let der = match &text {
                        Some(t) => go_marshal_string(t),
                        None => vwhole.to_vec(),
                    };
                    let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
                    others.push(format!("{}=#{hex}", oid_string(oid)?));
                }
            }
        }
    }
    let mut parts: Vec<String> = Vec::new();
    for (i, values) in named.iter().enumerate().rev() {
        if values.is_empty() {
            continue;
        }
        let (_, short) = NAMED[i];
        parts.push(
            values
                .iter()
                .map(|v| format!("{short}={}", go_escape(v)))
                .collect::<Vec<_>>()
                .join("+"),
        );
    }
    parts.extend(others.into_iter().rev());
    Some(parts.join(","))
}

// ------------------------------------------------------------------ interceptors

/// Enforces a fixed [`AuthorizationPolicy`] on every call (grpc-go's
/// `authz.NewStatic`). Add it first, so nothing else runs for a denied call.
///
/// ```
/// use grpc_runtime::server::authz::AuthzInterceptor;
/// use grpc_runtime::server::Server;
///
/// let policy = r#"{"name": "p", "allow_rules": [{"name": "any-client", "source": {"principals": ["*"]}}]}"#;
/// let builder = Server::builder().add_interceptor(AuthzInterceptor::from_json(policy)?);
/// # drop(builder);
/// # Ok::<(), grpc_runtime::server::authz::PolicyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct AuthzInterceptor {
    policy: Arc<AuthorizationPolicy>,
}

impl AuthzInterceptor {
    /// Enforces `policy`.
    pub fn new(policy: AuthorizationPolicy) -> AuthzInterceptor {
        AuthzInterceptor {
            policy: Arc::new(policy),
        }
    }

    /// Parses `json` ([`AuthorizationPolicy::from_json`]) and enforces it.
    pub fn from_json(json: &str) -> Result<AuthzInterceptor, PolicyError> {
        AuthorizationPolicy::from_json(json).map(AuthzInterceptor::new)
    }

    /// The policy enforced.
    pub fn policy(&self) -> &AuthorizationPolicy {
        &self.policy
    }
}

fn enforce(policy: &AuthorizationPolicy, head: CallHead, next: Next) -> BoxFuture<Status> {
    match policy.authorize(&head) {
        Ok(()) => next.run(head),
        Err(status) => Box::pin(std::future::ready(status)),
    }
}

impl Interceptor for AuthzInterceptor {
    fn intercept(&self, head: CallHead, next: Next) -> BoxFuture<Status> {
        enforce(&self.policy, head, next)
    }
}

/// Enforces the policy in a file and reloads it when the file changes
/// (grpc-go's `authz.NewFileWatcher`). The file is read every
/// `refresh_interval` by a background thread; a new policy that fails to
/// load (unreadable file, invalid policy) is logged with `tracing` and the
/// last good one stays in force. The thread stops when the last clone of the
/// interceptor is dropped (e.g. with the server).
///
/// ```
/// use std::time::Duration;
/// use grpc_runtime::server::authz::FileWatcherInterceptor;
/// use grpc_runtime::server::Server;
///
/// let path = std::env::temp_dir().join(format!("authz-doc-{}.json", std::process::id()));
/// std::fs::write(&path, r#"{"name": "p", "allow_rules": [{"name": "all"}]}"#).unwrap();
/// let watcher = FileWatcherInterceptor::new(&path, Duration::from_secs(10))?;
/// assert_eq!(watcher.policy().name(), "p");
/// let builder = Server::builder().add_interceptor(watcher);
/// # drop(builder);
/// # std::fs::remove_file(&path).ok();
/// # Ok::<(), grpc_runtime::server::authz::PolicyError>(())
/// ```
#[derive(Clone, Debug)]
pub struct FileWatcherInterceptor {
    inner: Arc<WatcherHandle>,
}

#[derive(Debug)]
struct WatcherHandle {
    current: Arc<RwLock<Arc<AuthorizationPolicy>>>,
    path: PathBuf,
    /// Dropped with the last clone: the reload thread sees the channel close and exits.
    _stop: mpsc::Sender<()>,
}

fn read_policy_file(
    path: &Path,
) -> Result<(Vec<u8>, Result<AuthorizationPolicy, PolicyError>), PolicyError> {
    let bytes = std::fs::read(path).map_err(|e| {
        PolicyError::new(format!("cannot read policy file {}: {e}", path.display()))
    })?;
    let policy = match std::str::from_utf8(&bytes) {
        Ok(s) => AuthorizationPolicy::from_json(s),
        Err(_) => Err(PolicyError::new(format!(
            "policy file {} is not UTF-8",
            path.display()
        ))),
    };
    Ok((bytes, policy))
}

impl FileWatcherInterceptor {
    /// Loads the policy in `path` now (an unreadable file or invalid policy
    /// is an error, so a server does not start without its policy) and
    /// checks the file for changes every `refresh_interval` (must be
    /// non-zero).
    pub fn new(
        path: impl AsRef<Path>,
        refresh_interval: Duration,
    ) -> Result<FileWatcherInterceptor, PolicyError> {
        let path = path.as_ref().to_path_buf();
        if refresh_interval.is_zero() {
            return Err(PolicyError::new(
                "the policy refresh interval must be greater than zero",
            ));
        }
        let (mut last, policy) = read_policy_file(&path)?;
        let policy = policy
            .map_err(|e| PolicyError::new(format!("{} (in {})", e.message, path.display())))?;
        let current = Arc::new(RwLock::new(Arc::new(policy)));
        let (stop, stopped) = mpsc::channel::<()>();
        let (slot, file) = (Arc::clone(&current), path.clone());
        std::thread::Builder::new()
            .name("grpc-authz-watch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(refresh_interval) {
                    match read_policy_file(&file) {
                        Err(e) => tracing::warn!("authorization policy reload failed, keeping the current policy: {e}"),
                        Ok((bytes, _)) if bytes == last => {}
                        Ok((bytes, Err(e))) => {
                            // Remembered, so one bad version is reported once.
                            last = bytes;
                            tracing::warn!(file = %file.display(), "authorization policy reload failed, keeping the current policy: {e}");
                        }
                        Ok((bytes, Ok(p))) => {
                            last = bytes;
                            tracing::info!(file = %file.display(), policy = p.name(), "authorization policy reloaded");
                            *slot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
                        }
                    }
                }
            })
            .map_err(|e| PolicyError::new(format!("cannot start the policy file watcher: {e}")))?;
        Ok(FileWatcherInterceptor {
            inner: Arc::new(WatcherHandle {
                current,
                path,
                _stop: stop,
            }),
        })
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<AuthorizationPolicy> {
        Arc::clone(&self.inner.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

impl Interceptor for FileWatcherInterceptor {
    fn intercept(&self, head: CallHead, next: Next) -> BoxFuture<Status> {
        let policy = self.policy();
        enforce(&policy, head, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> AuthorizationPolicy {
        AuthorizationPolicy::from_json(json).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(json: &str) -> String {
        AuthorizationPolicy::from_json(json)
            .expect_err("policy must be refused")
            .to_string()
    }

    fn cert(uris: &[&str], dns: &[&str], subject: &str) -> PeerIdentity {
        PeerIdentity::Certificate(CertificateIdentity {
            uri_sans: uris.iter().map(|s| s.to_string()).collect(),
            dns_sans: dns.iter().map(|s| s.to_string()).collect(),
            ip_sans: Vec::new(),
            subject: subject.to_string(),
        })
    }

    fn md(pairs: &[(&str, &str)]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for (k, v) in pairs {
            m.append(k, v.to_string()).unwrap();
        }
        m
    }

    const PLAIN: PeerIdentity = PeerIdentity::Plaintext;

    #[test]
    fn patterns_exact_prefix_suffix_presence() {
        assert_eq!(Pattern::parse("abc"), Pattern::Exact("abc".into()));
        assert_eq!(Pattern::parse("abc*"), Pattern::Prefix("abc".into()));
        assert_eq!(Pattern::parse("*abc"), Pattern::Suffix("abc".into()));
        assert_eq!(Pattern::parse("*"), Pattern::Present);
        assert_eq!(Pattern::parse(""), Pattern::Exact("".into()));
        // Only a trailing or a leading '*' is special; '**' is a prefix match on "*".
        assert_eq!(Pattern::parse("**"), Pattern::Prefix("*".into()));
        assert_eq!(Pattern::parse("a*b"), Pattern::Exact("a*b".into()));
        let (p, s) = (Pattern::parse("abc*"), Pattern::parse("*abc"));
        assert!(p.matches(b"abc") && p.matches(b"abcd") && !p.matches(b"xabc"));
        assert!(s.matches(b"abc") && s.matches(b"xabc") && !s.matches(b"abcd"));
        assert!(Pattern::Present.matches(b"x") && !Pattern::Present.matches(b""));
        assert!(Pattern::parse("").matches(b"") && !Pattern::parse("").matches(b"x"));
    }

    #[test]
    fn paths_exact_prefix_suffix_and_presence() {
        let p = policy(
            r#"{"name": "p", "allow_rules": [
                {"name": "exact", "request": {"paths": ["/pkg.A/Get"]}},
                {"name": "prefix", "request": {"paths": ["/pkg.B/*"]}},
                {"name": "suffix", "request": {"paths": ["*/Health"]}}
            ]}"#,
        );
        let m = MetadataMap::new();
        let rule = |path: &str| {
            p.evaluate(path, &m, &PLAIN)
                .matched_rule()
                .map(str::to_string)
        };
        assert_eq!(rule("/pkg.A/Get").as_deref(), Some("exact"));
        assert_eq!(rule("/pkg.A/GetMore"), None);
        assert_eq!(rule("/pkg.B/Anything").as_deref(), Some("prefix"));
        assert_eq!(rule("/pkg.C/Health").as_deref(), Some("suffix"));
        assert_eq!(rule("/pkg.C/Other"), None);
        assert!(!p.evaluate("/pkg.C/Other", &m, &PLAIN).is_allowed());
        let any = policy(
            r#"{"name": "p", "allow_rules": [{"name": "any", "request": {"paths": ["*"]}}]}"#,
        );
        assert!(any.evaluate("/x.Y/Z", &m, &PLAIN).is_allowed());
    }

    #[test]
    fn headers_are_anded_values_ored_and_joined_with_commas() {
        let p = policy(
            r#"{"name": "p", "allow_rules": [{"name": "h", "request": {"headers": [
                {"key": "X-Role", "values": ["admin", "ops*"]},
                {"key": "x-env", "values": ["*"]}
            ]}}]}"#,
        );
        let ok = |pairs: &[(&str, &str)]| p.evaluate("/a.B/C", &md(pairs), &PLAIN).is_allowed();
        // The key was lowercased at load.
        assert!(ok(&[("x-role", "admin"), ("x-env", "prod")]));
        assert!(ok(&[("x-role", "ops-lead"), ("x-env", "prod")]));
        assert!(!ok(&[("x-role", "admin")]), "both headers are required");
        assert!(!ok(&[("x-role", "user"), ("x-env", "prod")]));
        assert!(
            !ok(&[("x-role", "admin"), ("x-env", "")]),
            "\"*\" needs a non-empty value"
        );
        // Several values are one value joined with ",": "user,admin" is not exactly "admin".
        assert!(!ok(&[
            ("x-role", "user"),
            ("x-role", "admin"),
            ("x-env", "p")
        ]));
        assert!(ok(&[("x-role", "ops"), ("x-role", "user"), ("x-env", "p")]));
        // Binary metadata is matched on its decoded bytes.
        let b = policy(
            r#"{"name": "p", "allow_rules": [{"name": "h", "request": {"headers": [{"key": "x-tok-bin", "values": ["ab*"]}]}}]}"#,
        );
        let mut m = MetadataMap::new();
        m.insert_bin("x-tok-bin", &b"abc"[..]).unwrap();
        assert!(b.evaluate("/a.B/C", &m, &PLAIN).is_allowed());
    }

    #[test]
    fn principals_follow_grpc_go() {
        let p = policy(
            r#"{"name": "p", "allow_rules": [{"name": "r", "source": {"principals": ["spiffe://foo.com/*", "*.example.com", "CN=client,O=Org", ""]}}]}"#,
        );
        let m = MetadataMap::new();
        let ok = |peer: &PeerIdentity| p.evaluate("/a.B/C", &m, peer).is_allowed();
        assert!(
            !ok(&PeerIdentity::Plaintext),
            "no principal matches without TLS, not even \"\""
        );
        assert!(
            ok(&PeerIdentity::TlsWithoutCertificate),
            "\"\" matches TLS without a client certificate"
        );
        assert!(ok(&cert(&["spiffe://foo.com/sa/x"], &[], "")));
        assert!(
            ok(&cert(&["urn:x", "spiffe://foo.com/sa/x"], &[], "")),
            "any URI SAN may match"
        );
        // URI SANs present: DNS SANs and the subject are not looked at.
        assert!(!ok(&cert(
            &["spiffe://bar.com/sa/x"],
            &["a.example.com"],
            "CN=client,O=Org"
        )));
        assert!(ok(&cert(&[], &["a.example.com"], "")));
        // DNS SANs present: the subject is not looked at.
        assert!(!ok(&cert(&[], &["a.other.com"], "CN=client,O=Org")));
        assert!(ok(&cert(&[], &[], "CN=client,O=Org")));
        assert!(!ok(&cert(&[], &[], "CN=client")));

        let star = policy(
            r#"{"name": "p", "allow_rules": [{"name": "r", "source": {"principals": ["*"]}}]}"#,
        );
        let ok = |peer: &PeerIdentity| star.evaluate("/a.B/C", &m, peer).is_allowed();
        assert!(ok(&cert(&[], &[], "CN=x")));
        assert!(
            !ok(&PeerIdentity::TlsWithoutCertificate),
            "\"*\" needs a non-empty identity"
        );
        assert!(!ok(&PeerIdentity::Plaintext));
        // An empty principals list (or no source) is any peer.
        let any = policy(
            r#"{"name": "p", "allow_rules": [{"name": "r", "source": {"principals": []}}]}"#,
        );
        assert!(any
            .evaluate("/a.B/C", &m, &PeerIdentity::Plaintext)
            .is_allowed());
    }

    #[test]
    fn deny_rules_win_then_allow_then_default_deny() {
        let p = policy(
            r#"{"name": "p",
                "deny_rules": [{"name": "no-secret", "request": {"paths": ["*/Secret"]}}],
                "allow_rules": [{"name": "all"}]}"#,
        );
        let m = MetadataMap::new();
        let d = p.evaluate("/a.B/Secret", &m, &PLAIN);
        assert!(!d.is_allowed());
        assert_eq!(d.matched_rule(), Some("no-secret"));
        let d = p.evaluate("/a.B/Open", &m, &PLAIN);
        assert!(d.is_allowed());
        assert_eq!(d.matched_rule(), Some("all"));
        let narrow = policy(
            r#"{"name": "p", "allow_rules": [{"name": "one", "request": {"paths": ["/a.B/One"]}}]}"#,
        );
        let d = narrow.evaluate("/a.B/Two", &m, &PLAIN);
        assert_eq!((d.is_allowed(), d.matched_rule()), (false, None));
        // Source and request are ANDed within a rule.
        let both = policy(
            r#"{"name": "p", "allow_rules": [{"name": "r", "source": {"principals": ["*"]}, "request": {"paths": ["/a.B/One"]}}]}"#,
        );
        assert!(!both.evaluate("/a.B/One", &m, &PLAIN).is_allowed());
        assert!(both
            .evaluate("/a.B/One", &m, &cert(&[], &[], "CN=x"))
            .is_allowed());
        assert!(!both
            .evaluate("/a.B/Two", &m, &cert(&[], &[], "CN=x"))
            .is_allowed());
    }

    #[test]
    fn malformed_policies_name_the_field() {
        let cases: &[(&str, &str)] = &[
            ("nope", "not valid JSON"),
            ("[]", "policy: must be an object"),
            (r#"{"allow_rules": [{"name": "a"}]}"#, "name: is required"),
            (
                r#"{"name": "", "allow_rules": [{"name": "a"}]}"#,
                "name: is required",
            ),
            (r#"{"name": "p"}"#, "allow_rules: is required"),
            (
                r#"{"name": "p", "allow_rules": []}"#,
                "allow_rules: is required",
            ),
            (
                r#"{"name": "p", "allow_rules": {}}"#,
                "allow_rules: must be an array, not an object",
            ),
            (
                r#"{"name": 5, "allow_rules": [{"name": "a"}]}"#,
                "name: must be a string, not a number",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a"}], "extra": 1}"#,
                "extra: unknown field",
            ),
            (
                r#"{"name": "p", "Allow_Rules": [{"name": "a"}]}"#,
                "Allow_Rules: unknown field",
            ),
            (
                r#"{"name": "p", "allow_rules": [{}]}"#,
                "allow_rules[0].name: is required",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a"}, {"name": "a"}]}"#,
                "allow_rules[1].name: duplicate rule name",
            ),
            (
                r#"{"name": "p", "deny_rules": [{"name": "d", "src": {}}], "allow_rules": [{"name": "a"}]}"#,
                "deny_rules[0].src: unknown field",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a", "source": {"principal": ["x"]}}]}"#,
                "allow_rules[0].source.principal: unknown field",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a", "source": {"principals": [1]}}]}"#,
                "allow_rules[0].source.principals[0]: must be a string",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a", "request": {"paths": "/x"}}]}"#,
                "allow_rules[0].request.paths: must be an array",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a", "request": {"methods": []}}]}"#,
                "allow_rules[0].request.methods: unknown field",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a", "request": {"headers": [{"values": ["x"]}]}}]}"#,
                "allow_rules[0].request.headers[0].key: is required",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a", "request": {"headers": [{"key": "x-a"}]}}]}"#,
                "allow_rules[0].request.headers[0].values: is required",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a", "request": {"headers": [{"key": "x-a", "values": []}]}}]}"#,
                "headers[0].values: is required",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a", "request": {"headers": [{"key": "x-a", "values": ["v"], "regex": "."}]}}]}"#,
                "headers[0].regex: unknown field",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a"}], "audit_logging_options": {"audit_condition": "SOMETIMES"}}"#,
                "audit_logging_options.audit_condition: unknown value \"SOMETIMES\"",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a"}], "audit_logging_options": {"audit_loggers": [{"name": "kafka"}]}}"#,
                "audit_logging_options.audit_loggers[0].name: unknown audit logger \"kafka\"",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a"}], "audit_logging_options": {"audit_loggers": [{}]}}"#,
                "audit_loggers[0].name: is required",
            ),
            (
                r#"{"name": "p", "allow_rules": [{"name": "a"}], "audit_logging_options": {"audit_loggers": [{"name": "stdout_logger", "config": []}]}}"#,
                "audit_loggers[0].config: must be an object",
            ),
        ];
        for (json, want) in cases {
            let e = err(json);
            assert!(e.starts_with("invalid authorization policy: "), "{e}");
            assert!(e.contains(want), "{json}\n  gave: {e}\n  want: {want}");
        }
    }

    #[test]
    fn forbidden_header_keys_are_refused_at_load() {
        for key in [
            ":path",
            ":authority",
            "Host",
            "host",
            "grpc-timeout",
            "GRPC-Foo",
            "connection",
            "keep-alive",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "content-type",
        ] {
            let json = format!(
                r#"{{"name": "p", "allow_rules": [{{"name": "a", "request": {{"headers": [{{"key": "{key}", "values": ["*"]}}]}}}}]}}"#
            );
            let e = err(&json);
            assert!(
                e.contains("allow_rules[0].request.headers[0].key: unsupported header"),
                "{key}: {e}"
            );
            assert!(
                e.contains(&format!("{:?}", key.to_ascii_lowercase())),
                "{key}: {e}"
            );
        }
    }

    #[test]
    fn optional_fields_and_audit_options() {
        // null means unset, as in grpc-go; an unknown optional logger is skipped.
        let p = policy(
            r#"{"name": "p", "deny_rules": null, "allow_rules": [{"name": "a", "source": null, "request": {"paths": null, "headers": null}}],
                "audit_logging_options": {"audit_condition": "ON_DENY_AND_ALLOW", "audit_loggers": [
                    {"name": "stdout_logger", "config": {}}, {"name": "kafka", "is_optional": true}]}}"#,
        );
        assert_eq!(p.name(), "p");
        assert_eq!(p.audit_condition(), AuditCondition::OnDenyAndAllow);
        assert!(p.audit_to_log);
        assert!(p
            .evaluate("/a.B/C", &MetadataMap::new(), &PLAIN)
            .is_allowed());
        assert!(AuditCondition::OnDeny.applies(false) && !AuditCondition::OnDeny.applies(true));
        assert!(AuditCondition::OnAllow.applies(true) && !AuditCondition::None.applies(false));
    }

    /// DER of a Name: SEQUENCE OF SET OF { OID, value }.
    fn name_der(atvs: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
        fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut v = vec![tag, content.len() as u8];
            v.extend_from_slice(content);
            v
        }
        let mut out = Vec::new();
        for (oid, vtag, value) in atvs {
            let mut seq = tlv(0x06, oid);
            seq.extend(tlv(*vtag, value));
            out.extend(tlv(0x31, &tlv(0x30, &seq)));
        }
        out
    }

    #[test]
    fn subjects_print_like_go() {
        const CN: &[u8] = &[0x55, 4, 3];
        const O: &[u8] = &[0x55, 4, 10];
        const OU: &[u8] = &[0x55, 4, 11];
        const C: &[u8] = &[0x55, 4, 6];
        const EMAIL: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
        // Expected strings checked against Go 1.19's pkix.Name.String().
        let s = |atvs: &[(&[u8], u8, &[u8])]| go_subject_string(&name_der(atvs)).unwrap();
        assert_eq!(s(&[(CN, 0x0c, b"client")]), "CN=client");
        assert_eq!(
            s(&[(C, 0x13, b"US"), (O, 0x0c, b"Org"), (CN, 0x0c, b"client")]),
            "CN=client,O=Org,C=US"
        );
        // Go's fixed order, not the certificate's; values of one type joined with '+'.
        assert_eq!(
            s(&[
                (CN, 0x0c, b"client"),
                (OU, 0x0c, b"a"),
                (O, 0x13, b"Org"),
                (OU, 0x0c, b"b")
            ]),
            "CN=client,OU=a+OU=b,O=Org"
        );
        // Escaping, and unknown attributes as oid=#hex of Go's re-encoding (last).
        assert_eq!(
            s(&[(CN, 0x0c, b" a,b "), (EMAIL, 0x16, b"x@y.z")]),
            "CN=\\ a\\,b\\ ,1.2.840.113549.1.9.1=#0c057840792e7a"
        );
        assert_eq!(s(&[]), "");
        // Malformed DER is refused, not guessed at.
        assert_eq!(go_subject_string(&[0x31, 0x05, 0x30]), None);
        assert_eq!(go_subject_string(&[0x30, 0x00]), None);
    }

    #[test]
    fn certificate_names_are_read_from_der() {
        use rcgen::{CertificateParams, DnType, KeyPair, SanType};
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["a.example.com".to_string()]).unwrap();
        p.subject_alt_names.push(SanType::URI(
            "spiffe://foo.com/sa/client".try_into().unwrap(),
        ));
        p.subject_alt_names
            .push(SanType::IpAddress("10.1.2.3".parse().unwrap()));
        p.subject_alt_names
            .push(SanType::IpAddress("::1".parse().unwrap()));
        p.distinguished_name.push(DnType::OrganizationName, "Org");
        p.distinguished_name.push(DnType::CommonName, "client");
        let der = p.self_signed(&key).unwrap().der().to_vec();
        let id = CertificateIdentity::from_der(&der).unwrap();
        assert_eq!(id.uri_sans, ["spiffe://foo.com/sa/client"]);
        assert_eq!(id.dns_sans, ["a.example.com"]);
        assert_eq!(
            id.ip_sans,
            [
                "10.1.2.3".parse::<std::net::IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(id.subject, "CN=client,O=Org");
        assert_eq!(id.principal(), "spiffe://foo.com/sa/client");
        // Any prefix of the DER: no panic, no IP names.
        for n in 0..der.len() {
            let _ = ip_sans(&der[..n]);
        }
        assert!(CertificateIdentity::from_der(&der[..der.len() - 1]).is_err());
        assert!(CertificateIdentity::from_der(b"not a certificate").is_err());
    }

    #[test]
    fn oids_and_der_lengths() {
        assert_eq!(
            oid_string(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]).as_deref(),
            Some("1.2.840.113549")
        );
        assert_eq!(oid_string(&[0x55, 0x04, 0x03]).as_deref(), Some("2.5.4.3"));
        assert_eq!(oid_string(&[0x88, 0x37]).as_deref(), Some("2.999"));
        assert_eq!(oid_string(&[0x86]), None, "truncated arc");
        assert_eq!(oid_string(&[]), None);
        let long: Vec<u8> = [&[0x04, 0x81, 0x80][..], &[7u8; 128][..]].concat();
        let t = der_tlv(&long).unwrap();
        assert_eq!(
            (t.tag, t.content.len(), t.whole.len(), t.rest.len()),
            (0x04, 128, 131, 0)
        );
        assert_eq!(der_tlv(&[0x04, 0x81]), None);
        assert_eq!(der_tlv(&[0x04, 0x80]), None, "indefinite length");
        assert_eq!(der_tlv(&[0x04, 0x05, 1]), None, "truncated");
        assert_eq!(go_marshal_string("abc"), vec![0x13, 3, b'a', b'b', b'c']);
        assert_eq!(go_marshal_string("a@b")[0], 0x0c);
        assert_eq!(
            der_string(0x1e, &[0, b'h', 0, b'i', 0, 0]).as_deref(),
            Some("hi")
        );
    }
}
