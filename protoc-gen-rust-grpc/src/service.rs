//! The service half of the generated code: a [`prost_build::ServiceGenerator`] that turns
//! each proto service into a client module and a server module calling only the items of
//! the runtime API contract (docs/api-contract.md).

use proc_macro2::{Ident, Span};
use prost_build::{Comments, Method, Service};

use crate::format::{fn_signature, spaces, Ty, MAX_WIDTH, SERVICE_MARKER};

use heck_lite::{to_snake_case, to_upper_camel_case};

/// Emits client and server code for every service prost-build hands over.
pub(crate) struct GrpcServiceGenerator {
    pub(crate) client: bool,
    pub(crate) server: bool,
    /// Path of the runtime crate, e.g. `::grpc_runtime` (already checked to parse).
    pub(crate) runtime: String,
    /// Fully qualified names (`.pkg.Msg`) of deprecated messages and enums.
    pub(crate) deprecated_types: std::collections::HashSet<String>,
}

impl prost_build::ServiceGenerator for GrpcServiceGenerator {
    fn generate(&mut self, service: Service, buf: &mut String) {
        // The service code is laid out here already (rustfmt's style); the marker carries it
        // through prost-build and syn untouched to `format::format_file`.
        let mut text = String::new();
        if self.client {
            text.push_str(&self.client_module(&service));
        }
        if self.server {
            text.push_str(&self.server_module(&service));
        }
        buf.push_str(&format!("{SERVICE_MARKER}!({});\n", lit(&text)));
    }
}

/// A Rust type path for a message, as seen from inside the generated client/server module.
fn message_type(rust_path: &str) -> Ty {
    if rust_path.starts_with("::") || rust_path.starts_with("crate::") || rust_path == "()" {
        Ty::leaf(rust_path)
    } else {
        Ty::leaf(format!("super::{rust_path}"))
    }
}

/// Small helpers mirroring prost-build's identifier rules (its own are private).
pub(crate) mod heck_lite {
    /// `SayHello` / `sayHello` / `SAY_HELLO` -> `say_hello` (no keyword escaping).
    pub(crate) fn to_snake_case(s: &str) -> String {
        use heck::ToSnakeCase;
        s.to_snake_case()
    }

    /// `say_hello` -> `SayHello` (no keyword escaping).
    pub(crate) fn to_upper_camel_case(s: &str) -> String {
        use heck::ToUpperCamelCase;
        s.to_upper_camel_case()
    }
}

/// Makes an identifier from a name prost-build already sanitized (`r#type`, `self_`).
pub(crate) fn ident(name: &str) -> Ident {
    match name.strip_prefix("r#") {
        Some(raw) => Ident::new_raw(raw, Span::call_site()),
        None => Ident::new(name, Span::call_site()),
    }
}

fn sanitize_doc_line(line: &str) -> String {
    let line = line.trim_end();
    if line.is_empty() || line.starts_with(' ') {
        line.to_string()
    } else {
        format!(" {line}")
    }
}

fn full_service_name(service: &Service) -> String {
    if service.package.is_empty() {
        service.proto_name.clone()
    } else {
        format!("{}.{}", service.package, service.proto_name)
    }
}

fn method_path(service: &Service, method: &Method) -> String {
    format!("/{}/{}", full_service_name(service), method.proto_name)
}

fn kind_name(method: &Method) -> &'static str {
    match (method.client_streaming, method.server_streaming) {
        (false, false) => "Unary",
        (false, true) => "Server-streaming",
        (true, false) => "Client-streaming",
        (true, true) => "Bidirectional-streaming",
    }
}

/// The runtime's items as generated code names them: through a `use <runtime> as rt;`
/// (or `use <runtime>;` when the path already ends in `rt`).
fn runtime_use(runtime: &str) -> String {
    if runtime.rsplit("::").next() == Some("rt") && runtime != "rt" {
        format!("use {runtime};")
    } else {
        format!("use {runtime} as rt;")
    }
}

/// Doc comment lines (`/// ...`) for the proto comments, then (after an empty doc line, when
/// there were comments) the generated description.
fn doc_lines(comments: &Comments, description: &str) -> Vec<String> {
    let mut lines: Vec<String> = comments.leading.clone();
    if !comments.leading.is_empty() && !comments.trailing.is_empty() {
        lines.push(String::new());
    }
    lines.extend(comments.trailing.iter().cloned());
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let mut out: Vec<String> = lines
        .iter()
        .map(|l| format!("///{}", sanitize_doc_line(l)))
        .collect();
    if out.iter().any(|l| l.len() > 3) {
        out.push("///".to_string());
    } else {
        out.clear();
    }
    out.push(format!("/// {description}"));
    out
}

/// A string literal of `s` (with escapes, as `quote!` would write it).
fn lit(s: &str) -> String {
    proc_macro2::Literal::string(s).to_string()
}

/// `let name = "value";`, the literal on the next line when the whole is too long.
fn let_literal(w: &mut Writer, indent: usize, name: &str, value: &str) {
    let one = format!("let {name} = {};", lit(value));
    if indent + one.len() > MAX_WIDTH {
        w.line(indent, &format!("let {name} ="));
        w.line(indent + 4, &format!("{};", lit(value)));
    } else {
        w.line(indent, &one);
    }
}

/// `impl<..> Trait for Type {` (or `impl<..> Type {`) at indentation 4, split over three lines
/// when too long. Measured: rustfmt keeps the header on one line up to 103 columns.
fn impl_header(w: &mut Writer, head: &str, rest: &str) {
    let one = format!("{head} {rest} {{");
    if 4 + one.len() <= MAX_WIDTH + 3 {
        w.line(4, &one);
    } else {
        w.line(4, head);
        w.line(8, rest);
        w.line(4, "{");
    }
}

/// `name: "value",` in a struct literal, the literal on the next line when the whole is too long.
fn field_literal(w: &mut Writer, indent: usize, name: &str, value: &str) {
    let one = format!("{name}: {},", lit(value));
    if indent + one.len() > MAX_WIDTH {
        w.line(indent, &format!("{name}:"));
        w.line(indent + 4, &format!("{},", lit(value)));
    } else {
        w.line(indent, &one);
    }
}

/// Lines of text at given indentations.
#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn line(&mut self, indent: usize, text: &str) {
        if !text.is_empty() {
            self.out.push_str(&spaces(indent));
            self.out.push_str(text);
        }
        self.out.push('\n');
    }

    fn blank(&mut self) {
        self.out.push('\n');
    }

    fn lines(&mut self, indent: usize, lines: &[String]) {
        for l in lines {
            self.line(indent, l);
        }
    }

    /// Text that already carries indentation after its first line.
    fn raw(&mut self, text: &str) {
        self.out.push_str(text);
    }
}

impl GrpcServiceGenerator {
    /// Whether a method of `service` takes or returns a deprecated message type.
    fn uses_deprecated_types(&self, service: &Service) -> bool {
        service.methods.iter().any(|m| {
            self.deprecated_types.contains(&m.input_proto_type)
                || self.deprecated_types.contains(&m.output_proto_type)
        })
    }

    /// The client module, laid out as rustfmt would.
    fn client_module(&self, service: &Service) -> String {
        let full_name = full_service_name(service);
        let base = to_upper_camel_case(&service.proto_name);
        let module = format!("{}_client", to_snake_case(&service.proto_name));
        let client = format!("{base}Client");
        let service_deprecated = service.options.deprecated();
        let any_deprecated =
            service_deprecated || service.methods.iter().any(|m| m.options.deprecated());

        let mut w = Writer::default();
        w.line(0, &format!("/// Client for the `{full_name}` service."));
        if self.uses_deprecated_types(service) {
            w.line(0, "#[allow(deprecated)]");
        }
        w.line(0, &format!("pub mod {module} {{"));
        w.line(4, &runtime_use(&self.runtime));
        w.blank();
        w.lines(
            4,
            &doc_lines(
                &service.comments,
                &format!(
                    "Typed client for `{full_name}`. Cloning is cheap; every call takes `&self`."
                ),
            ),
        );
        if service_deprecated {
            w.line(4, "#[deprecated]");
        }
        w.line(4, "#[derive(Clone, Debug)]");
        w.line(4, &format!("pub struct {client}<T = rt::Channel> {{"));
        w.line(8, "inner: T,");
        w.line(4, "}");
        w.blank();
        if any_deprecated {
            w.line(4, "#[allow(deprecated)]");
        }
        w.line(4, &format!("impl {client}<rt::Channel> {{"));
        w.line(
            8,
            "/// Connects a new channel to `target` (e.g. `http://localhost:50051`; every target",
        );
        w.line(
            8,
            "/// form is listed at `Channel::builder`) and returns a client on it. For channel",
        );
        w.line(
            8,
            "/// options (TLS, timeouts, load balancing), build the channel and use `new`.",
        );
        w.line(8, "pub async fn connect(");
        w.line(
            12,
            "target: impl ::std::convert::Into<::std::string::String>,",
        );
        w.line(
            8,
            ") -> ::std::result::Result<Self, rt::transport::TransportError> {",
        );
        w.line(
            12,
            "::std::result::Result::Ok(Self::new(rt::Channel::builder(target).connect().await?))",
        );
        w.line(8, "}");
        w.blank();
        w.line(8, "/// The channel this client sends its calls on.");
        w.line(8, "pub fn channel(&self) -> &rt::Channel {");
        w.line(12, "&self.inner");
        w.line(8, "}");
        w.line(4, "}");
        w.blank();
        if any_deprecated {
            w.line(4, "#[allow(deprecated)]");
        }
        w.line(4, &format!("impl<T: rt::GrpcService> {client}<T> {{"));
        w.line(
            8,
            "/// Creates a client that sends its calls on `inner`: a `Channel`, or (with the",
        );
        w.line(
            8,
            "/// runtime's `tower` feature) a tower service stack around one.",
        );
        w.line(8, "pub fn new(inner: T) -> Self {");
        w.line(12, "Self { inner }");
        w.line(8, "}");
        w.blank();
        w.line(
            8,
            "/// The channel or service this client sends its calls on.",
        );
        w.line(8, "pub fn get_ref(&self) -> &T {");
        w.line(12, "&self.inner");
        w.line(8, "}");
        for method in &service.methods {
            let path = method_path(service, method);
            let req = message_type(&method.input_type);
            let resp = message_type(&method.output_type);
            let (param, into, call, out) = match (method.client_streaming, method.server_streaming)
            {
                (false, false) => (
                    Ty::generic("impl rt::IntoRequest", vec![req]),
                    "rt::IntoRequest::into_request(request)",
                    "unary",
                    resp,
                ),
                (false, true) => (
                    Ty::generic("impl rt::IntoRequest", vec![req]),
                    "rt::IntoRequest::into_request(request)",
                    "server_streaming",
                    Ty::generic("rt::Streaming", vec![resp]),
                ),
                (true, false) => (
                    Ty::generic(
                        "impl rt::IntoStreamingRequest",
                        vec![req.prefixed("Message = ")],
                    ),
                    "rt::IntoStreamingRequest::into_streaming_request(request)",
                    "client_streaming",
                    resp,
                ),
                (true, true) => (
                    Ty::generic(
                        "impl rt::IntoStreamingRequest",
                        vec![req.prefixed("Message = ")],
                    ),
                    "rt::IntoStreamingRequest::into_streaming_request(request)",
                    "bidi_streaming",
                    Ty::generic("rt::Streaming", vec![resp]),
                ),
            };
            let ret = Ty::generic(
                "Result",
                vec![
                    Ty::generic("rt::Response", vec![out]),
                    Ty::leaf("rt::Status"),
                ],
            );
            w.blank();
            w.lines(
                8,
                &doc_lines(
                    &method.comments,
                    &format!("{} call to `{path}`.", kind_name(method)),
                ),
            );
            if method.options.deprecated() {
                w.line(8, "#[deprecated]");
            }
            let head = format!("pub async fn {}", method.name);
            w.raw(&fn_signature(
                8,
                &head,
                &[
                    ("&self".to_string(), Ty::leaf("")),
                    ("request".to_string(), param),
                ],
                &ret,
            ));
            let_literal(&mut w, 12, "path", &path);
            w.line(12, &format!("let request = {into};"));
            w.line(
                12,
                &format!("rt::GrpcService::{call}(&self.inner, path, request).await"),
            );
            w.line(8, "}");
        }
        w.line(4, "}");
        w.line(0, "}");
        w.out
    }

    /// The server module, laid out as rustfmt would.
    fn server_module(&self, service: &Service) -> String {
        let full_name = full_service_name(service);
        let base = to_upper_camel_case(&service.proto_name);
        let module = format!("{}_server", to_snake_case(&service.proto_name));
        let trait_name = service.name.clone();
        let server = format!("{base}Server");
        let service_deprecated = service.options.deprecated();
        let any_deprecated =
            service_deprecated || service.methods.iter().any(|m| m.options.deprecated());
        // The trait may itself be called `Future`; then the import would clash.
        let future = if trait_name == "Future" {
            "::core::future::Future"
        } else {
            "Future"
        };

        let mut w = Writer::default();
        w.line(0, &format!("/// Server side of the `{full_name}` service."));
        if self.uses_deprecated_types(service) {
            w.line(0, "#[allow(deprecated)]");
        }
        w.line(0, &format!("pub mod {module} {{"));
        if !service.methods.is_empty() && future == "Future" {
            w.line(4, "use ::core::future::Future;");
            w.blank();
        }
        w.line(4, &runtime_use(&self.runtime));
        w.blank();
        w.lines(
            4,
            &doc_lines(
                &service.comments,
                &format!(
                    "Handlers for `{full_name}`. Every method has a default body answering UNIMPLEMENTED, so adding an rpc to the proto does not break existing servers."
                ),
            ),
        );
        if service_deprecated {
            w.line(4, "#[deprecated]");
        }
        if service.methods.is_empty() {
            w.line(
                4,
                &format!("pub trait {trait_name}: Send + Sync + 'static {{}}"),
            );
        } else {
            w.line(
                4,
                &format!("pub trait {trait_name}: Send + Sync + 'static {{"),
            );
            for (i, method) in service.methods.iter().enumerate() {
                let path = method_path(service, method);
                let req = message_type(&method.input_type);
                let resp = message_type(&method.output_type);
                let input = if method.client_streaming {
                    Ty::generic("rt::Request", vec![Ty::generic("rt::Streaming", vec![req])])
                } else {
                    Ty::generic("rt::Request", vec![req])
                };
                let output = if method.server_streaming {
                    Ty::generic(
                        "rt::Response",
                        vec![Ty::generic("rt::BoxStream", vec![resp])],
                    )
                } else {
                    Ty::generic("rt::Response", vec![resp])
                };
                let ret = Ty::generic(
                    format!("impl {future}"),
                    vec![Ty::generic("Result", vec![output, Ty::leaf("rt::Status")])
                        .prefixed("Output = ")],
                )
                .suffixed(" + Send");
                if i > 0 {
                    w.blank();
                }
                w.lines(
                    8,
                    &doc_lines(
                        &method.comments,
                        &format!("{} handler for `{path}`.", kind_name(method)),
                    ),
                );
                if method.options.deprecated() {
                    w.line(8, "#[deprecated]");
                }
                let head = format!("fn {}", method.name);
                w.raw(&fn_signature(
                    8,
                    &head,
                    &[
                        ("&self".to_string(), Ty::leaf("")),
                        ("request".to_string(), input),
                    ],
                    &ret,
                ));
                w.line(12, "let _ = request;");
                w.line(12, "async {");
                let_literal(
                    &mut w,
                    16,
                    "message",
                    &format!("method {} not implemented", method.proto_name),
                );
                w.line(16, "Err(rt::Status::unimplemented(message))");
                w.line(12, "}");
                w.line(8, "}");
            }
            w.line(4, "}");
        }
        w.blank();
        w.line(4, &format!("/// Full name of the service: `{full_name}`."));
        let const_line = format!("pub const SERVICE_NAME: &str = {};", lit(&full_name));
        if 4 + const_line.len() <= MAX_WIDTH {
            w.line(4, &const_line);
        } else {
            w.line(4, "pub const SERVICE_NAME: &str =");
            w.line(8, &format!("{};", lit(&full_name)));
        }
        w.blank();
        w.line(
            4,
            "/// Descriptors of the service's methods, in declaration order.",
        );
        let descriptor =
            |w: &mut Writer, indent: usize, method: &Method, open: &str, close: &str| {
                w.line(indent, &format!("{open}rt::MethodDescriptor {{"));
                field_literal(w, indent + 4, "name", &method.proto_name);
                field_literal(w, indent + 4, "full_path", &method_path(service, method));
                w.line(
                    indent + 4,
                    &format!("client_streaming: {},", method.client_streaming),
                );
                w.line(
                    indent + 4,
                    &format!("server_streaming: {},", method.server_streaming),
                );
                w.line(
                    if open.is_empty() { indent } else { 0 },
                    &format!("{}}}{close}", if open.is_empty() { "" } else { "    " }),
                );
            };
        match service.methods.as_slice() {
            [] => w.line(4, "pub const METHODS: &[rt::MethodDescriptor] = &[];"),
            [method] => descriptor(
                &mut w,
                4,
                method,
                "pub const METHODS: &[rt::MethodDescriptor] = &[",
                "];",
            ),
            methods => {
                w.line(4, "pub const METHODS: &[rt::MethodDescriptor] = &[");
                for method in methods {
                    descriptor(&mut w, 8, method, "", ",");
                }
                w.line(4, "];");
            }
        }
        w.blank();
        w.line(
            4,
            &format!(
                "/// Registers a [`{}`] implementation with the server under `{full_name}`.",
                trait_name.trim_start_matches("r#")
            ),
        );
        w.line(4, "#[derive(Debug)]");
        w.line(4, &format!("pub struct {server}<T> {{"));
        w.line(8, "inner: ::std::sync::Arc<T>,");
        w.line(4, "}");
        w.blank();
        if any_deprecated {
            w.line(4, "#[allow(deprecated)]");
        }
        impl_header(
            &mut w,
            &format!("impl<T: {trait_name}>"),
            &format!("{server}<T>"),
        );
        w.line(8, "/// Wraps a service implementation.");
        w.line(8, "pub fn new(inner: T) -> Self {");
        w.line(12, "Self::from_arc(::std::sync::Arc::new(inner))");
        w.line(8, "}");
        w.blank();
        w.line(
            8,
            "/// Wraps a service implementation that is already shared.",
        );
        w.line(8, "pub fn from_arc(inner: ::std::sync::Arc<T>) -> Self {");
        w.line(12, "Self { inner }");
        w.line(8, "}");
        w.line(4, "}");
        w.blank();
        w.line(4, &format!("impl<T> Clone for {server}<T> {{"));
        w.line(8, "fn clone(&self) -> Self {");
        w.line(12, "let inner = ::std::sync::Arc::clone(&self.inner);");
        w.line(12, "Self { inner }");
        w.line(8, "}");
        w.line(4, "}");
        w.blank();
        if any_deprecated {
            w.line(4, "#[allow(deprecated)]");
        }
        impl_header(
            &mut w,
            &format!("impl<T: {trait_name}> rt::server::Service"),
            &format!("for {server}<T>"),
        );
        w.line(8, "fn name(&self) -> &'static str {");
        w.line(12, "SERVICE_NAME");
        w.line(8, "}");
        w.blank();
        w.line(8, "fn methods(&self) -> &'static [rt::MethodDescriptor] {");
        w.line(12, "METHODS");
        w.line(8, "}");
        w.blank();
        w.line(
            8,
            "fn file_descriptor_set(&self) -> ::std::option::Option<&'static [u8]> {",
        );
        w.line(
            12,
            "::std::option::Option::Some(super::FILE_DESCRIPTOR_SET)",
        );
        w.line(8, "}");
        w.blank();
        w.line(
            8,
            "fn call(&self, method: &str, call: rt::server::ServerCall) -> rt::BoxFuture<()> {",
        );
        if service.methods.is_empty() {
            w.line(12, "let _ = method;");
            w.line(12, "call.unimplemented()");
        } else {
            w.line(12, "let inner = ::std::sync::Arc::clone(&self.inner);");
            w.line(12, "match method {");
            for method in &service.methods {
                let adapter = match (method.client_streaming, method.server_streaming) {
                    (false, false) => "unary",
                    (false, true) => "server_streaming",
                    (true, false) => "client_streaming",
                    (true, true) => "bidi_streaming",
                };
                let open = format!("call.{adapter}(move |request| async move {{");
                let arm = format!("{} => ", lit(&method.proto_name));
                // The handler's future must own the service: it moves the Arc in, then
                // borrows it for the call.
                let body = |w: &mut Writer, indent: usize| {
                    let call = format!("let future = T::{}(&inner, request);", method.name);
                    let rhs = format!("T::{}(&inner, request);", method.name);
                    if indent + call.len() <= MAX_WIDTH {
                        w.line(indent, &call);
                    } else if indent + 4 + rhs.len() <= MAX_WIDTH {
                        w.line(indent, "let future =");
                        w.line(indent + 4, &rhs);
                    } else {
                        w.line(indent, &format!("let future = T::{}(", method.name));
                        w.line(indent + 4, "&inner, request,");
                        w.line(indent, ");");
                    }
                    w.line(indent, "future.await");
                };
                // Measured: rustfmt keeps this arm head on one line up to 98 columns.
                if 16 + arm.len() + open.len() + 2 <= MAX_WIDTH {
                    w.line(16, &format!("{arm}{open}"));
                    body(&mut w, 20);
                    w.line(16, "}),");
                } else {
                    w.line(16, &format!("{arm}{{"));
                    w.line(20, &open);
                    body(&mut w, 24);
                    w.line(20, "})");
                    w.line(16, "}");
                }
            }
            w.line(16, "_ => call.unimplemented(),");
            w.line(12, "}");
        }
        w.line(8, "}");
        w.line(4, "}");
        w.line(0, "}");
        w.out
    }
}
