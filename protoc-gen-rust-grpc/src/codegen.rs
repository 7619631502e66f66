//! The one code generation pipeline both entry points (protoc plugin and build.rs) funnel
//! into: normalize descriptors, check them, run prost-build with our service generator,
//! append the per-package `FILE_DESCRIPTOR_SET`, format, and emit the optional include file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use prost::Message as _;
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use quote::quote;

use crate::options::Options;
use crate::service::{heck_lite::to_snake_case, GrpcServiceGenerator};
use crate::Error;

/// File name used for the output of proto files without a `package` statement.
pub const NO_PACKAGE_FILE_NAME: &str = "_.rs";

/// One generated output file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedFile {
    /// File name relative to the output directory, e.g. `helloworld.rs`.
    pub name: String,
    /// Complete file contents (formatted Rust).
    pub content: String,
}

/// Name of the output file for a proto package: `helloworld` -> `helloworld.rs`, and
/// [`NO_PACKAGE_FILE_NAME`] (`_.rs`) for files without a package.
pub fn output_file_name(package: &str) -> String {
    if package.is_empty() {
        NO_PACKAGE_FILE_NAME.to_string()
    } else {
        format!("{package}.rs")
    }
}

/// Generates Rust code for `files_to_generate` (proto file names as they appear in
/// `FileDescriptorProto::name`), given every file they (transitively) import in `files`.
///
/// Returns one file per proto package (sorted by name), plus the include file when
/// [`Options::include_file`] is set. Problems with the protos are returned as errors;
/// the function never panics on odd input.
pub fn generate(
    files_to_generate: &[String],
    files: &[FileDescriptorProto],
    options: &Options,
) -> Result<Vec<GeneratedFile>, Error> {
    // Descriptors from a hand-made request can be odd in ways protoc never produces;
    // whatever slips past the checks must end as an error, not a crash.
    catch_unwind(AssertUnwindSafe(|| {
        generate_checked(files_to_generate, files, options)
    }))
    .unwrap_or_else(|panic| {
        Err(Error::new(format!(
            "internal error while generating code: {}",
            panic_text(&*panic)
        )))
    })
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn generate_checked(
    files_to_generate: &[String],
    files: &[FileDescriptorProto],
    options: &Options,
) -> Result<Vec<GeneratedFile>, Error> {
    options.validate()?;
    let runtime = syn::parse_str::<syn::Path>(&options.runtime_crate)
        .ok()
        .filter(|p| p.segments.iter().all(|s| s.arguments.is_none()))
        .map(|p| {
            let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
            format!(
                "{}{}",
                if p.leading_colon.is_some() { "::" } else { "" },
                segments.join("::")
            )
        })
        .ok_or_else(|| {
            Error::new(format!(
                "malformed option `runtime_crate={}`",
                options.runtime_crate
            ))
        })?;

    let files: Vec<FileDescriptorProto> = files.iter().cloned().map(normalize_file).collect();
    let by_name: HashMap<&str, &FileDescriptorProto> =
        files.iter().map(|f| (f.name(), f)).collect();

    // Group the files to generate by package, keeping the requested order inside a package.
    let mut packages: BTreeMap<String, Vec<&FileDescriptorProto>> = BTreeMap::new();
    let mut seen = HashSet::new();
    let known_types = known_types(&files);
    for name in files_to_generate {
        let Some(file) = by_name.get(name.as_str()) else {
            return Err(Error::new(format!(
                "file to generate `{name}` is missing from the descriptors"
            )));
        };
        if !seen.insert(name.as_str()) {
            continue;
        }
        check_types(file, &known_types)?;
        packages
            .entry(file.package().to_string())
            .or_default()
            .push(file);
    }

    for package_files in packages.values() {
        check_names(package_files, options)?;
    }

    // Run prost-build once over all files: prost-build needs every message a generated
    // message refers to (it checks e.g. whether a field type can derive Copy). Files that
    // are only imported get a module of their own whose output is dropped.
    let mut requests = Vec::new();
    for (index, file) in files.iter().enumerate() {
        if !seen.contains(file.name()) {
            let module = prost_build::Module::from_parts([
                "__protoc_gen_rust_grpc_import".to_string(),
                index.to_string(),
            ]);
            requests.push((module, file.clone()));
        }
    }
    for (package, package_files) in &packages {
        let module = prost_build::Module::from_protobuf_package_name(package);
        for file in package_files {
            let mut file = (*file).clone();
            if !options.messages {
                file.message_type.clear();
                file.enum_type.clear();
                file.extension.clear();
            }
            requests.push((module.clone(), file));
        }
    }
    let mut config = prost_build::Config::new();
    for (proto, rust) in &options.extern_paths {
        config.extern_path(proto, rust);
    }
    // Oneof enums hold their variants inline; clippy's large_enum_variant fires on many
    // real protos (e.g. grpc.testing). The allow goes on those enums only.
    for package_files in packages.values() {
        for file in package_files {
            let prefix = if file.package().is_empty() {
                String::new()
            } else {
                format!(".{}", file.package())
            };
            for message in &file.message_type {
                allow_large_oneofs(&mut config, &prefix, message);
            }
        }
    }
    let deprecated = deprecated_types(&files);
    config.service_generator(Box::new(GrpcServiceGenerator {
        client: options.client,
        server: options.server,
        runtime,
        deprecated_types: deprecated.clone(),
    }));
    let generated = catch_unwind(AssertUnwindSafe(|| config.generate(requests)))
        .map_err(|panic| {
            Error::new(format!(
                "prost-build failed on these descriptors: {}",
                panic_text(&*panic)
            ))
        })?
        .map_err(|e| Error::new(format!("prost-build: {e}")))?;

    let mut output = Vec::new();
    for (package, package_files) in &packages {
        let module = prost_build::Module::from_protobuf_package_name(package);
        let code = generated.get(&module).cloned().unwrap_or_default();
        let fds = descriptor_set(package_files, &by_name)?;
        let fds_lit = proc_macro2::Literal::byte_string(&fds);
        let fds_item = quote! {
            /// Serialized `google.protobuf.FileDescriptorSet` holding this package's proto
            /// files and everything they import (without source info), for server reflection.
            pub const FILE_DESCRIPTOR_SET: &[u8] = #fds_lit;
        };
        let source = format!("{code}\n{fds_item}\n");
        let mut parsed = syn::parse_file(&source).map_err(|e| {
            Error::new(format!(
                "internal error: generated code for package `{package}` does not parse: {e}"
            ))
        })?;
        if options.messages {
            deprecate_types(&mut parsed.items, package_files);
            if refers_to_deprecated(package_files, &deprecated) {
                parsed.items = scope_deprecated(std::mem::take(&mut parsed.items));
            }
        }
        let sources: Vec<&str> = package_files.iter().map(|f| f.name()).collect();
        let header = format!(
            "// This file is @generated by protoc-gen-rust-grpc {}. Do not edit.\n// proto package: {}\n// sources: {}\n\n",
            env!("CARGO_PKG_VERSION"),
            if package.is_empty() { "(none)" } else { package.as_str() },
            sources.join(", ")
        );
        output.push(GeneratedFile {
            name: output_file_name(package),
            content: header + &crate::format::format_file(&parsed),
        });
    }

    if let Some(include_file) = &options.include_file {
        let packages: Vec<&str> = packages.keys().map(String::as_str).collect();
        if output.iter().any(|f| &f.name == include_file) {
            return Err(Error::new(format!(
                "include_file `{include_file}` has the same name as a generated package file"
            )));
        }
        output.push(GeneratedFile {
            name: include_file.clone(),
            content: include_file_content(&packages)?,
        });
    }
    Ok(output)
}

/// Puts `#[deprecated]` on the structs and enums of messages and enums declared with
/// `option deprecated = true` (prost-build only does it for fields and enum values).
fn deprecate_types(items: &mut [syn::Item], files: &[&FileDescriptorProto]) {
    // Rust paths (module names, then the type name) of deprecated types.
    fn message(
        out: &mut HashSet<Vec<String>>,
        module: &[String],
        m: &prost_types::DescriptorProto,
    ) {
        let mut path = module.to_vec();
        path.push(rust_type_name(m.name()));
        if m.options.as_ref().is_some_and(|o| o.deprecated()) {
            out.insert(path);
        }
        let mut inner = module.to_vec();
        inner.push(to_snake_case(m.name()));
        for e in &m.enum_type {
            enumeration(out, &inner, e);
        }
        for n in &m.nested_type {
            message(out, &inner, n);
        }
    }
    fn enumeration(
        out: &mut HashSet<Vec<String>>,
        module: &[String],
        e: &prost_types::EnumDescriptorProto,
    ) {
        if e.options.as_ref().is_some_and(|o| o.deprecated()) {
            let mut path = module.to_vec();
            path.push(rust_type_name(e.name()));
            out.insert(path);
        }
    }
    fn walk(items: &mut [syn::Item], module: &mut Vec<String>, deprecated: &HashSet<Vec<String>>) {
        for item in items {
            let (attrs, ident) = match item {
                syn::Item::Struct(s) => (&mut s.attrs, &s.ident),
                syn::Item::Enum(e) => (&mut e.attrs, &e.ident),
                syn::Item::Mod(m) => {
                    if let Some((_, content)) = &mut m.content {
                        module.push(m.ident.to_string().trim_start_matches("r#").to_string());
                        walk(content, module, deprecated);
                        module.pop();
                    }
                    continue;
                }
                _ => continue,
            };
            let mut path = module.clone();
            path.push(ident.to_string());
            if deprecated.contains(&path) {
                // After the doc comment, before derives.
                let at = attrs
                    .iter()
                    .take_while(|a| a.path().is_ident("doc"))
                    .count();
                attrs.insert(at, syn::parse_quote!(#[deprecated]));
            }
        }
    }
    let mut deprecated = HashSet::new();
    for file in files {
        for m in &file.message_type {
            message(&mut deprecated, &[], m);
        }
        for e in &file.enum_type {
            enumeration(&mut deprecated, &[], e);
        }
    }
    if !deprecated.is_empty() {
        walk(items, &mut Vec::new(), &deprecated);
    }
}

/// Fully qualified names (`.pkg.Msg`) of the messages and enums declared deprecated.
fn deprecated_types(files: &[FileDescriptorProto]) -> HashSet<String> {
    fn message(out: &mut HashSet<String>, prefix: &str, m: &prost_types::DescriptorProto) {
        let name = format!("{prefix}.{}", m.name());
        if m.options.as_ref().is_some_and(|o| o.deprecated()) {
            out.insert(name.clone());
        }
        for e in &m.enum_type {
            if e.options.as_ref().is_some_and(|o| o.deprecated()) {
                out.insert(format!("{name}.{}", e.name()));
            }
        }
        for n in &m.nested_type {
            message(out, &name, n);
        }
    }
    let mut out = HashSet::new();
    for file in files {
        let prefix = if file.package().is_empty() {
            String::new()
        } else {
            format!(".{}", file.package())
        };
        for e in &file.enum_type {
            if e.options.as_ref().is_some_and(|o| o.deprecated()) {
                out.insert(format!("{prefix}.{}", e.name()));
            }
        }
        for m in &file.message_type {
            message(&mut out, &prefix, m);
        }
    }
    out
}

/// Whether the messages of `files` declare or use (as field types) a deprecated type.
fn refers_to_deprecated(files: &[&FileDescriptorProto], deprecated: &HashSet<String>) -> bool {
    fn message(
        m: &prost_types::DescriptorProto,
        prefix: &str,
        deprecated: &HashSet<String>,
    ) -> bool {
        let name = format!("{prefix}.{}", m.name());
        deprecated.contains(&name)
            || m.enum_type
                .iter()
                .any(|e| deprecated.contains(&format!("{name}.{}", e.name())))
            || m.field.iter().any(|f| {
                f.type_name
                    .as_deref()
                    .is_some_and(|t| deprecated.contains(t))
            })
            || m.nested_type.iter().any(|n| message(n, &name, deprecated))
    }
    !deprecated.is_empty()
        && files.iter().any(|file| {
            let prefix = if file.package().is_empty() {
                String::new()
            } else {
                format!(".{}", file.package())
            };
            file.enum_type
                .iter()
                .any(|e| deprecated.contains(&format!("{prefix}.{}", e.name())))
                || file
                    .message_type
                    .iter()
                    .any(|m| message(m, &prefix, deprecated))
        })
}

/// Name of the module that holds a package's messages when some of them are deprecated.
const MESSAGES_SCOPE: &str = "__generated_messages";

/// Moves the messages and enums of a package into a private module marked
/// `#[allow(deprecated)]` and re-exports them all: the code `#[derive]`s and prost-build
/// write for (or around) deprecated types must not warn, and lint attributes on a type do
/// not reach the impls derived for it. Paths leaving the package get one more `super::`.
fn scope_deprecated(items: Vec<syn::Item>) -> Vec<syn::Item> {
    let (mut inside, outside): (Vec<syn::Item>, Vec<syn::Item>) =
        items.into_iter().partition(|item| match item {
            syn::Item::Macro(m) => !m.mac.path.is_ident(crate::format::SERVICE_MARKER),
            syn::Item::Const(c) => c.ident != "FILE_DESCRIPTOR_SET",
            _ => true,
        });
    if inside.is_empty() {
        return outside;
    }
    for item in &mut inside {
        deepen_item(item, 0);
    }
    let scope = syn::Ident::new(MESSAGES_SCOPE, proc_macro2::Span::call_site());
    let mut out: Vec<syn::Item> = vec![
        syn::parse_quote! {
            /// The package's messages and enums, re-exported below; they live in a module of
            /// their own so that `#[allow(deprecated)]` covers the code derived for deprecated types.
            #[allow(deprecated)]
            mod #scope { #(#inside)* }
        },
        syn::parse_quote! {
            #[allow(deprecated)]
            pub use self::#scope::*;
        },
    ];
    out.extend(outside);
    out
}

/// Adds a `super::` to every path in `item` (nested `depth` modules below the package) that
/// climbs out of the package, including the paths prost-build writes into `#[prost(..)]`
/// string attributes.
fn deepen_item(item: &mut syn::Item, depth: usize) {
    use syn::visit_mut::VisitMut;
    struct Deepen {
        depth: usize,
    }
    impl VisitMut for Deepen {
        fn visit_item_mod_mut(&mut self, m: &mut syn::ItemMod) {
            for attr in &mut m.attrs {
                self.visit_attribute_mut(attr);
            }
            if let Some((_, items)) = &mut m.content {
                self.depth += 1;
                for item in items {
                    self.visit_item_mut(item);
                }
                self.depth -= 1;
            }
        }
        fn visit_path_mut(&mut self, path: &mut syn::Path) {
            let supers = path
                .segments
                .iter()
                .take_while(|s| s.ident == "super")
                .count();
            if path.leading_colon.is_none() && supers > self.depth {
                path.segments.insert(0, syn::parse_quote!(super));
            }
            syn::visit_mut::visit_path_mut(self, path);
        }
        fn visit_attribute_mut(&mut self, attr: &mut syn::Attribute) {
            if attr.path().is_ident("prost") {
                if let syn::Meta::List(list) = &mut attr.meta {
                    let tokens: Vec<proc_macro2::TokenTree> =
                        list.tokens.clone().into_iter().collect();
                    let depth = self.depth;
                    list.tokens = tokens
                        .into_iter()
                        .map(|tt| match &tt {
                            proc_macro2::TokenTree::Literal(l) => {
                                match syn::parse_str::<syn::LitStr>(&l.to_string()) {
                                    Ok(s) => {
                                        let deepened = deepen_string(&s.value(), depth);
                                        proc_macro2::TokenTree::Literal(
                                            proc_macro2::Literal::string(&deepened),
                                        )
                                    }
                                    Err(_) => tt,
                                }
                            }
                            _ => tt,
                        })
                        .collect();
                }
            }
        }
    }
    Deepen { depth }.visit_item_mut(item);
}

/// `deepen_item` for paths inside a string such as `"string, enumeration(super::x::E)"`.
fn deepen_string(s: &str, depth: usize) -> String {
    let mut out = String::new();
    let mut rest = s;
    let mut at_start = true;
    while !rest.is_empty() {
        if at_start && rest.starts_with("super::") {
            let mut supers = 0;
            while rest[supers * "super::".len()..].starts_with("super::") {
                supers += 1;
            }
            if supers > depth {
                out.push_str("super::");
            }
            for _ in 0..supers {
                out.push_str("super::");
            }
            rest = &rest[supers * "super::".len()..];
            at_start = false;
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        at_start = !(c.is_alphanumeric() || c == '_' || c == ':');
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// prost-build's name for a message or enum type (`Self` becomes `Self_`).
fn rust_type_name(name: &str) -> String {
    let camel = crate::service::heck_lite::to_upper_camel_case(name);
    if camel == "Self" {
        "Self_".to_string()
    } else {
        camel
    }
}

fn allow_large_oneofs(
    config: &mut prost_build::Config,
    prefix: &str,
    message: &prost_types::DescriptorProto,
) {
    let name = format!("{prefix}.{}", message.name());
    for (index, oneof) in message.oneof_decl.iter().enumerate() {
        let synthetic = message
            .field
            .iter()
            .any(|f| f.oneof_index == Some(index as i32) && f.proto3_optional());
        if !synthetic {
            config.enum_attribute(
                format!("{name}.{}", oneof.name()),
                "#[allow(clippy::large_enum_variant)]",
            );
        }
    }
    for nested in &message.nested_type {
        allow_large_oneofs(config, &name, nested);
    }
}

/// Makes descriptors from protoc and from the pure-Rust parser agree, so both paths give
/// byte-identical output: proto2 files carry no `syntax`, and synthetic oneofs of proto3
/// `optional` fields come after the real oneofs (protoc's order).
fn normalize_file(file: FileDescriptorProto) -> FileDescriptorProto {
    let mut file = canonical_well_known(file.name()).unwrap_or(file);
    if file.syntax.as_deref() == Some("proto2") {
        file.syntax = None;
    }
    drop_empty(&mut file.options);
    for message in &mut file.message_type {
        normalize_message(message);
    }
    for field in &mut file.extension {
        drop_empty(&mut field.options);
    }
    for e in &mut file.enum_type {
        normalize_enum(e);
    }
    for service in &mut file.service {
        drop_empty(&mut service.options);
        for method in &mut service.method {
            drop_empty(&mut method.options);
        }
    }
    file
}

/// The well-known types (`google/protobuf/*.proto`) exist in several versions (protoc
/// ships newer ones than protobuf-parse embeds). Both paths use the copies compiled into the
/// `protobuf` crate, so the descriptor sets do not depend on where the files came from.
fn canonical_well_known(name: &str) -> Option<FileDescriptorProto> {
    use protobuf::well_known_types as wkt;
    let descriptor = match name {
        "google/protobuf/any.proto" => wkt::any::file_descriptor(),
        "google/protobuf/api.proto" => wkt::api::file_descriptor(),
        "google/protobuf/descriptor.proto" => protobuf::descriptor::file_descriptor(),
        "google/protobuf/duration.proto" => wkt::duration::file_descriptor(),
        "google/protobuf/empty.proto" => wkt::empty::file_descriptor(),
        "google/protobuf/field_mask.proto" => wkt::field_mask::file_descriptor(),
        "google/protobuf/source_context.proto" => wkt::source_context::file_descriptor(),
        "google/protobuf/struct.proto" => wkt::struct_::file_descriptor(),
        "google/protobuf/timestamp.proto" => wkt::timestamp::file_descriptor(),
        "google/protobuf/type.proto" => wkt::type_::file_descriptor(),
        "google/protobuf/wrappers.proto" => wkt::wrappers::file_descriptor(),
        _ => return None,
    };
    let bytes = protobuf::Message::write_to_bytes(descriptor.proto()).ok()?;
    let mut file = FileDescriptorProto::decode(bytes.as_slice()).ok()?;
    file.source_code_info = None;
    Some(file)
}

/// protoc keeps an empty options message for e.g. `rpc X(A) returns (B) {}`; the pure
/// parser does not. Empty options mean nothing, so drop them.
fn drop_empty<T: Default + PartialEq>(options: &mut Option<T>) {
    if options.as_ref().is_some_and(|o| *o == T::default()) {
        *options = None;
    }
}

fn normalize_enum(e: &mut prost_types::EnumDescriptorProto) {
    drop_empty(&mut e.options);
    for value in &mut e.value {
        drop_empty(&mut value.options);
    }
}

fn normalize_message(message: &mut prost_types::DescriptorProto) {
    drop_empty(&mut message.options);
    for field in message.field.iter_mut().chain(message.extension.iter_mut()) {
        drop_empty(&mut field.options);
    }
    for oneof in &mut message.oneof_decl {
        drop_empty(&mut oneof.options);
    }
    for e in &mut message.enum_type {
        normalize_enum(e);
    }
    for nested in &mut message.nested_type {
        normalize_message(nested);
    }
    // A oneof is synthetic when its only field is a proto3 optional field.
    let synthetic: Vec<bool> = (0..message.oneof_decl.len())
        .map(|i| {
            let members: Vec<_> = message
                .field
                .iter()
                .filter(|f| f.oneof_index == Some(i as i32))
                .collect();
            members.len() == 1 && members[0].proto3_optional()
        })
        .collect();
    let mut order: Vec<usize> = (0..message.oneof_decl.len())
        .filter(|&i| !synthetic[i])
        .collect();
    // Synthetic oneofs in field order, as protoc adds them.
    for field in &message.field {
        if let Some(i) = field.oneof_index {
            let i = i as usize;
            if i < synthetic.len() && synthetic[i] && !order.contains(&i) {
                order.push(i);
            }
        }
    }
    for i in 0..message.oneof_decl.len() {
        if !order.contains(&i) {
            order.push(i);
        }
    }
    if order.iter().enumerate().all(|(new, &old)| new == old) {
        return;
    }
    let mut new_index = vec![0i32; order.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new as i32;
    }
    let old_decls = std::mem::take(&mut message.oneof_decl);
    message.oneof_decl = order.iter().map(|&old| old_decls[old].clone()).collect();
    for field in &mut message.field {
        if let Some(i) = field.oneof_index {
            if let Some(&n) = new_index.get(i as usize) {
                field.oneof_index = Some(n);
            }
        }
    }
}

/// Fully qualified names (`.pkg.Msg.Nested`) of every message and enum.
fn known_types(files: &[FileDescriptorProto]) -> HashSet<String> {
    fn message(out: &mut HashSet<String>, prefix: &str, m: &prost_types::DescriptorProto) {
        let name = format!("{prefix}.{}", m.name());
        for e in &m.enum_type {
            out.insert(format!("{name}.{}", e.name()));
        }
        for n in &m.nested_type {
            message(out, &name, n);
        }
        out.insert(name);
    }
    let mut out = HashSet::new();
    for file in files {
        let prefix = if file.package().is_empty() {
            String::new()
        } else {
            format!(".{}", file.package())
        };
        for e in &file.enum_type {
            out.insert(format!("{prefix}.{}", e.name()));
        }
        for m in &file.message_type {
            message(&mut out, &prefix, m);
        }
    }
    out
}

/// Rejects references to types the request does not describe (protoc never sends those,
/// but a hand-made request might; prost-build would panic on them).
fn check_types(file: &FileDescriptorProto, known: &HashSet<String>) -> Result<(), Error> {
    let unknown = |what: String, type_name: &str| {
        Error::new(format!(
            "{}: {what} refers to unknown type `{type_name}`",
            file.name()
        ))
    };
    fn fields<'a>(
        m: &'a prost_types::DescriptorProto,
        out: &mut Vec<(String, &'a prost_types::FieldDescriptorProto)>,
    ) {
        for f in &m.field {
            out.push((format!("field `{}.{}`", m.name(), f.name()), f));
        }
        for n in &m.nested_type {
            fields(n, out);
        }
    }
    let mut all = Vec::new();
    for m in &file.message_type {
        fields(m, &mut all);
    }
    for (what, field) in all {
        if let Some(t) = field.type_name.as_deref() {
            if !known.contains(t) {
                return Err(unknown(what, t));
            }
        }
    }
    for service in &file.service {
        for method in &service.method {
            for t in [method.input_type(), method.output_type()] {
                if !known.contains(t) {
                    return Err(unknown(
                        format!("method `{}.{}`", service.name(), method.name()),
                        t,
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Rejects names that would collide in the generated Rust code of one package.
fn check_names(files: &[&FileDescriptorProto], options: &Options) -> Result<(), Error> {
    // Modules prost-build creates for messages with nested types or oneofs.
    let mut message_modules: HashMap<String, String> = HashMap::new();
    for file in files {
        for message in &file.message_type {
            if !message.nested_type.is_empty()
                || !message.enum_type.is_empty()
                || !message.oneof_decl.is_empty()
            {
                message_modules.insert(
                    to_snake_case(message.name()),
                    format!("{}: message `{}`", file.name(), message.name()),
                );
            }
        }
    }
    let mut modules: HashMap<String, String> = HashMap::new();
    for file in files {
        for service in &file.service {
            let full = if file.package().is_empty() {
                service.name().to_string()
            } else {
                format!("{}.{}", file.package(), service.name())
            };
            let module = to_snake_case(service.name());
            let this = format!("{}: service `{}`", file.name(), service.name());
            if module.is_empty()
                || crate::service::heck_lite::to_upper_camel_case(service.name()).is_empty()
            {
                return Err(Error::new(format!(
                    "{this}: the name has no letters or digits to build Rust names from"
                )));
            }
            if let Some(other) = modules.insert(module.clone(), this.clone()) {
                return Err(Error::new(format!(
                    "{other} and {this} both map to the Rust modules `{module}_client`/`{module}_server`"
                )));
            }
            for suffix in ["client", "server"] {
                let name = format!("{module}_{suffix}");
                if let Some(message) = message_modules.get(&name) {
                    return Err(Error::new(format!(
                        "{this} needs the Rust module `{name}`, which {message} already uses for its nested types"
                    )));
                }
            }
            let mut methods: HashMap<String, &str> = HashMap::new();
            for method in &service.method {
                let rust = to_snake_case(method.name());
                if rust.is_empty() {
                    return Err(Error::new(format!(
                        "{}: method `{}` of service `{full}` has no letters or digits to build a Rust name from",
                        file.name(),
                        method.name()
                    )));
                }
                if let Some(other) = methods.insert(rust.clone(), method.name()) {
                    return Err(Error::new(format!(
                        "{}: service `{full}` has methods `{other}` and `{}` that both map to the Rust name `{rust}`",
                        file.name(),
                        method.name()
                    )));
                }
                if options.client && (rust == "new" || rust == "channel") {
                    return Err(Error::new(format!(
                        "{}: method `{}` of service `{full}` maps to `{rust}`, which the generated client uses for itself; rename the rpc or generate with client=false",
                        file.name(),
                        method.name()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Serialized `FileDescriptorSet` of `files` plus their transitive imports, dependencies
/// first, without source info.
fn descriptor_set(
    files: &[&FileDescriptorProto],
    by_name: &HashMap<&str, &FileDescriptorProto>,
) -> Result<Vec<u8>, Error> {
    fn visit<'a>(
        name: &'a str,
        by_name: &HashMap<&str, &'a FileDescriptorProto>,
        done: &mut HashSet<&'a str>,
        out: &mut Vec<FileDescriptorProto>,
    ) -> Result<(), Error> {
        if !done.insert(name) {
            return Ok(());
        }
        let Some(file) = by_name.get(name) else {
            return Err(Error::new(format!(
                "import `{name}` is missing from the descriptors"
            )));
        };
        for dep in &file.dependency {
            visit(dep, by_name, done, out)?;
        }
        let mut file = (*file).clone();
        file.source_code_info = None;
        out.push(file);
        Ok(())
    }
    let mut done = HashSet::new();
    let mut out = Vec::new();
    for file in files {
        visit(file.name(), by_name, &mut done, &mut out)?;
    }
    Ok(FileDescriptorSet { file: out }.encode_to_vec())
}

/// The include file: nested `pub mod`s following the package names, each including its
/// package file. Package-less code is included at the root.
fn include_file_content(packages: &[&str]) -> Result<String, Error> {
    #[derive(Default)]
    struct Node {
        file: Option<String>,
        children: BTreeMap<String, Node>,
    }
    let mut root = Node::default();
    for package in packages {
        let module = prost_build::Module::from_protobuf_package_name(package);
        let mut node = &mut root;
        for part in module.parts() {
            node = node.children.entry(part.to_string()).or_default();
        }
        node.file = Some(output_file_name(package));
    }
    fn render(node: &Node) -> proc_macro2::TokenStream {
        let include = node.file.as_ref().map(|f| quote! { include!(#f); });
        let children = node.children.iter().map(|(name, child)| {
            let ident = crate::service::ident(name);
            let body = render(child);
            let doc = format!(
                " Generated code for proto package path segment `{}`.",
                name.trim_start_matches("r#")
            );
            quote! { #[doc = #doc] pub mod #ident { #body } }
        });
        quote! { #include #(#children)* }
    }
    let tokens = render(&root);
    let parsed = syn::parse_file(&tokens.to_string())
        .map_err(|e| Error::new(format!("internal error: include file does not parse: {e}")))?;
    Ok(format!(
        "// This file is @generated by protoc-gen-rust-grpc {}. Do not edit.\n\n{}",
        env!("CARGO_PKG_VERSION"),
        prettyplease::unparse(&parsed)
    ))
}
