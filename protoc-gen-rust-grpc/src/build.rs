//! The build.rs entry point: parse `.proto` files with protobuf-parse's pure-Rust parser
//! (no protoc), rebuild their comments, and run the same [`crate::generate`] as the plugin.

use std::path::{Path, PathBuf};

use prost::Message as _;

use crate::{generate, Error, GeneratedFile, Options};

/// Starts a build.rs configuration with the default options (client, server and messages
/// on, runtime `::grpc_runtime`, output to `OUT_DIR`).
///
/// ```no_run
/// // build.rs
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     protoc_gen_rust_grpc::configure()
///         .client(true)
///         .server(true)
///         .compile(&["protos/helloworld.proto"], &["protos"])?;
///     Ok(())
/// }
/// ```
pub fn configure() -> Builder {
    Builder {
        options: Options::default(),
        out_dir: None,
        emit_rerun_if_changed: true,
    }
}

/// Options for generating code from a build script; see [`configure`].
///
/// The setters mirror the plugin options one to one (same [`Options`] struct).
#[derive(Clone, Debug)]
pub struct Builder {
    options: Options,
    out_dir: Option<PathBuf>,
    emit_rerun_if_changed: bool,
}

impl Builder {
    /// Emit client modules (plugin option `client=`).
    pub fn client(mut self, enabled: bool) -> Self {
        self.options.client = enabled;
        self
    }

    /// Emit server modules (plugin option `server=`).
    pub fn server(mut self, enabled: bool) -> Self {
        self.options.server = enabled;
        self
    }

    /// Emit prost messages and enums (plugin option `messages=`).
    pub fn messages(mut self, enabled: bool) -> Self {
        self.options.messages = enabled;
        self
    }

    /// Use `rust_path` for the proto package or type `proto_path` (plugin option
    /// `extern_path=.pkg=::rust::path`).
    pub fn extern_path(
        mut self,
        proto_path: impl Into<String>,
        rust_path: impl Into<String>,
    ) -> Self {
        self.options
            .extern_paths
            .push((proto_path.into(), rust_path.into()));
        self
    }

    /// Path of the runtime crate the generated code calls (plugin option `runtime_crate=`).
    pub fn runtime_crate(mut self, path: impl Into<String>) -> Self {
        self.options.runtime_crate = path.into();
        self
    }

    /// Also write an include file of this name (plugin option `include_file=`).
    pub fn include_file(mut self, name: impl Into<String>) -> Self {
        self.options.include_file = Some(name.into());
        self
    }

    /// Replaces all generator options at once (e.g. parsed with [`Options::parse`]).
    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Writes into `dir` instead of `OUT_DIR`.
    pub fn out_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.out_dir = Some(dir.into());
        self
    }

    /// Print `cargo:rerun-if-changed` for every parsed proto file (default true).
    pub fn emit_rerun_if_changed(mut self, enabled: bool) -> Self {
        self.emit_rerun_if_changed = enabled;
        self
    }

    /// Parses `protos` (searched in `includes`), generates code and writes it to the
    /// output directory. Returns the names of the written files.
    pub fn compile(
        &self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<Vec<PathBuf>, Error> {
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or_else(|| {
                    Error::new("OUT_DIR is not set; call .out_dir(..) outside build scripts")
                })?,
        };
        let (files, sources) = self.generate_with_sources(protos, includes)?;
        if self.emit_rerun_if_changed {
            for proto in protos {
                println!("cargo:rerun-if-changed={}", proto.as_ref().display());
            }
            for source in &sources {
                println!("cargo:rerun-if-changed={}", source.display());
            }
        }
        std::fs::create_dir_all(&out_dir)
            .map_err(|e| Error::new(format!("cannot create {}: {e}", out_dir.display())))?;
        let mut written = Vec::new();
        for file in files {
            let path = out_dir.join(&file.name);
            let unchanged = std::fs::read(&path).is_ok_and(|old| old == file.content.as_bytes());
            if !unchanged {
                std::fs::write(&path, file.content.as_bytes())
                    .map_err(|e| Error::new(format!("cannot write {}: {e}", path.display())))?;
            }
            written.push(path);
        }
        Ok(written)
    }

    /// Like [`compile`](Self::compile) but returns the files instead of writing them.
    pub fn generate(
        &self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<Vec<GeneratedFile>, Error> {
        self.generate_with_sources(protos, includes)
            .map(|(files, _)| files)
    }

    fn generate_with_sources(
        &self,
        protos: &[impl AsRef<Path>],
        includes: &[impl AsRef<Path>],
    ) -> Result<(Vec<GeneratedFile>, Vec<PathBuf>), Error> {
        self.options.validate()?;
        let (to_generate, descriptors, sources) = parse(protos, includes)?;
        let files = generate(&to_generate, &descriptors, &self.options)?;
        Ok((files, sources))
    }
}

/// Files to generate, all descriptors, and the proto files found on disk.
type Parsed = (
    Vec<String>,
    Vec<prost_types::FileDescriptorProto>,
    Vec<PathBuf>,
);

/// Parses with the pure parser; returns (files to generate, all descriptors with rebuilt
/// comments for the files to generate, source paths found on disk).
fn parse(protos: &[impl AsRef<Path>], includes: &[impl AsRef<Path>]) -> Result<Parsed, Error> {
    let parsed = protobuf_parse::Parser::new()
        .pure()
        .includes(includes.iter().map(|p| p.as_ref()))
        .inputs(protos.iter().map(|p| p.as_ref()))
        .parse_and_typecheck()
        .map_err(|e| Error::new(parse_error_message(&e)))?;
    let to_generate: Vec<String> = parsed
        .relative_paths
        .iter()
        .map(|p| p.to_string())
        .collect();
    let mut descriptors = Vec::new();
    let mut sources = Vec::new();
    for file in &parsed.file_descriptors {
        let bytes = protobuf::Message::write_to_bytes(file).map_err(|e| {
            Error::new(format!(
                "cannot serialize descriptor of {}: {e}",
                file.name()
            ))
        })?;
        let mut fd = prost_types::FileDescriptorProto::decode(bytes.as_slice()).map_err(|e| {
            Error::new(format!("cannot convert descriptor of {}: {e}", file.name()))
        })?;
        let on_disk = includes
            .iter()
            .map(|i| i.as_ref().join(fd.name()))
            .find(|p| p.is_file());
        if let Some(path) = on_disk {
            if to_generate.iter().any(|n| n == fd.name()) {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| Error::new(format!("cannot read {}: {e}", path.display())))?;
                let mut info = crate::comments::source_code_info(&text);
                crate::comments::complete(&mut info, &fd);
                fd.source_code_info = Some(info);
            }
            sources.push(path);
        }
        descriptors.push(fd);
    }
    Ok((to_generate, descriptors, sources))
}

/// Turns protobuf-parse's error chain ("using pure parser: error in `F`: at L:C: msg: ...")
/// into `F:L:C: msg`, falling back to the de-duplicated chain.
fn parse_error_message(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text == "using pure parser" {
            continue;
        }
        if parts.iter().any(|p| p.ends_with(&text) || *p == text) {
            continue;
        }
        parts.push(text);
    }
    let file = parts.iter().find_map(|p| {
        p.strip_prefix("error in `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(f, _)| f.to_string())
    });
    let position = parts.iter().find_map(|p| {
        let start = p.find("`: at ")?;
        let rest = &p[start + 6..];
        let (pos, msg) = rest.split_once(": ")?;
        let (line, col) = pos.split_once(':')?;
        line.parse::<u32>().ok()?;
        col.parse::<u32>().ok()?;
        Some((pos.to_string(), msg.to_string()))
    });
    match (file, position) {
        (Some(file), Some((pos, msg))) => format!("{file}:{pos}: {msg}"),
        _ => parts.join(": "),
    }
}
