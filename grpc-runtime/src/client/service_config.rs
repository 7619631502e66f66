//! The service config (gRFC A2, with retries and hedging from A6 and health checking from
//! A17): parsing and validating the JSON form of grpc's `service_config.proto` into a
//! [`ServiceConfig`], and looking up the [`MethodConfig`] of a call by its path.
//!
//! This module only parses; applying a config (deadlines, limits, retries, picking the LB
//! policy) is the channel's job. Behaviour follows grpc-go unless noted:
//! - Unknown fields are ignored; a field set to `null` counts as absent (proto JSON). A
//!   field present with the wrong type or an invalid value rejects the whole config, and
//!   [`ServiceConfigError::message`] names it by JSON path, e.g.
//!   `methodConfig[1].retryPolicy.maxAttempts`.
//! - Durations are proto JSON `Duration` strings: an optional sign, decimal seconds with at
//!   most 9 fractional digits and an `s` suffix (`"1s"`, `"0.5s"`, `".5s"`, `"1.s"`,
//!   `"1.000340012s"`). Negative durations are errors wherever a duration appears. The
//!   proto range (at most 315,576,000,000 s, about 10,000 years) is enforced, so every
//!   accepted duration fits a [`Duration`]: nothing is clamped, larger values are errors.
//! - Integers are JSON numbers (an integral float such as `1e3` is accepted) or strings of
//!   decimal digits, as proto JSON allows; values beyond `u64` saturate (then message sizes
//!   saturate at `usize::MAX` and attempt counts at [`MAX_ATTEMPTS_CAP`]). The other
//!   numbers (`backoffMultiplier`, `maxTokens`, `tokenRatio`) are JSON numbers or strings
//!   holding one; `maxTokens` need not be an integer (as grpc-go).
//! - Status codes are the proto enum names (`"UNAVAILABLE"`, case-sensitive, as grpc-go)
//!   or integers 0..=16. `OK` is rejected in `retryableStatusCodes` and
//!   `nonFatalStatusCodes` (as grpc-java; grpc-go accepts it, where it means nothing).
//! - An invalid `retryPolicy` rejects the config (gRFC A6 "MUST"); grpc-go instead drops
//!   the policy with a warning.
//! - A method config without names (no `name` or an empty list) applies to no call; its
//!   fields are still validated.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::status::Code;

/// The client-side cap on `maxAttempts` of retry and hedging policies (gRFC A6): larger
/// values are accepted and treated as this.
pub const MAX_ATTEMPTS_CAP: u32 = 5;

/// Largest seconds value of a proto `Duration` (10,000 years).
const MAX_DURATION_SECONDS: u64 = 315_576_000_000;

/// Upper bound of `retryThrottling.maxTokens` (gRFC A6).
const MAX_TOKENS_LIMIT: f64 = 1000.0;

/// A parsed, validated service config.
///
/// Cheap to clone: the parsed form is shared behind an [`Arc`]. Compare two configs with
/// `==` to skip re-applying an unchanged one.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceConfig {
    inner: Arc<Inner>,
}

#[derive(Debug, Default, PartialEq)]
struct Inner {
    /// Method configs by service name; never has the empty service name as a key.
    services: HashMap<String, ServiceEntry>,
    /// The default method config (name `{}` or `{"service": ""}`).
    default: Option<Arc<MethodConfig>>,
    lb_configs: Vec<(String, Value)>,
    retry_throttling: Option<RetryThrottling>,
    health_check_service_name: Option<String>,
}

#[derive(Debug, Default, PartialEq)]
struct ServiceEntry {
    /// Exact matches by method name; never has the empty method name as a key.
    methods: HashMap<String, Arc<MethodConfig>>,
    /// The service's default (a name with this service and no method).
    default: Option<Arc<MethodConfig>>,
}

impl ServiceConfig {
    /// Parses the JSON form of a service config.
    ///
    /// Unknown fields are ignored (as grpc-go does); invalid values are errors naming the
    /// field (see the [module docs](self) for the rules).
    ///
    /// ```rust
    /// use grpc_runtime::client::service_config::ServiceConfig;
    /// use std::time::Duration;
    ///
    /// let config = ServiceConfig::parse(
    ///     r#"{
    ///         "loadBalancingConfig": [{"weighted_round_robin": {}}, {"round_robin": {}}],
    ///         "methodConfig": [{
    ///             "name": [{"service": "echo.Echo"}],
    ///             "timeout": "1.5s",
    ///             "retryPolicy": {
    ///                 "maxAttempts": 3,
    ///                 "initialBackoff": "0.1s",
    ///                 "maxBackoff": "1s",
    ///                 "backoffMultiplier": 2,
    ///                 "retryableStatusCodes": ["UNAVAILABLE"]
    ///             }
    ///         }]
    ///     }"#,
    /// )?;
    /// let method = config.method_config("/echo.Echo/UnaryEcho").expect("the service's entry");
    /// assert_eq!(method.timeout, Some(Duration::from_millis(1500)));
    /// assert_eq!(method.retry_policy.as_ref().map(|p| p.max_attempts), Some(3));
    /// assert!(config.method_config("/other.Service/Call").is_none());
    /// let (policy, _config) = config.select_lb(|name| name == "round_robin").expect("a supported policy");
    /// assert_eq!(policy, "round_robin");
    ///
    /// let err = ServiceConfig::parse(r#"{"methodConfig": [{"timeout": "1"}]}"#).unwrap_err();
    /// assert!(err.message().starts_with("methodConfig[0].timeout: "));
    /// # Ok::<(), grpc_runtime::client::service_config::ServiceConfigError>(())
    /// ```
    pub fn parse(json: &str) -> Result<ServiceConfig, ServiceConfigError> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| error("", format_args!("service config is not valid JSON: {e}")))?;
        let Value::Object(top) = &value else {
            return Err(error(
                "",
                format_args!(
                    "service config must be a JSON object, got {}",
                    shown(&value)
                ),
            ));
        };
        let mut inner = Inner {
            lb_configs: parse_lb_configs(top)?,
            ..Inner::default()
        };
        if let Some(v) = get(top, "methodConfig") {
            parse_method_configs(v, &mut inner)?;
        }
        if let Some(v) = get(top, "retryThrottling") {
            inner.retry_throttling = Some(parse_retry_throttling(v)?);
        }
        if let Some(v) = get(top, "healthCheckConfig") {
            let path = "healthCheckConfig";
            let health = as_object(v, path)?;
            if let Some(name) = get(health, "serviceName") {
                inner.health_check_service_name =
                    Some(as_str(name, &sub(path, "serviceName"))?.to_owned());
            }
        }
        Ok(ServiceConfig {
            inner: Arc::new(inner),
        })
    }

    /// The empty config: no method configs, no LB config, no throttling, no health check.
    /// Shared, so this does not allocate after the first call.
    pub fn empty() -> ServiceConfig {
        static EMPTY: OnceLock<ServiceConfig> = OnceLock::new();
        EMPTY
            .get_or_init(|| ServiceConfig {
                inner: Arc::new(Inner::default()),
            })
            .clone()
    }

    /// Whether both are the same parsed config (not just equal).
    pub(crate) fn ptr_eq(&self, other: &ServiceConfig) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The method config for a call path `"/pkg.Service/Method"`: the exact service and
    /// method match first, then the service's entry (a name with the service only), then
    /// the default entry (name `{}` or service `""`). `None` when nothing matches.
    ///
    /// Does not allocate. A path not of the form `/service/method` can only get the default.
    pub fn method_config(&self, path: &str) -> Option<&Arc<MethodConfig>> {
        let inner = &*self.inner;
        if !inner.services.is_empty() {
            if let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/'))
            {
                if let Some(entry) = inner.services.get(service) {
                    if let Some(config) = entry.methods.get(method) {
                        return Some(config);
                    }
                    if let Some(config) = &entry.default {
                        return Some(config);
                    }
                }
            }
        }
        inner.default.as_ref()
    }

    /// The `loadBalancingConfig` entries in order, as (policy name, its JSON config object).
    ///
    /// When `loadBalancingConfig` is absent, a legacy `loadBalancingPolicy` (e.g.
    /// `"ROUND_ROBIN"`) becomes the single entry `("round_robin", {})`, lowercased; when
    /// `loadBalancingConfig` is present the legacy field is ignored (as grpc-go). Empty when
    /// neither is given (an empty `loadBalancingConfig` list also gives none).
    pub fn lb_configs(&self) -> &[(String, Value)] {
        &self.inner.lb_configs
    }

    /// The first of [`lb_configs`](Self::lb_configs) whose policy name `supported`
    /// accepts, as (name, config): gRFC A24's rule, the first supported policy wins.
    /// `None` when no entry is supported (or there are none).
    pub fn select_lb(&self, supported: impl Fn(&str) -> bool) -> Option<(&str, &Value)> {
        self.inner
            .lb_configs
            .iter()
            .find(|(name, _)| supported(name))
            .map(|(name, config)| (name.as_str(), config))
    }

    /// The `retryThrottling` policy (gRFC A6), if the config has one.
    pub fn retry_throttling(&self) -> Option<RetryThrottling> {
        self.inner.retry_throttling
    }

    /// `healthCheckConfig.serviceName` (gRFC A17): the service name to send in health-check
    /// requests. `Some("")` is a valid value (the server's overall health); `None` when
    /// `healthCheckConfig` or its `serviceName` is absent (the proto field is a
    /// `StringValue`, so absent is not `""`).
    pub fn health_check_service_name(&self) -> Option<&str> {
        self.inner.health_check_service_name.as_deref()
    }
}

impl Default for ServiceConfig {
    /// The same as [`ServiceConfig::empty`].
    fn default() -> ServiceConfig {
        ServiceConfig::empty()
    }
}

/// Configuration of the calls to a method (one `methodConfig` entry). `None` fields were
/// not set by the config.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct MethodConfig {
    /// `timeout`: the default deadline of a call, from its start (the call's own, if
    /// shorter, wins). Zero is allowed.
    pub timeout: Option<Duration>,
    /// `waitForReady`: whether calls wait for a ready connection instead of failing fast.
    pub wait_for_ready: Option<bool>,
    /// `maxRequestMessageBytes`: the largest request message the client may send.
    pub max_request_message_bytes: Option<usize>,
    /// `maxResponseMessageBytes`: the largest response message the client accepts.
    pub max_response_message_bytes: Option<usize>,
    /// `retryPolicy`; never set together with `hedging_policy`.
    pub retry_policy: Option<RetryPolicy>,
    /// `hedgingPolicy`; never set together with `retry_policy`.
    pub hedging_policy: Option<HedgingPolicy>,
}

/// A method's `retryPolicy` (gRFC A6): retry a failed call with exponential backoff.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts including the first: validated to be at least 2, then capped at
    /// [`MAX_ATTEMPTS_CAP`].
    pub max_attempts: u32,
    /// Backoff before the first retry (before jitter); greater than zero.
    pub initial_backoff: Duration,
    /// Upper bound of the backoff (before jitter); greater than zero.
    pub max_backoff: Duration,
    /// Factor the backoff grows by per retry; greater than zero.
    pub backoff_multiplier: f64,
    /// Status codes that make a call retryable: non-empty, without `OK`, in config order
    /// with duplicates removed.
    pub retryable_status_codes: Vec<Code>,
}

/// A method's `hedgingPolicy` (gRFC A6): send further copies of a call without waiting
/// for the earlier ones to fail.
#[derive(Clone, Debug, PartialEq)]
pub struct HedgingPolicy {
    /// Attempts including the first: validated to be at least 2, then capped at
    /// [`MAX_ATTEMPTS_CAP`].
    pub max_attempts: u32,
    /// Delay between sending successive copies; zero when not given (all at once).
    pub hedging_delay: Duration,
    /// Status codes that let the other copies continue: without `OK`, in config order with
    /// duplicates removed; empty when not given.
    pub non_fatal_status_codes: Vec<Code>,
}

/// The config's `retryThrottling` (gRFC A6): retries and hedged copies stop while the
/// channel's token count is at or below `max_tokens / 2`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryThrottling {
    /// Tokens at start and at most, in (0, 1000]; each failed call takes one.
    pub max_tokens: f64,
    /// Tokens each successful call gives back: greater than zero, truncated to 3 decimal
    /// places (0.1234 becomes 0.123); a ratio truncated to zero is an error.
    pub token_ratio: f64,
}

/// Why a service config was rejected.
///
/// The message names the field by JSON path and says why, e.g.
/// `methodConfig[1].retryPolicy.maxAttempts: must be at least 2, got 1`.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceConfigError {
    message: String,
}

impl ServiceConfigError {
    /// The reason, starting with the JSON path of the offending field.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ServiceConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid service config: {}", self.message)
    }
}

impl std::error::Error for ServiceConfigError {}

// ---- parsing ----

fn error(path: &str, why: impl fmt::Display) -> ServiceConfigError {
    let message = if path.is_empty() {
        why.to_string()
    } else {
        format!("{path}: {why}")
    };
    ServiceConfigError { message }
}

/// `path.key`.
fn sub(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

/// A field's value; `null` counts as absent (proto JSON).
fn get<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

fn required<'a>(
    object: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<&'a Value, ServiceConfigError> {
    get(object, key).ok_or_else(|| error(&sub(path, key), "required"))
}

/// A value for an error message, shortened.
fn shown(value: &Value) -> String {
    const MAX_CHARS: usize = 40;
    let text = value.to_string();
    if text.chars().count() <= MAX_CHARS {
        return text;
    }
    let mut short: String = text.chars().take(MAX_CHARS).collect();
    short.push_str("...");
    short
}

fn as_object<'a>(
    value: &'a Value,
    path: &str,
) -> Result<&'a Map<String, Value>, ServiceConfigError> {
    value.as_object().ok_or_else(|| {
        error(
            path,
            format_args!("must be an object, got {}", shown(value)),
        )
    })
}

fn as_array<'a>(value: &'a Value, path: &str) -> Result<&'a [Value], ServiceConfigError> {
    match value {
        Value::Array(items) => Ok(items),
        _ => Err(error(
            path,
            format_args!("must be an array, got {}", shown(value)),
        )),
    }
}

fn as_str<'a>(value: &'a Value, path: &str) -> Result<&'a str, ServiceConfigError> {
    value
        .as_str()
        .ok_or_else(|| error(path, format_args!("must be a string, got {}", shown(value))))
}

fn as_bool(value: &Value, path: &str) -> Result<bool, ServiceConfigError> {
    value.as_bool().ok_or_else(|| {
        error(
            path,
            format_args!("must be true or false, got {}", shown(value)),
        )
    })
}

/// A non-negative integer: a JSON number with an integral value or a string of decimal
/// digits. Values beyond `u64` saturate.
fn as_uint(value: &Value, path: &str) -> Result<u64, ServiceConfigError> {
    let parsed = match value {
        Value::Number(n) => match n.as_u64() {
            Some(u) => Some(u),
            // An integral float (`2.0`, `1e3`); `as` saturates beyond u64.
            None => n
                .as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                .map(|f| f as u64),
        },
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            // Only digits, so the only failure is overflow.
            Some(s.parse::<u64>().unwrap_or(u64::MAX))
        }
        _ => None,
    };
    parsed.ok_or_else(|| {
        error(
            path,
            format_args!("must be a non-negative integer, got {}", shown(value)),
        )
    })
}

/// A finite number: a JSON number or a string holding one.
fn as_number(value: &Value, path: &str) -> Result<f64, ServiceConfigError> {
    let parsed = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    };
    parsed
        .filter(|f| f.is_finite())
        .ok_or_else(|| error(path, format_args!("must be a number, got {}", shown(value))))
}

/// A non-negative proto JSON duration string.
fn as_duration(value: &Value, path: &str) -> Result<Duration, ServiceConfigError> {
    let Value::String(text) = value else {
        return Err(error(
            path,
            format_args!(
                "must be a duration string such as \"1.5s\", got {}",
                shown(value)
            ),
        ));
    };
    parse_duration(text).map_err(|why| error(path, format_args!("{text:?} {why}")))
}

/// Parses the proto JSON form of a `google.protobuf.Duration`: an optional sign, decimal
/// seconds (whole part, fraction or both; at most 9 fractional digits) and the suffix `s`.
/// Negative values (other than `-0s`) and values beyond the proto range are errors.
fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    let body = text
        .strip_suffix('s')
        .ok_or("is not a duration: missing the \"s\" suffix")?;
    let (negative, body) = match body.as_bytes().first() {
        Some(b'-') => (true, &body[1..]),
        Some(b'+') => (false, &body[1..]),
        _ => (false, body),
    };
    let (whole, fraction) = body.split_once('.').unwrap_or((body, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err("is not a duration: no digits");
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err("is not a duration: expected decimal seconds followed by \"s\"");
    }
    if fraction.len() > 9 {
        return Err("is not a duration: more than 9 fractional digits");
    }
    if negative && whole.bytes().chain(fraction.bytes()).any(|b| b != b'0') {
        return Err("is negative");
    }
    let seconds = if whole.is_empty() {
        Some(0)
    } else {
        whole.parse::<u64>().ok()
    };
    let seconds = seconds
        .filter(|s| *s <= MAX_DURATION_SECONDS)
        .ok_or("is out of range (at most 315576000000s)")?;
    let mut nanos = 0u32;
    for digit in fraction.bytes() {
        nanos = nanos * 10 + u32::from(digit - b'0');
    }
    for _ in fraction.len()..9 {
        nanos *= 10;
    }
    Ok(Duration::new(seconds, nanos))
}

/// A status code: its proto enum name (case-sensitive) or its number, 0..=16.
fn as_code(value: &Value, path: &str) -> Result<Code, ServiceConfigError> {
    let code = match value {
        Value::String(name) => Code::ALL.iter().copied().find(|c| c.as_str() == name),
        Value::Number(n) => n
            .as_u64()
            .filter(|n| *n <= 16)
            .map(|n| Code::ALL[n as usize]),
        _ => None,
    };
    code.ok_or_else(|| {
        error(
            path,
            format_args!(
                "must be a status code name such as \"UNAVAILABLE\" or 0..=16, got {}",
                shown(value)
            ),
        )
    })
}

/// A list of status codes other than OK, duplicates removed (first occurrence kept).
fn as_codes(value: &Value, path: &str) -> Result<Vec<Code>, ServiceConfigError> {
    let mut codes = Vec::new();
    for (i, item) in as_array(value, path)?.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let code = as_code(item, &item_path)?;
        if code == Code::Ok {
            return Err(error(&item_path, "OK is not allowed here"));
        }
        if !codes.contains(&code) {
            codes.push(code);
        }
    }
    Ok(codes)
}

/// `maxAttempts` of a retry or hedging policy: required, at least 2, capped.
fn max_attempts(policy: &Map<String, Value>, path: &str) -> Result<u32, ServiceConfigError> {
    let field_path = sub(path, "maxAttempts");
    let attempts = as_uint(required(policy, path, "maxAttempts")?, &field_path)?;
    if attempts < 2 {
        return Err(error(
            &field_path,
            format_args!("must be at least 2, got {attempts}"),
        ));
    }
    Ok(attempts.min(u64::from(MAX_ATTEMPTS_CAP)) as u32)
}

fn parse_lb_configs(top: &Map<String, Value>) -> Result<Vec<(String, Value)>, ServiceConfigError> {
    let legacy = match get(top, "loadBalancingPolicy") {
        None => None,
        Some(v) => {
            let name = as_str(v, "loadBalancingPolicy")?;
            if name.is_empty() {
                return Err(error("loadBalancingPolicy", "must not be empty"));
            }
            Some(name.to_ascii_lowercase())
        }
    };
    let Some(list) = get(top, "loadBalancingConfig") else {
        return Ok(legacy
            .into_iter()
            .map(|name| (name, Value::Object(Map::new())))
            .collect());
    };
    let mut configs = Vec::new();
    for (i, item) in as_array(list, "loadBalancingConfig")?.iter().enumerate() {
        let path = format!("loadBalancingConfig[{i}]");
        let entry = as_object(item, &path)?;
        let mut fields = entry.iter();
        let (Some((name, config)), None) = (fields.next(), fields.next()) else {
            let why = format!(
                "must have exactly one field (the policy name), has {}",
                entry.len()
            );
            return Err(error(&path, why));
        };
        if name.is_empty() {
            return Err(error(&path, "the policy name must not be empty"));
        }
        as_object(config, &sub(&path, name))?;
        configs.push((name.clone(), config.clone()));
    }
    Ok(configs)
}

fn parse_method_configs(value: &Value, inner: &mut Inner) -> Result<(), ServiceConfigError> {
    // Every (service, method) seen so far, with the path of the name that gave it.
    let mut seen: HashMap<(String, String), String> = HashMap::new();
    for (i, item) in as_array(value, "methodConfig")?.iter().enumerate() {
        let path = format!("methodConfig[{i}]");
        let object = as_object(item, &path)?;
        let names = parse_names(object, &path)?;
        let config = Arc::new(parse_method_config(object, &path)?);
        for (j, (service, method)) in names.into_iter().enumerate() {
            let name_path = format!("{path}.name[{j}]");
            if let Some(first) = seen.get(&(service.clone(), method.clone())) {
                let why = format!(
                    "duplicate name (service {service:?}, method {method:?}), first at {first}"
                );
                return Err(error(&name_path, why));
            }
            seen.insert((service.clone(), method.clone()), name_path);
            if service.is_empty() {
                inner.default = Some(config.clone());
                continue;
            }
            let entry = inner.services.entry(service).or_default();
            if method.is_empty() {
                entry.default = Some(config.clone());
            } else {
                entry.methods.insert(method, config.clone());
            }
        }
    }
    Ok(())
}

/// The (service, method) names of a method config; `""` for an absent or null field.
fn parse_names(
    object: &Map<String, Value>,
    path: &str,
) -> Result<Vec<(String, String)>, ServiceConfigError> {
    let Some(value) = get(object, "name") else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for (j, item) in as_array(value, &sub(path, "name"))?.iter().enumerate() {
        let name_path = format!("{path}.name[{j}]");
        let name = as_object(item, &name_path)?;
        let field = |key: &str| match get(name, key) {
            None => Ok(""),
            Some(v) => as_str(v, &sub(&name_path, key)),
        };
        let service = field("service")?;
        let method = field("method")?;
        if service.is_empty() && !method.is_empty() {
            return Err(error(
                &name_path,
                format_args!("method {method:?} is given without a service"),
            ));
        }
        names.push((service.to_owned(), method.to_owned()));
    }
    Ok(names)
}

fn parse_method_config(
    object: &Map<String, Value>,
    path: &str,
) -> Result<MethodConfig, ServiceConfigError> {
    let mut config = MethodConfig::default();
    if let Some(v) = get(object, "waitForReady") {
        config.wait_for_ready = Some(as_bool(v, &sub(path, "waitForReady"))?);
    }
    if let Some(v) = get(object, "timeout") {
        config.timeout = Some(as_duration(v, &sub(path, "timeout"))?);
    }
    for (key, slot) in [
        (
            "maxRequestMessageBytes",
            &mut config.max_request_message_bytes,
        ),
        (
            "maxResponseMessageBytes",
            &mut config.max_response_message_bytes,
        ),
    ] {
        if let Some(v) = get(object, key) {
            let bytes = as_uint(v, &sub(path, key))?;
            *slot = Some(usize::try_from(bytes).unwrap_or(usize::MAX));
        }
    }
    let retry = get(object, "retryPolicy");
    let hedging = get(object, "hedgingPolicy");
    if retry.is_some() && hedging.is_some() {
        return Err(error(
            path,
            "retryPolicy and hedgingPolicy are mutually exclusive",
        ));
    }
    if let Some(v) = retry {
        config.retry_policy = Some(parse_retry_policy(v, &sub(path, "retryPolicy"))?);
    }
    if let Some(v) = hedging {
        config.hedging_policy = Some(parse_hedging_policy(v, &sub(path, "hedgingPolicy"))?);
    }
    Ok(config)
}

fn parse_retry_policy(value: &Value, path: &str) -> Result<RetryPolicy, ServiceConfigError> {
    let policy = as_object(value, path)?;
    let max_attempts = max_attempts(policy, path)?;
    let positive_duration = |key: &str| -> Result<Duration, ServiceConfigError> {
        let field_path = sub(path, key);
        let duration = as_duration(required(policy, path, key)?, &field_path)?;
        if duration.is_zero() {
            return Err(error(&field_path, "must be greater than 0"));
        }
        Ok(duration)
    };
    let initial_backoff = positive_duration("initialBackoff")?;
    let max_backoff = positive_duration("maxBackoff")?;
    let multiplier_path = sub(path, "backoffMultiplier");
    let backoff_multiplier = as_number(
        required(policy, path, "backoffMultiplier")?,
        &multiplier_path,
    )?;
    if backoff_multiplier <= 0.0 {
        return Err(error(
            &multiplier_path,
            format_args!("must be greater than 0, got {backoff_multiplier}"),
        ));
    }
    let codes_path = sub(path, "retryableStatusCodes");
    let retryable_status_codes =
        as_codes(required(policy, path, "retryableStatusCodes")?, &codes_path)?;
    if retryable_status_codes.is_empty() {
        return Err(error(&codes_path, "must not be empty"));
    }
    Ok(RetryPolicy {
        max_attempts,
        initial_backoff,
        max_backoff,
        backoff_multiplier,
        retryable_status_codes,
    })
}

fn parse_hedging_policy(value: &Value, path: &str) -> Result<HedgingPolicy, ServiceConfigError> {
    let policy = as_object(value, path)?;
    let max_attempts = max_attempts(policy, path)?;
    let hedging_delay = match get(policy, "hedgingDelay") {
        Some(v) => as_duration(v, &sub(path, "hedgingDelay"))?,
        None => Duration::ZERO,
    };
    let non_fatal_status_codes = match get(policy, "nonFatalStatusCodes") {
        Some(v) => as_codes(v, &sub(path, "nonFatalStatusCodes"))?,
        None => Vec::new(),
    };
    Ok(HedgingPolicy {
        max_attempts,
        hedging_delay,
        non_fatal_status_codes,
    })
}

fn parse_retry_throttling(value: &Value) -> Result<RetryThrottling, ServiceConfigError> {
    let path = "retryThrottling";
    let policy = as_object(value, path)?;
    let tokens_path = sub(path, "maxTokens");
    let max_tokens = as_number(required(policy, path, "maxTokens")?, &tokens_path)?;
    if !(max_tokens > 0.0 && max_tokens <= MAX_TOKENS_LIMIT) {
        return Err(error(
            &tokens_path,
            format_args!("must be in (0, 1000], got {max_tokens}"),
        ));
    }
    let ratio_path = sub(path, "tokenRatio");
    let ratio = as_number(required(policy, path, "tokenRatio")?, &ratio_path)?;
    if ratio <= 0.0 {
        return Err(error(
            &ratio_path,
            format_args!("must be greater than 0, got {ratio}"),
        ));
    }
    let token_ratio = truncate_to_3_decimals(ratio);
    if token_ratio == 0.0 {
        return Err(error(
            &ratio_path,
            format_args!("{ratio} is 0 when truncated to 3 decimal places"),
        ));
    }
    Ok(RetryThrottling {
        max_tokens,
        token_ratio,
    })
}

/// Drops decimal places beyond the third of a positive finite number, on its shortest
/// decimal form rather than by `x * 1000` arithmetic, so 1.005 stays 1.005 instead of
/// becoming 1.004.
fn truncate_to_3_decimals(x: f64) -> f64 {
    // `Display` of f64 never uses exponent notation.
    let text = x.to_string();
    match text.find('.') {
        Some(dot) if text.len() > dot + 4 => text[..dot + 4].parse().unwrap_or(x),
        _ => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(json: &str) -> ServiceConfig {
        match ServiceConfig::parse(json) {
            Ok(config) => config,
            Err(e) => panic!("{json} should parse: {e}"),
        }
    }

    /// Asserts `json` is rejected with a message starting with `prefix` (the JSON path).
    fn rejects(json: &str, prefix: &str) -> String {
        match ServiceConfig::parse(json) {
            Ok(config) => panic!("{json} should be rejected, parsed as {config:?}"),
            Err(e) => {
                let message = e.message();
                assert!(
                    message.starts_with(prefix),
                    "{json}: message {message:?} should start with {prefix:?}"
                );
                e.message().to_owned()
            }
        }
    }

    /// A config with one method config `{"name": [{"service": "s"}], <fields>}`.
    fn method(fields: &str) -> String {
        format!(r#"{{"methodConfig": [{{"name": [{{"service": "s"}}], {fields}}}]}}"#)
    }

    fn method_of(fields: &str) -> MethodConfig {
        let config = parse(&method(fields));
        let found = config.method_config("/s/m").expect("the service entry");
        (**found).clone()
    }

    fn retry(fields: &str) -> String {
        method(&format!(r#""retryPolicy": {{{fields}}}"#))
    }

    const RETRY_OK: &str = r#""maxAttempts": 3, "initialBackoff": "0.1s", "maxBackoff": "1s", "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"]"#;

    fn retry_of(fields: &str) -> RetryPolicy {
        method_of(&format!(r#""retryPolicy": {{{fields}}}"#))
            .retry_policy
            .expect("a retry policy")
    }

    fn hedging_of(fields: &str) -> HedgingPolicy {
        method_of(&format!(r#""hedgingPolicy": {{{fields}}}"#))
            .hedging_policy
            .expect("a hedging policy")
    }

    fn throttling(fields: &str) -> String {
        format!(r#"{{"retryThrottling": {{{fields}}}}}"#)
    }

    fn throttling_of(fields: &str) -> RetryThrottling {
        parse(&throttling(fields))
            .retry_throttling()
            .expect("retry throttling")
    }

    fn duration(text: &str) -> Result<Duration, &'static str> {
        parse_duration(text)
    }

    // ---- top level ----

    #[test]
    fn empty_object_is_the_empty_config() {
        let config = parse("{}");
        assert_eq!(config, ServiceConfig::empty());
        assert_eq!(config, ServiceConfig::default());
        assert!(config.method_config("/s/m").is_none());
        assert!(config.lb_configs().is_empty());
        assert!(config.select_lb(|_| true).is_none());
        assert!(config.retry_throttling().is_none());
        assert!(config.health_check_service_name().is_none());
    }

    #[test]
    fn empty_is_shared() {
        assert!(Arc::ptr_eq(
            &ServiceConfig::empty().inner,
            &ServiceConfig::empty().inner
        ));
        assert!(Arc::ptr_eq(
            &ServiceConfig::default().inner,
            &ServiceConfig::empty().inner
        ));
    }

    #[test]
    fn top_level_must_be_a_json_object() {
        for json in ["[]", "null", "1", r#""x""#, "true"] {
            rejects(json, "service config must be a JSON object");
        }
        for json in ["", "{", "{} {}", "{'a': 1}", r#"{"a": 1,}"#] {
            rejects(json, "service config is not valid JSON");
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let config = parse(
            r#"{"someFutureField": {"x": [1, 2]}, "methodConfig": [{"name": [{"service": "s", "extra": 1}],
                "timeout": "1s", "perAttemptRecvTimeout": "bogus", "retryPolicy": {"maxAttempts": 2,
                "initialBackoff": "1s", "maxBackoff": "1s", "backoffMultiplier": 1, "retryableStatusCodes": [14],
                "unknown": true}}], "retryThrottling": {"maxTokens": 1, "tokenRatio": 1, "x": "y"},
                "healthCheckConfig": {"serviceName": "h", "other": 1}}"#,
        );
        assert_eq!(
            config.method_config("/s/m").and_then(|m| m.timeout),
            Some(Duration::from_secs(1))
        );
        assert_eq!(config.health_check_service_name(), Some("h"));
    }

    #[test]
    fn null_fields_count_as_absent() {
        let config = parse(
            r#"{"loadBalancingConfig": null, "loadBalancingPolicy": null, "methodConfig": null,
                "retryThrottling": null, "healthCheckConfig": null}"#,
        );
        assert_eq!(config, ServiceConfig::empty());
        let m = method_of(
            r#""timeout": null, "waitForReady": null, "maxRequestMessageBytes": null, "retryPolicy": null,
               "hedgingPolicy": {"maxAttempts": 2}"#,
        );
        assert_eq!(m.timeout, None);
        assert_eq!(m.wait_for_ready, None);
        assert_eq!(m.max_request_message_bytes, None);
        assert!(m.retry_policy.is_none());
        assert!(m.hedging_policy.is_some());
    }

    #[test]
    fn wrong_types_of_top_level_fields_are_errors() {
        rejects(r#"{"methodConfig": {}}"#, "methodConfig: must be an array");
        rejects(
            r#"{"methodConfig": [1]}"#,
            "methodConfig[0]: must be an object",
        );
        rejects(
            r#"{"loadBalancingConfig": {}}"#,
            "loadBalancingConfig: must be an array",
        );
        rejects(
            r#"{"loadBalancingPolicy": 1}"#,
            "loadBalancingPolicy: must be a string",
        );
        rejects(
            r#"{"retryThrottling": []}"#,
            "retryThrottling: must be an object",
        );
        rejects(
            r#"{"healthCheckConfig": "x"}"#,
            "healthCheckConfig: must be an object",
        );
    }

    #[test]
    fn error_display_and_message() {
        let err = ServiceConfig::parse(r#"{"healthCheckConfig": {"serviceName": 1}}"#).unwrap_err();
        assert_eq!(
            err.message(),
            "healthCheckConfig.serviceName: must be a string, got 1"
        );
        assert_eq!(
            err.to_string(),
            "invalid service config: healthCheckConfig.serviceName: must be a string, got 1"
        );
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(err.clone());
        assert_eq!(boxed.to_string(), err.to_string());
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let long = "x".repeat(100);
        let message = rejects(
            &format!(r#"{{"loadBalancingPolicy": ["{long}"]}}"#),
            "loadBalancingPolicy",
        );
        assert!(message.ends_with("...") && message.len() < 100, "{message}");
    }

    #[test]
    fn error_paths_name_the_entry() {
        let json = format!(
            r#"{{"methodConfig": [{{"name": [{{"service": "a"}}]}},
                {{"name": [{{"service": "b"}}], "retryPolicy": {{{}}}}}]}}"#,
            RETRY_OK.replace(r#""maxAttempts": 3"#, r#""maxAttempts": 1"#)
        );
        let message = rejects(&json, "methodConfig[1].retryPolicy.maxAttempts: ");
        assert_eq!(
            message,
            "methodConfig[1].retryPolicy.maxAttempts: must be at least 2, got 1"
        );
    }

    // ---- names and lookup ----

    const PRECEDENCE: &str = r#"{"methodConfig": [
        {"name": [{}], "timeout": "1s"},
        {"name": [{"service": "pkg.S"}], "timeout": "2s"},
        {"name": [{"service": "pkg.S", "method": "Exact"}, {"service": "other.T", "method": "M"}], "timeout": "3s"}
    ]}"#;

    fn timeout_for(config: &ServiceConfig, path: &str) -> Option<u64> {
        config
            .method_config(path)
            .and_then(|m| m.timeout)
            .map(|t| t.as_secs())
    }

    #[test]
    fn exact_then_service_then_default() {
        let config = parse(PRECEDENCE);
        assert_eq!(timeout_for(&config, "/pkg.S/Exact"), Some(3));
        assert_eq!(timeout_for(&config, "/pkg.S/Other"), Some(2));
        assert_eq!(timeout_for(&config, "/pkg.S/"), Some(2));
        assert_eq!(timeout_for(&config, "/other.T/M"), Some(3));
        assert_eq!(timeout_for(&config, "/other.T/N"), Some(1));
        assert_eq!(timeout_for(&config, "/unknown.U/M"), Some(1));
        // Names are case-sensitive.
        assert_eq!(timeout_for(&config, "/pkg.S/exact"), Some(2));
        assert_eq!(timeout_for(&config, "/PKG.S/Exact"), Some(1));
    }

    #[test]
    fn malformed_paths_get_only_the_default() {
        let config = parse(PRECEDENCE);
        for path in ["", "/", "pkg.S/Exact", "/pkg.S", "pkg.S", "//Exact"] {
            assert_eq!(timeout_for(&config, path), Some(1), "{path:?}");
        }
        let no_default =
            parse(r#"{"methodConfig": [{"name": [{"service": "pkg.S"}], "timeout": "2s"}]}"#);
        for path in ["pkg.S/Exact", "/pkg.S", "pkg.S"] {
            assert!(no_default.method_config(path).is_none(), "{path:?}");
        }
    }

    #[test]
    fn nothing_matches_without_a_default() {
        let config = parse(
            r#"{"methodConfig": [{"name": [{"service": "a.A", "method": "M"}], "timeout": "1s"}]}"#,
        );
        assert!(config.method_config("/a.A/M").is_some());
        assert!(config.method_config("/a.A/N").is_none());
        assert!(config.method_config("/b.B/M").is_none());
    }

    #[test]
    fn default_entry_forms() {
        for name in [
            r#"{}"#,
            r#"{"service": ""}"#,
            r#"{"service": "", "method": ""}"#,
            r#"{"service": null}"#,
            r#"{"method": null}"#,
            r#"{"method": ""}"#,
        ] {
            let config = parse(&format!(
                r#"{{"methodConfig": [{{"name": [{name}], "waitForReady": true}}]}}"#
            ));
            let found = config.method_config("/any.Service/Any").expect(name);
            assert_eq!(found.wait_for_ready, Some(true), "{name}");
        }
    }

    #[test]
    fn service_entry_forms() {
        let names = [
            r#"{"service": "s"}"#,
            r#"{"service": "s", "method": ""}"#,
            r#"{"service": "s", "method": null}"#,
        ];
        for name in names {
            let config = parse(&format!(
                r#"{{"methodConfig": [{{"name": [{name}], "waitForReady": true}}]}}"#
            ));
            assert!(config.method_config("/s/Any").is_some(), "{name}");
            assert!(config.method_config("/t/Any").is_none(), "{name}");
        }
    }

    #[test]
    fn names_of_one_entry_share_its_config() {
        let config = parse(PRECEDENCE);
        let a = config.method_config("/pkg.S/Exact").unwrap();
        let b = config.method_config("/other.T/M").unwrap();
        assert!(Arc::ptr_eq(a, b));
        let cloned = config.clone();
        assert!(Arc::ptr_eq(
            a,
            cloned.method_config("/pkg.S/Exact").unwrap()
        ));
    }

    #[test]
    fn method_without_service_is_an_error() {
        let message = rejects(
            r#"{"methodConfig": [{"name": [{"method": "M"}]}]}"#,
            "methodConfig[0].name[0]: ",
        );
        assert!(message.contains("without a service"), "{message}");
        rejects(
            r#"{"methodConfig": [{"name": [{"service": "", "method": "M"}]}]}"#,
            "methodConfig[0].name[0]: ",
        );
        rejects(
            r#"{"methodConfig": [{"name": [{"service": null, "method": "M"}]}]}"#,
            "methodConfig[0].name[0]: ",
        );
    }

    #[test]
    fn name_field_types() {
        rejects(
            r#"{"methodConfig": [{"name": {"service": "s"}}]}"#,
            "methodConfig[0].name: must be an array",
        );
        rejects(
            r#"{"methodConfig": [{"name": ["s"]}]}"#,
            "methodConfig[0].name[0]: must be an object",
        );
        let name = |entry: &str| format!(r#"{{"methodConfig": [{{"name": [{entry}]}}]}}"#);
        rejects(
            &name(r#"{"service": 1}"#),
            "methodConfig[0].name[0].service: must be a string",
        );
        rejects(
            &name(r#"{"service": "s", "method": []}"#),
            "methodConfig[0].name[0].method: must be a string",
        );
    }

    #[test]
    fn duplicate_names_are_errors() {
        let cases = [
            // Same exact name in two entries.
            (
                r#"[{"name": [{"service": "s", "method": "m"}]}, {"name": [{"service": "s", "method": "m"}]}]"#,
                "methodConfig[1].name[0]: ",
                "methodConfig[0].name[0]",
            ),
            // Twice in one entry.
            (
                r#"[{"name": [{"service": "s"}, {"service": "t"}, {"service": "s"}]}]"#,
                "methodConfig[0].name[2]: ",
                "methodConfig[0].name[0]",
            ),
            // The two spellings of a service's entry.
            (
                r#"[{"name": [{"service": "s"}]}, {"name": [{"service": "s", "method": ""}]}]"#,
                "methodConfig[1].name[0]: ",
                "methodConfig[0].name[0]",
            ),
            // The spellings of the default entry.
            (
                r#"[{"name": [{}]}, {"name": [{"service": ""}]}]"#,
                "methodConfig[1].name[0]: ",
                "methodConfig[0].name[0]",
            ),
            (
                r#"[{"name": [{"service": "a"}]}, {"name": [{}]}, {"name": [{"method": null}]}]"#,
                "methodConfig[2].name[0]: ",
                "methodConfig[1].name[0]",
            ),
        ];
        for (list, prefix, first) in cases {
            let message = rejects(&format!(r#"{{"methodConfig": {list}}}"#), prefix);
            assert!(
                message.contains("duplicate name") && message.ends_with(first),
                "{message}"
            );
        }
        // The same method name under different services is fine.
        parse(
            r#"{"methodConfig": [{"name": [{"service": "a", "method": "m"}, {"service": "b", "method": "m"}]}]}"#,
        );
    }

    #[test]
    fn entries_without_names_apply_to_nothing_but_are_validated() {
        let config =
            parse(r#"{"methodConfig": [{"timeout": "1s"}, {"name": [], "timeout": "2s"}]}"#);
        assert!(config.method_config("/s/m").is_none());
        assert!(config.method_config("").is_none());
        rejects(
            r#"{"methodConfig": [{"timeout": "1"}]}"#,
            "methodConfig[0].timeout: ",
        );
        rejects(
            r#"{"methodConfig": [{"name": [], "retryPolicy": {}}]}"#,
            "methodConfig[0].retryPolicy.maxAttempts: ",
        );
    }

    #[test]
    fn lookup_on_a_config_without_services_or_default() {
        let config = parse(r#"{"loadBalancingPolicy": "round_robin"}"#);
        assert!(config.method_config("/s/m").is_none());
    }

    // ---- method config fields ----

    #[test]
    fn wait_for_ready() {
        assert_eq!(
            method_of(r#""waitForReady": true"#).wait_for_ready,
            Some(true)
        );
        assert_eq!(
            method_of(r#""waitForReady": false"#).wait_for_ready,
            Some(false)
        );
        assert_eq!(method_of(r#""timeout": "1s""#).wait_for_ready, None);
        rejects(
            &method(r#""waitForReady": "true""#),
            "methodConfig[0].waitForReady: must be true or false",
        );
        rejects(
            &method(r#""waitForReady": 1"#),
            "methodConfig[0].waitForReady: ",
        );
    }

    #[test]
    fn timeout() {
        assert_eq!(
            method_of(r#""timeout": "1.5s""#).timeout,
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            method_of(r#""timeout": "0s""#).timeout,
            Some(Duration::ZERO)
        );
        assert_eq!(
            method_of(r#""timeout": "315576000000s""#).timeout,
            Some(Duration::from_secs(315_576_000_000))
        );
        assert_eq!(method_of(r#""waitForReady": true"#).timeout, None);
        rejects(
            &method(r#""timeout": "-1s""#),
            "methodConfig[0].timeout: \"-1s\" is negative",
        );
        rejects(&method(r#""timeout": "1""#), "methodConfig[0].timeout: ");
        rejects(
            &method(r#""timeout": 1"#),
            "methodConfig[0].timeout: must be a duration string",
        );
        rejects(
            &method(r#""timeout": "315576000001s""#),
            "methodConfig[0].timeout: ",
        );
        rejects(
            &method(r#""timeout": "99999999999999999999999s""#),
            "methodConfig[0].timeout: ",
        );
    }

    #[test]
    fn message_size_limits() {
        let m = method_of(r#""maxRequestMessageBytes": 1024, "maxResponseMessageBytes": "2048""#);
        assert_eq!(m.max_request_message_bytes, Some(1024));
        assert_eq!(m.max_response_message_bytes, Some(2048));
        let m = method_of(r#""maxRequestMessageBytes": 0, "maxResponseMessageBytes": "0""#);
        assert_eq!(
            (m.max_request_message_bytes, m.max_response_message_bytes),
            (Some(0), Some(0))
        );
        // Integral floats, exponents and huge values (saturating).
        assert_eq!(
            method_of(r#""maxRequestMessageBytes": 1e3"#).max_request_message_bytes,
            Some(1000)
        );
        assert_eq!(
            method_of(r#""maxRequestMessageBytes": 4.0"#).max_request_message_bytes,
            Some(4)
        );
        let huge = [
            r#""99999999999999999999999""#,
            "99999999999999999999999",
            "18446744073709551615",
        ];
        for value in huge {
            let m = method_of(&format!(r#""maxResponseMessageBytes": {value}"#));
            assert_eq!(m.max_response_message_bytes, Some(usize::MAX), "{value}");
        }
        for bad in [
            "-1", "1.5", r#""-1""#, r#""""#, r#""1e3""#, r#"" 1""#, r#""+1""#, r#""abc""#, "true",
            "[]",
        ] {
            rejects(
                &method(&format!(r#""maxRequestMessageBytes": {bad}"#)),
                "methodConfig[0].maxRequestMessageBytes: must be a non-negative integer",
            );
            rejects(
                &method(&format!(r#""maxResponseMessageBytes": {bad}"#)),
                "methodConfig[0].maxResponseMessageBytes: must be a non-negative integer",
            );
        }
    }

    // ---- retry policy ----

    #[test]
    fn retry_policy_accepted() {
        let policy = retry_of(
            r#""maxAttempts": 4, "initialBackoff": "0.1s", "maxBackoff": "10s", "backoffMultiplier": 1.5,
               "retryableStatusCodes": ["UNAVAILABLE", 4, "UNAVAILABLE", "RESOURCE_EXHAUSTED", 14]"#,
        );
        assert_eq!(
            policy,
            RetryPolicy {
                max_attempts: 4,
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(10),
                backoff_multiplier: 1.5,
                retryable_status_codes: vec![
                    Code::Unavailable,
                    Code::DeadlineExceeded,
                    Code::ResourceExhausted
                ],
            }
        );
        assert!(method_of(&format!(r#""retryPolicy": {{{RETRY_OK}}}"#))
            .hedging_policy
            .is_none());
    }

    #[test]
    fn retry_max_attempts_is_validated_then_capped() {
        let with = |attempts: &str| {
            RETRY_OK.replace(
                r#""maxAttempts": 3"#,
                &format!(r#""maxAttempts": {attempts}"#),
            )
        };
        assert_eq!(retry_of(&with("2")).max_attempts, 2);
        assert_eq!(retry_of(&with("5")).max_attempts, 5);
        assert_eq!(retry_of(&with("6")).max_attempts, MAX_ATTEMPTS_CAP);
        assert_eq!(retry_of(&with("1000000")).max_attempts, MAX_ATTEMPTS_CAP);
        assert_eq!(retry_of(&with("1e30")).max_attempts, MAX_ATTEMPTS_CAP);
        assert_eq!(retry_of(&with(r#""4""#)).max_attempts, 4);
        for bad in ["1", "0", r#""1""#] {
            rejects(
                &retry(&with(bad)),
                "methodConfig[0].retryPolicy.maxAttempts: must be at least 2",
            );
        }
        for bad in ["-3", "2.5", r#""two""#, "true"] {
            rejects(
                &retry(&with(bad)),
                "methodConfig[0].retryPolicy.maxAttempts: must be a non-negative integer",
            );
        }
        let missing = RETRY_OK.replace(r#""maxAttempts": 3,"#, "");
        assert_eq!(
            rejects(&retry(&missing), ""),
            "methodConfig[0].retryPolicy.maxAttempts: required"
        );
    }

    #[test]
    fn retry_backoffs_must_be_positive_durations() {
        for key in ["initialBackoff", "maxBackoff"] {
            let original = if key == "initialBackoff" {
                r#""initialBackoff": "0.1s""#
            } else {
                r#""maxBackoff": "1s""#
            };
            let with = |value: &str| RETRY_OK.replace(original, &format!(r#""{key}": {value}"#));
            let prefix = format!("methodConfig[0].retryPolicy.{key}: ");
            assert_eq!(
                rejects(&retry(&with(r#""0s""#)), &prefix),
                format!("{prefix}must be greater than 0")
            );
            rejects(&retry(&with(r#""0.000000000s""#)), &prefix);
            rejects(&retry(&with(r#""-1s""#)), &prefix);
            rejects(&retry(&with(r#""1""#)), &prefix);
            rejects(&retry(&with("1")), &prefix);
            rejects(&retry(&with("null")), &format!("{prefix}required"));
            assert!(retry_of(&with(r#""0.000000001s""#)).max_attempts == 3);
        }
    }

    #[test]
    fn retry_backoff_multiplier() {
        let with = |value: &str| {
            RETRY_OK.replace(
                r#""backoffMultiplier": 2"#,
                &format!(r#""backoffMultiplier": {value}"#),
            )
        };
        assert_eq!(retry_of(&with("0.5")).backoff_multiplier, 0.5);
        assert_eq!(retry_of(&with(r#""1.5""#)).backoff_multiplier, 1.5);
        let prefix = "methodConfig[0].retryPolicy.backoffMultiplier: ";
        rejects(
            &retry(&with("0")),
            &format!("{prefix}must be greater than 0"),
        );
        rejects(
            &retry(&with("-1")),
            &format!("{prefix}must be greater than 0"),
        );
        for bad in [r#""x""#, r#""NaN""#, r#""inf""#, "[]", "true"] {
            rejects(&retry(&with(bad)), &format!("{prefix}must be a number"));
        }
        rejects(
            &retry(&RETRY_OK.replace(r#""backoffMultiplier": 2,"#, "")),
            &format!("{prefix}required"),
        );
    }

    #[test]
    fn retry_status_codes() {
        let with = |value: &str| {
            let field = format!(r#""retryableStatusCodes": {value}"#);
            RETRY_OK.replace(r#""retryableStatusCodes": ["UNAVAILABLE"]"#, &field)
        };
        let all_names: Vec<String> = Code::ALL[1..]
            .iter()
            .map(|c| format!("{:?}", c.as_str()))
            .collect();
        let policy = retry_of(&with(&format!("[{}]", all_names.join(", "))));
        assert_eq!(policy.retryable_status_codes, Code::ALL[1..].to_vec());
        let numbers: Vec<String> = (1..=16).rev().map(|n| n.to_string()).collect();
        let policy = retry_of(&with(&format!("[{}]", numbers.join(", "))));
        assert_eq!(
            policy.retryable_status_codes,
            Code::ALL[1..].iter().rev().copied().collect::<Vec<_>>()
        );
        let prefix = "methodConfig[0].retryPolicy.retryableStatusCodes";
        assert_eq!(
            rejects(&retry(&with("[]")), prefix),
            format!("{prefix}: must not be empty")
        );
        rejects(&retry(&with("null")), &format!("{prefix}: required"));
        rejects(
            &retry(&with(r#""UNAVAILABLE""#)),
            &format!("{prefix}: must be an array"),
        );
        for (bad, index) in [
            (r#"["UNAVAILABLE", "unavailable"]"#, 1),
            (r#"["Unavailable"]"#, 0),
            (r#"["BOGUS"]"#, 0),
            (r#"[17]"#, 0),
            (r#"[-1]"#, 0),
            (r#"[14.5]"#, 0),
            (r#"["14"]"#, 0),
            (r#"[null]"#, 0),
            (r#"[[14]]"#, 0),
        ] {
            rejects(
                &retry(&with(bad)),
                &format!("{prefix}[{index}]: must be a status code"),
            );
        }
        rejects(
            &retry(&with(r#"["OK"]"#)),
            &format!("{prefix}[0]: OK is not allowed"),
        );
        rejects(
            &retry(&with("[14, 0]")),
            &format!("{prefix}[1]: OK is not allowed"),
        );
    }

    #[test]
    fn retry_policy_must_be_an_object() {
        rejects(
            &method(r#""retryPolicy": true"#),
            "methodConfig[0].retryPolicy: must be an object",
        );
        rejects(
            &method(r#""retryPolicy": {}"#),
            "methodConfig[0].retryPolicy.maxAttempts: required",
        );
    }

    // ---- hedging policy ----

    #[test]
    fn hedging_policy_accepted() {
        let policy = hedging_of(
            r#""maxAttempts": 3, "hedgingDelay": "0.5s", "nonFatalStatusCodes": ["UNAVAILABLE", 14, 13]"#,
        );
        assert_eq!(
            policy,
            HedgingPolicy {
                max_attempts: 3,
                hedging_delay: Duration::from_millis(500),
                non_fatal_status_codes: vec![Code::Unavailable, Code::Internal],
            }
        );
        let defaults = hedging_of(r#""maxAttempts": 2"#);
        assert_eq!(defaults.hedging_delay, Duration::ZERO);
        assert!(defaults.non_fatal_status_codes.is_empty());
        assert!(hedging_of(r#""maxAttempts": 2, "nonFatalStatusCodes": []"#)
            .non_fatal_status_codes
            .is_empty());
        assert_eq!(
            hedging_of(r#""maxAttempts": 2, "hedgingDelay": "0s""#).hedging_delay,
            Duration::ZERO
        );
        assert!(method_of(r#""hedgingPolicy": {"maxAttempts": 2}"#)
            .retry_policy
            .is_none());
    }

    #[test]
    fn hedging_max_attempts() {
        assert_eq!(
            hedging_of(r#""maxAttempts": 7"#).max_attempts,
            MAX_ATTEMPTS_CAP
        );
        assert_eq!(hedging_of(r#""maxAttempts": 5"#).max_attempts, 5);
        let prefix = "methodConfig[0].hedgingPolicy.maxAttempts: ";
        rejects(
            &method(r#""hedgingPolicy": {"maxAttempts": 1}"#),
            &format!("{prefix}must be at least 2"),
        );
        rejects(&method(r#""hedgingPolicy": {"maxAttempts": -2}"#), prefix);
        rejects(
            &method(r#""hedgingPolicy": {}"#),
            &format!("{prefix}required"),
        );
    }

    #[test]
    fn hedging_delay_and_codes_are_validated() {
        let prefix = "methodConfig[0].hedgingPolicy.";
        let delay_path = format!("{prefix}hedgingDelay: ");
        rejects(
            &method(r#""hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "-0.5s"}"#),
            &delay_path,
        );
        rejects(
            &method(r#""hedgingPolicy": {"maxAttempts": 2, "hedgingDelay": "5"}"#),
            &delay_path,
        );
        rejects(
            &method(r#""hedgingPolicy": {"maxAttempts": 2, "nonFatalStatusCodes": ["NOPE"]}"#),
            &format!("{prefix}nonFatalStatusCodes[0]: "),
        );
        rejects(
            &method(r#""hedgingPolicy": {"maxAttempts": 2, "nonFatalStatusCodes": [0]}"#),
            &format!("{prefix}nonFatalStatusCodes[0]: OK is not allowed"),
        );
        rejects(
            &method(r#""hedgingPolicy": []"#),
            "methodConfig[0].hedgingPolicy: must be an object",
        );
    }

    #[test]
    fn retry_and_hedging_together_is_an_error() {
        let json = method(&format!(
            r#""retryPolicy": {{{RETRY_OK}}}, "hedgingPolicy": {{"maxAttempts": 2}}"#
        ));
        let message = rejects(&json, "methodConfig[0]: ");
        assert!(message.contains("mutually exclusive"), "{message}");
    }

    // ---- retry throttling ----

    #[test]
    fn retry_throttling_accepted() {
        let t = throttling_of(r#""maxTokens": 10, "tokenRatio": 0.1"#);
        assert_eq!(
            t,
            RetryThrottling {
                max_tokens: 10.0,
                token_ratio: 0.1
            }
        );
        assert_eq!(
            throttling_of(r#""maxTokens": 1000, "tokenRatio": 5"#).max_tokens,
            1000.0
        );
        assert_eq!(
            throttling_of(r#""maxTokens": 0.5, "tokenRatio": 1"#).max_tokens,
            0.5
        );
        assert_eq!(
            throttling_of(r#""maxTokens": "7", "tokenRatio": "0.25""#),
            RetryThrottling {
                max_tokens: 7.0,
                token_ratio: 0.25
            }
        );
    }

    #[test]
    fn retry_throttling_truncates_token_ratio_to_3_places() {
        let ratio =
            |r: &str| throttling_of(&format!(r#""maxTokens": 10, "tokenRatio": {r}"#)).token_ratio;
        assert_eq!(ratio("0.1234"), 0.123);
        assert_eq!(ratio("0.5466"), 0.546);
        assert_eq!(ratio("0.9999"), 0.999);
        assert_eq!(ratio("1.005"), 1.005);
        assert_eq!(ratio("0.29"), 0.29);
        assert_eq!(ratio("0.001"), 0.001);
        assert_eq!(ratio("0.0019"), 0.001);
        assert_eq!(ratio("123.4567"), 123.456);
        assert_eq!(ratio("2"), 2.0);
        assert_eq!(ratio("1e-3"), 0.001);
    }

    #[test]
    fn retry_throttling_rejected() {
        let with = |fields: &str| throttling(fields);
        let tokens = "retryThrottling.maxTokens: ";
        let ratio = "retryThrottling.tokenRatio: ";
        for bad in ["0", "-1", "1000.5", "1001"] {
            let json = with(&format!(r#""maxTokens": {bad}, "tokenRatio": 0.1"#));
            rejects(&json, &format!("{tokens}must be in (0, 1000]"));
        }
        rejects(
            &with(r#""maxTokens": "many", "tokenRatio": 0.1"#),
            &format!("{tokens}must be a number"),
        );
        rejects(&with(r#""tokenRatio": 0.1"#), &format!("{tokens}required"));
        for bad in ["0", "-0.5"] {
            let json = with(&format!(r#""maxTokens": 10, "tokenRatio": {bad}"#));
            rejects(&json, &format!("{ratio}must be greater than 0"));
        }
        let message = rejects(&with(r#""maxTokens": 10, "tokenRatio": 0.0009"#), ratio);
        assert!(message.contains("truncated"), "{message}");
        rejects(&with(r#""maxTokens": 10"#), &format!("{ratio}required"));
        rejects(
            &with(r#""maxTokens": 10, "tokenRatio": [0.1]"#),
            &format!("{ratio}must be a number"),
        );
    }

    #[test]
    fn truncation_helper() {
        assert_eq!(truncate_to_3_decimals(0.1234), 0.123);
        assert_eq!(truncate_to_3_decimals(1e-7), 0.0);
        assert_eq!(truncate_to_3_decimals(1e21), 1e21);
        assert_eq!(truncate_to_3_decimals(4.35), 4.35);
    }

    // ---- health check ----

    #[test]
    fn health_check_service_name() {
        let name = |json: &str| parse(json).health_check_service_name().map(str::to_owned);
        let health = name(r#"{"healthCheckConfig": {"serviceName": "grpc.health.v1.Health"}}"#);
        assert_eq!(health.as_deref(), Some("grpc.health.v1.Health"));
        assert_eq!(
            name(r#"{"healthCheckConfig": {"serviceName": ""}}"#).as_deref(),
            Some("")
        );
        assert_eq!(name(r#"{"healthCheckConfig": {}}"#), None);
        assert_eq!(
            name(r#"{"healthCheckConfig": {"serviceName": null}}"#),
            None
        );
        assert_eq!(name("{}"), None);
        rejects(
            r#"{"healthCheckConfig": {"serviceName": ["x"]}}"#,
            "healthCheckConfig.serviceName: must be a string",
        );
    }

    // ---- load balancing ----

    #[test]
    fn lb_configs_in_order() {
        let config = parse(
            r#"{"loadBalancingConfig": [{"grpclb": {"childPolicy": [{"pick_first": {}}]}}, {"round_robin": {}},
                {"pick_first": {"shuffleAddressList": true}}]}"#,
        );
        let names: Vec<&str> = config
            .lb_configs()
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["grpclb", "round_robin", "pick_first"]);
        assert_eq!(
            config.lb_configs()[0].1,
            json!({"childPolicy": [{"pick_first": {}}]})
        );
        assert_eq!(
            config.lb_configs()[2].1,
            json!({"shuffleAddressList": true})
        );
    }

    #[test]
    fn legacy_policy_used_only_without_lb_config() {
        let config = parse(r#"{"loadBalancingPolicy": "ROUND_ROBIN"}"#);
        assert_eq!(config.lb_configs(), [("round_robin".to_owned(), json!({}))]);
        let config = parse(r#"{"loadBalancingPolicy": "Pick_First"}"#);
        assert_eq!(
            config.select_lb(|n| n == "pick_first"),
            Some(("pick_first", &json!({})))
        );
        let config = parse(
            r#"{"loadBalancingPolicy": "ROUND_ROBIN", "loadBalancingConfig": [{"pick_first": {}}]}"#,
        );
        assert_eq!(config.lb_configs(), [("pick_first".to_owned(), json!({}))]);
        assert_eq!(config.select_lb(|n| n == "round_robin"), None);
        // An empty loadBalancingConfig is present: the legacy field is still ignored.
        let config = parse(r#"{"loadBalancingPolicy": "ROUND_ROBIN", "loadBalancingConfig": []}"#);
        assert!(config.lb_configs().is_empty());
        // The legacy field is type-checked even when ignored.
        rejects(
            r#"{"loadBalancingPolicy": 5, "loadBalancingConfig": []}"#,
            "loadBalancingPolicy: must be a string",
        );
        rejects(
            r#"{"loadBalancingPolicy": ""}"#,
            "loadBalancingPolicy: must not be empty",
        );
    }

    #[test]
    fn select_lb_takes_the_first_supported() {
        let config = parse(
            r#"{"loadBalancingConfig": [{"unknown_policy": {"a": 1}}, {"round_robin": {"b": 2}},
                {"pick_first": {}}, {"round_robin": {"c": 3}}]}"#,
        );
        let supported = |name: &str| name == "round_robin" || name == "pick_first";
        assert_eq!(
            config.select_lb(supported),
            Some(("round_robin", &json!({"b": 2})))
        );
        assert_eq!(
            config.select_lb(|n| n == "pick_first"),
            Some(("pick_first", &json!({})))
        );
        assert_eq!(
            config.select_lb(|_| true).map(|(n, _)| n),
            Some("unknown_policy")
        );
        assert_eq!(config.select_lb(|_| false), None);
    }

    #[test]
    fn lb_config_entries_are_validated() {
        let lb = |list: &str| format!(r#"{{"loadBalancingConfig": {list}}}"#);
        let message = rejects(
            &lb(r#"[{"round_robin": {}, "pick_first": {}}]"#),
            "loadBalancingConfig[0]: ",
        );
        assert!(
            message.contains("exactly one field") && message.ends_with("has 2"),
            "{message}"
        );
        rejects(
            &lb(r#"[{"round_robin": {}}, {}]"#),
            "loadBalancingConfig[1]: must have exactly one field",
        );
        rejects(
            &lb(r#"["round_robin"]"#),
            "loadBalancingConfig[0]: must be an object",
        );
        rejects(
            &lb(r#"[{"round_robin": []}]"#),
            "loadBalancingConfig[0].round_robin: must be an object",
        );
        rejects(
            &lb(r#"[{"round_robin": null}]"#),
            "loadBalancingConfig[0].round_robin: must be an object",
        );
        rejects(
            &lb(r#"[{"": {}}]"#),
            "loadBalancingConfig[0]: the policy name must not be empty",
        );
    }

    // ---- durations ----

    #[test]
    fn duration_accepts_proto_json_forms() {
        let ok = |text: &str, secs: u64, nanos: u32| {
            assert_eq!(duration(text), Ok(Duration::new(secs, nanos)), "{text}");
        };
        ok("1s", 1, 0);
        ok("0s", 0, 0);
        ok("0.5s", 0, 500_000_000);
        ok(".5s", 0, 500_000_000);
        ok("1.s", 1, 0);
        ok("1.000340012s", 1, 340_012);
        ok("0.000000001s", 0, 1);
        ok("0.1s", 0, 100_000_000);
        ok("0.010s", 0, 10_000_000);
        ok("1.123456789s", 1, 123_456_789);
        ok("0001.5s", 1, 500_000_000);
        ok("+2s", 2, 0);
        ok("-0s", 0, 0);
        ok("-0.000s", 0, 0);
        ok("315576000000s", 315_576_000_000, 0);
        ok("315576000000.999999999s", 315_576_000_000, 999_999_999);
    }

    #[test]
    fn duration_rejects_malformed_negative_and_huge() {
        let bad = |text: &str, why: &str| {
            let err = duration(text).expect_err(text);
            assert!(err.contains(why), "{text}: {err:?} should contain {why:?}");
        };
        bad("1", "missing the \"s\" suffix");
        bad("", "missing the \"s\" suffix");
        bad("1S", "missing the \"s\" suffix");
        bad("1ms", "expected decimal seconds");
        bad("s", "no digits");
        bad(".s", "no digits");
        bad("-s", "no digits");
        bad("1.0000000001s", "more than 9 fractional digits");
        bad("1.2.3s", "expected decimal seconds");
        bad("1e3s", "expected decimal seconds");
        bad(" 1s", "expected decimal seconds");
        bad("1 s", "expected decimal seconds");
        bad("--1s", "expected decimal seconds");
        bad("+-1s", "expected decimal seconds");
        bad("1,5s", "expected decimal seconds");
        bad("٣s", "expected decimal seconds");
        bad("-1s", "negative");
        bad("-0.5s", "negative");
        bad("-.000000001s", "negative");
        bad("315576000001s", "out of range");
        bad("99999999999999999999999999s", "out of range");
    }
}
