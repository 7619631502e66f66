//! The service half of the generated code: a [`prost_build::ServiceGenerator`] that turns
//! each proto service into a client module and a server module calling only the items of
//! the runtime API contract (docs/api-contract.md).

use proc_macro2::{Ident, Span, TokenStream};
use prost_build::{Comments, Method, Service};
use quote::{format_ident, quote};

use heck_lite::{to_snake_case, to_upper_camel_case};

/// Emits client and server code for every service prost-build hands over.
pub(crate) struct GrpcServiceGenerator {
    pub(crate) client: bool,
    pub(crate) server: bool,
    /// Parsed path of the runtime crate, e.g. `::grpc_runtime`.
    pub(crate) runtime: TokenStream,
}

impl prost_build::ServiceGenerator for GrpcServiceGenerator {
    fn generate(&mut self, service: Service, buf: &mut String) {
        let mut tokens = TokenStream::new();
        if self.client {
            tokens.extend(self.client_module(&service));
        }
        if self.server {
            tokens.extend(self.server_module(&service));
        }
        buf.push_str(&tokens.to_string());
        buf.push('\n');
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

/// Doc attributes from proto comments: leading lines, then (separated by an empty line)
/// trailing lines, as prost-build does for messages.
fn doc_attrs(comments: &Comments) -> TokenStream {
    let mut lines: Vec<String> = comments.leading.clone();
    if !comments.leading.is_empty() && !comments.trailing.is_empty() {
        lines.push(String::new());
    }
    lines.extend(comments.trailing.iter().cloned());
    // Drop trailing empty lines so the docs end cleanly.
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    let lines = lines.into_iter().map(|line| sanitize_doc_line(&line));
    quote! { #( #[doc = #lines] )* }
}

/// An empty doc line between proto comments (if any) and the generated description.
fn separator(comments: &Comments) -> TokenStream {
    if comments.leading.iter().chain(&comments.trailing).any(|l| !l.trim().is_empty()) {
        quote! { #[doc = ""] }
    } else {
        TokenStream::new()
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

fn doc(text: &str) -> TokenStream {
    let text = format!(" {text}");
    quote! { #[doc = #text] }
}

/// A Rust type path for a message, as seen from inside the generated client/server module.
fn message_type(rust_path: &str) -> TokenStream {
    let path = if rust_path.starts_with("::") || rust_path.starts_with("crate::") || rust_path == "()" {
        rust_path.to_string()
    } else {
        format!("super::{rust_path}")
    };
    // prost-build produced the path, so it parses; fall back to a compile error otherwise.
    match syn::parse_str::<syn::Type>(&path) {
        Ok(ty) => quote! { #ty },
        Err(_) => {
            let msg = format!("protoc-gen-rust-grpc: cannot parse type path `{path}`");
            quote! { ::core::compile_error!(#msg) }
        }
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

fn deprecated_attr(deprecated: bool) -> TokenStream {
    if deprecated {
        quote! { #[deprecated] }
    } else {
        TokenStream::new()
    }
}

fn allow_deprecated(needed: bool) -> TokenStream {
    if needed {
        quote! { #[allow(deprecated)] }
    } else {
        TokenStream::new()
    }
}

fn kind_name(method: &Method) -> &'static str {
    match (method.client_streaming, method.server_streaming) {
        (false, false) => "Unary",
        (false, true) => "Server-streaming",
        (true, false) => "Client-streaming",
        (true, true) => "Bidirectional-streaming",
    }
}

impl GrpcServiceGenerator {
    fn client_module(&self, service: &Service) -> TokenStream {
        let rt = &self.runtime;
        let full_name = full_service_name(service);
        let base = to_upper_camel_case(&service.proto_name);
        let module = format_ident!("{}_client", to_snake_case(&service.proto_name));
        let client = format_ident!("{}Client", base);
        let service_deprecated = service.options.deprecated();
        let any_deprecated =
            service_deprecated || service.methods.iter().any(|m| m.options.deprecated());
        let module_doc = doc(&format!("Client for the `{full_name}` service."));
        let struct_doc = doc(&format!(
            "Typed client for `{full_name}`. Cloning is cheap; every call takes `&self`."
        ));
        let service_docs = doc_attrs(&service.comments);
        let service_sep = separator(&service.comments);
        let deprecated = deprecated_attr(service_deprecated);
        let allow = allow_deprecated(any_deprecated);

        let methods = service.methods.iter().map(|method| {
            let name = ident(&method.name);
            let docs = doc_attrs(&method.comments);
            let path = method_path(service, method);
            let kind_doc = doc(&format!("{} call to `{path}`.", kind_name(method)));
            let req = message_type(&method.input_type);
            let resp = message_type(&method.output_type);
            let deprecated = deprecated_attr(method.options.deprecated());
            let sep = separator(&method.comments);
            let (param, into, call, out) = match (method.client_streaming, method.server_streaming) {
                (false, false) => (
                    quote! { impl #rt::IntoRequest<#req> },
                    quote! { #rt::IntoRequest::into_request(request) },
                    quote! { unary },
                    quote! { #resp },
                ),
                (false, true) => (
                    quote! { impl #rt::IntoRequest<#req> },
                    quote! { #rt::IntoRequest::into_request(request) },
                    quote! { server_streaming },
                    quote! { #rt::Streaming<#resp> },
                ),
                (true, false) => (
                    quote! { impl #rt::IntoStreamingRequest<Message = #req> },
                    quote! { #rt::IntoStreamingRequest::into_streaming_request(request) },
                    quote! { client_streaming },
                    quote! { #resp },
                ),
                (true, true) => (
                    quote! { impl #rt::IntoStreamingRequest<Message = #req> },
                    quote! { #rt::IntoStreamingRequest::into_streaming_request(request) },
                    quote! { bidi_streaming },
                    quote! { #rt::Streaming<#resp> },
                ),
            };
            quote! {
                #docs
                #sep
                #kind_doc
                #deprecated
                pub async fn #name(
                    &self,
                    request: #param,
                ) -> Result<#rt::Response<#out>, #rt::Status> {
                    self.inner.#call(#path, #into).await
                }
            }
        });

        quote! {
            #module_doc
            pub mod #module {
                #service_docs
                #service_sep
                #struct_doc
                #deprecated
                #[derive(Clone, Debug)]
                pub struct #client {
                    inner: #rt::Channel,
                }

                #allow
                impl #client {
                    /// Creates a client that sends its calls on `channel`.
                    pub fn new(channel: #rt::Channel) -> Self {
                        Self { inner: channel }
                    }

                    /// The channel this client sends its calls on.
                    pub fn channel(&self) -> &#rt::Channel {
                        &self.inner
                    }

                    #(#methods)*
                }
            }
        }
    }

    fn server_module(&self, service: &Service) -> TokenStream {
        let rt = &self.runtime;
        let full_name = full_service_name(service);
        let base = to_upper_camel_case(&service.proto_name);
        let module = format_ident!("{}_server", to_snake_case(&service.proto_name));
        let trait_name = ident(&service.name);
        let server = format_ident!("{}Server", base);
        let service_deprecated = service.options.deprecated();
        let any_deprecated =
            service_deprecated || service.methods.iter().any(|m| m.options.deprecated());
        let module_doc = doc(&format!("Server side of the `{full_name}` service."));
        let trait_doc = doc(&format!(
            "Handlers for `{full_name}`. Every method has a default body answering UNIMPLEMENTED, so adding an rpc to the proto does not break existing servers."
        ));
        let service_docs = doc_attrs(&service.comments);
        let service_sep = separator(&service.comments);
        let deprecated = deprecated_attr(service_deprecated);
        let allow = allow_deprecated(any_deprecated);
        let service_name_doc = doc(&format!("Full name of the service: `{full_name}`."));
        let server_doc = doc(&format!(
            "Registers a [`{}`] implementation with the server under `{full_name}`.",
            service.name.trim_start_matches("r#")
        ));

        let handlers = service.methods.iter().map(|method| {
            let name = ident(&method.name);
            let docs = doc_attrs(&method.comments);
            let path = method_path(service, method);
            let sep = separator(&method.comments);
            let kind_doc = doc(&format!("{} handler for `{path}`.", kind_name(method)));
            let req = message_type(&method.input_type);
            let resp = message_type(&method.output_type);
            let deprecated = deprecated_attr(method.options.deprecated());
            let input = if method.client_streaming {
                quote! { #rt::Request<#rt::Streaming<#req>> }
            } else {
                quote! { #rt::Request<#req> }
            };
            let output = if method.server_streaming {
                quote! { #rt::Response<#rt::BoxStream<#resp>> }
            } else {
                quote! { #rt::Response<#resp> }
            };
            let message = format!("method {} not implemented", method.proto_name);
            quote! {
                #docs
                #sep
                #kind_doc
                #deprecated
                fn #name(
                    &self,
                    request: #input,
                ) -> impl ::core::future::Future<Output = Result<#output, #rt::Status>> + Send {
                    let _ = request;
                    async { Err(#rt::Status::unimplemented(#message)) }
                }
            }
        });

        let descriptors = service.methods.iter().map(|method| {
            let name = &method.proto_name;
            let path = method_path(service, method);
            let cs = method.client_streaming;
            let ss = method.server_streaming;
            quote! {
                #rt::MethodDescriptor {
                    name: #name,
                    full_path: #path,
                    client_streaming: #cs,
                    server_streaming: #ss,
                }
            }
        });

        let call_body = if service.methods.is_empty() {
            quote! {
                let _ = method;
                call.unimplemented()
            }
        } else {
            let arms = service.methods.iter().map(|method| {
                let name = ident(&method.name);
                let proto_name = &method.proto_name;
                let adapter = match (method.client_streaming, method.server_streaming) {
                    (false, false) => quote! { unary },
                    (false, true) => quote! { server_streaming },
                    (true, false) => quote! { client_streaming },
                    (true, true) => quote! { bidi_streaming },
                };
                quote! {
                    #proto_name => call.#adapter(move |request| async move {
                        inner.#name(request).await
                    }),
                }
            });
            quote! {
                let inner = ::std::sync::Arc::clone(&self.inner);
                match method {
                    #(#arms)*
                    _ => call.unimplemented(),
                }
            }
        };

        quote! {
            #module_doc
            pub mod #module {
                #service_docs
                #service_sep
                #trait_doc
                #deprecated
                pub trait #trait_name: Send + Sync + 'static {
                    #(#handlers)*
                }

                #service_name_doc
                pub const SERVICE_NAME: &str = #full_name;

                /// Descriptors of the service's methods, in declaration order.
                pub const METHODS: &[#rt::MethodDescriptor] = &[#(#descriptors),*];

                #server_doc
                #[derive(Debug)]
                pub struct #server<T> {
                    inner: ::std::sync::Arc<T>,
                }

                #allow
                impl<T: #trait_name> #server<T> {
                    /// Wraps a service implementation.
                    pub fn new(inner: T) -> Self {
                        Self::from_arc(::std::sync::Arc::new(inner))
                    }

                    /// Wraps a service implementation that is already shared.
                    pub fn from_arc(inner: ::std::sync::Arc<T>) -> Self {
                        Self { inner }
                    }
                }

                impl<T> Clone for #server<T> {
                    fn clone(&self) -> Self {
                        Self { inner: ::std::sync::Arc::clone(&self.inner) }
                    }
                }

                #allow
                impl<T: #trait_name> #rt::server::Service for #server<T> {
                    fn name(&self) -> &'static str {
                        SERVICE_NAME
                    }

                    fn methods(&self) -> &'static [#rt::MethodDescriptor] {
                        METHODS
                    }

                    fn call(
                        &self,
                        method: &str,
                        call: #rt::server::ServerCall,
                    ) -> #rt::BoxFuture<()> {
                        #call_body
                    }
                }
            }
        }
    }
}
