//! Generator options: one struct shared by the protoc plugin (`--rust-grpc_opt=...`) and
//! the build.rs API ([`crate::Builder`]), and the parser of the plugin parameter string.

use crate::Error;

/// Default path of the runtime crate that generated code calls.
pub const DEFAULT_RUNTIME_CRATE: &str = "::grpc_runtime";

/// Everything that changes what the generator emits.
///
/// The plugin fills it from the `parameter` of the `CodeGeneratorRequest`
/// ([`Options::parse`]); build scripts fill it through [`crate::Builder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Emit a client module per service (`client=true|false`, default true).
    pub client: bool,
    /// Emit a server module per service (`server=true|false`, default true).
    pub server: bool,
    /// Emit the prost messages and enums (`messages=true|false`, default true). When false,
    /// only service code is emitted and it names message types by the same relative paths
    /// prost-build would use (include the file next to prost-build's output), unless an
    /// `extern_path` points them elsewhere.
    pub messages: bool,
    /// `(proto path, rust path)` pairs such as `(".google.rpc", "::my_crate::rpc")`
    /// (`extern_path=.pkg=::rust::path`, repeatable), as prost-build's `extern_path`.
    pub extern_paths: Vec<(String, String)>,
    /// Path of the runtime crate (`runtime_crate=::grpc_runtime`).
    pub runtime_crate: String,
    /// Name of an extra file that ties all generated packages into a nested module tree
    /// (`include_file=mod.rs`); none by default.
    pub include_file: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            client: true,
            server: true,
            messages: true,
            extern_paths: Vec::new(),
            runtime_crate: DEFAULT_RUNTIME_CRATE.to_string(),
            include_file: None,
        }
    }
}

impl Options {
    /// Parses the plugin parameter: comma-separated `key=value` items, where `\,` stands for
    /// a literal comma inside a value. Unknown keys and malformed items are errors that name
    /// the offending option.
    pub fn parse(parameter: &str) -> Result<Options, Error> {
        let mut options = Options::default();
        for item in split_escaped(parameter) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let Some((key, value)) = item.split_once('=') else {
                return Err(Error::new(format!(
                    "malformed option `{item}`: expected `key=value`"
                )));
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "client" => options.client = parse_bool(key, value)?,
                "server" => options.server = parse_bool(key, value)?,
                "messages" => options.messages = parse_bool(key, value)?,
                "extern_path" => {
                    let Some((proto, rust)) = value.split_once('=') else {
                        return Err(Error::new(format!(
                            "malformed option `extern_path={value}`: expected `extern_path=.proto.path=::rust::path`"
                        )));
                    };
                    options.add_extern_path(proto, rust)?;
                }
                "runtime_crate" => {
                    validate_rust_path("runtime_crate", value)?;
                    options.runtime_crate = value.to_string();
                }
                "include_file" => {
                    validate_file_name("include_file", value)?;
                    options.include_file = Some(value.to_string());
                }
                _ => {
                    return Err(Error::new(format!(
                        "unknown option `{key}` (known: client, server, messages, extern_path, runtime_crate, include_file)"
                    )))
                }
            }
        }
        Ok(options)
    }

    /// Adds an extern path after checking both halves.
    pub(crate) fn add_extern_path(&mut self, proto: &str, rust: &str) -> Result<(), Error> {
        let proto = proto.trim();
        let rust = rust.trim();
        if !proto.starts_with('.')
            || proto
                .split('.')
                .skip(1)
                .any(|part| part.is_empty() || !is_proto_ident(part))
        {
            return Err(Error::new(format!(
                "malformed option `extern_path={proto}={rust}`: the proto path must be fully qualified, like `.my.package` or `.my.package.Message`"
            )));
        }
        validate_rust_path("extern_path", rust)?;
        self.extern_paths
            .push((proto.to_string(), rust.to_string()));
        Ok(())
    }

    /// Checks the options a builder may have set directly.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        validate_rust_path("runtime_crate", &self.runtime_crate)?;
        if let Some(name) = &self.include_file {
            validate_file_name("include_file", name)?;
        }
        let mut copy = Options::default();
        for (proto, rust) in &self.extern_paths {
            copy.add_extern_path(proto, rust)?;
        }
        Ok(())
    }
}

fn split_escaped(parameter: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut chars = parameter.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                current.push(',');
                chars.next();
            }
            ',' => items.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    items.push(current);
    items
}

fn parse_bool(key: &str, value: &str) -> Result<bool, Error> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::new(format!(
            "malformed option `{key}={value}`: expected `true` or `false`"
        ))),
    }
}

fn is_proto_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn validate_rust_path(key: &str, value: &str) -> Result<(), Error> {
    if syn::parse_str::<syn::Path>(value).is_err() {
        return Err(Error::new(format!(
            "malformed option `{key}={value}`: `{value}` is not a Rust path"
        )));
    }
    Ok(())
}

fn validate_file_name(key: &str, value: &str) -> Result<(), Error> {
    if value.is_empty()
        || value.contains('/')
        || value.contains('\\')
        || value == "."
        || value == ".."
    {
        return Err(Error::new(format!(
            "malformed option `{key}={value}`: expected a plain file name such as `mod.rs`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_options() {
        let o = Options::parse(
            "client=false,server=true,messages=false,extern_path=.google.rpc=::rpc,extern_path=.a.B=crate::b::B,runtime_crate=::rt,include_file=mod.rs",
        )
        .unwrap();
        assert!(!o.client && o.server && !o.messages);
        assert_eq!(
            o.extern_paths,
            vec![
                (".google.rpc".to_string(), "::rpc".to_string()),
                (".a.B".to_string(), "crate::b::B".to_string())
            ]
        );
        assert_eq!(o.runtime_crate, "::rt");
        assert_eq!(o.include_file.as_deref(), Some("mod.rs"));
        assert_eq!(Options::parse("").unwrap(), Options::default());
    }

    #[test]
    fn escaped_comma() {
        assert_eq!(split_escaped(r"a=1\,2,b=3"), vec!["a=1,2", "b=3"]);
    }

    #[test]
    fn errors_name_the_option() {
        let e = Options::parse("client=true,frobnicate=1").unwrap_err();
        assert!(e.to_string().contains("unknown option `frobnicate`"), "{e}");
        let e = Options::parse("client").unwrap_err();
        assert!(e.to_string().contains("malformed option `client`"), "{e}");
        let e = Options::parse("server=yes").unwrap_err();
        assert!(e.to_string().contains("`server=yes`"), "{e}");
        let e = Options::parse("extern_path=pkg=::x").unwrap_err();
        assert!(e.to_string().contains("extern_path"), "{e}");
        let e = Options::parse("runtime_crate=not a path").unwrap_err();
        assert!(e.to_string().contains("runtime_crate"), "{e}");
    }
}
