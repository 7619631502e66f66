//! The plugin on requests that always decode: one of the well-formed requests built from
//! the repository's protos ([`grpc_rust_fuzz::plugin_requests`]), edited by a sequence of
//! operations the input describes (rename, retype, renumber, delete, duplicate, move,
//! set odd options and names), then handed to [`protoc_gen_rust_grpc::plugin::respond`].
//! It must return a response (files or an `error`), never panic, and never an error saying
//! our own generator panicked (prost-build's panics are contained by the plugin and
//! allowed, see `grpc_rust_fuzz::contain_prost_build_panics`).
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use prost_types::compiler::CodeGeneratorRequest;
use prost_types::{DescriptorProto, FileDescriptorProto};

/// Names that tend to break code generators: keywords, collisions with generated items,
/// odd characters, paths.
const NAMES: &[&str] = &[
    "",
    "_",
    "a",
    "A",
    "self",
    "Self",
    "super",
    "crate",
    "type",
    "fn",
    "async",
    "r#type",
    "match",
    "Result",
    "Option",
    "Box",
    "String",
    "Vec",
    "Status",
    "Request",
    "Response",
    "Server",
    "Client",
    "Foo",
    "foo",
    "FOO_BAR",
    "foo_bar",
    "fooBar",
    "Foo.Bar",
    ".foo",
    "foo.",
    "1abc",
    "é",
    "a-b",
    "a b",
    "Greeter",
    "HelloRequest",
    "HelloReply",
    ".helloworld.HelloRequest",
    ".helloworld.HelloReply",
    ".missing.Type",
    ".google.protobuf.Empty",
    "helloworld",
    "routeguide",
    "grpc.testing",
    "Empty",
    "Point",
    "Feature",
    "RouteNote",
    "SimpleRequest",
    "Check",
    "Watch",
    "say_hello",
    "SayHello",
    "SAY_HELLO",
    "with\nnewline",
    "quote\"d",
    "back\\slash",
    "mod.rs",
    "a/b.proto",
    "../x.proto",
    "edge/edge.proto",
];

const PARAMETERS: &[&str] = &[
    "",
    "client=false",
    "server=false",
    "messages=false",
    "include_file=mod.rs",
    "include_file=",
    "include_file=../x.rs",
    "runtime_crate=::grpc_runtime",
    "runtime_crate=",
    "runtime_crate=not a path",
    "extern_path=.helloworld=::hw",
    "extern_path=.=::x",
    "extern_path=",
    "client=maybe",
    "unknown=1",
    "client=true,server=true,messages=true",
    "a\\,b=c",
    ",,,",
    "=",
];

fn name(u: &mut Unstructured) -> Result<String> {
    if u.ratio(3, 4)? {
        Ok(u.choose(NAMES)?.to_string())
    } else {
        Ok(u.arbitrary::<String>()?)
    }
}

/// Picks an index into a list of `len` items (None when empty).
fn pick(u: &mut Unstructured, len: usize) -> Result<Option<usize>> {
    if len == 0 {
        return Ok(None);
    }
    Ok(Some(u.choose_index(len)?))
}

/// A message somewhere in a file (top level or nested one level down).
fn message<'a>(
    u: &mut Unstructured,
    file: &'a mut FileDescriptorProto,
) -> Result<Option<&'a mut DescriptorProto>> {
    let Some(i) = pick(u, file.message_type.len())? else {
        return Ok(None);
    };
    let nested = u.ratio(1, 4)?;
    let m = &mut file.message_type[i];
    if nested {
        if let Some(j) = pick(u, m.nested_type.len())? {
            return Ok(Some(&mut m.nested_type[j]));
        }
    }
    Ok(Some(m))
}

fn edit(u: &mut Unstructured, req: &mut CodeGeneratorRequest) -> Result<()> {
    let op: u8 = u.int_in_range(0..=19)?;
    if op == 0 {
        req.parameter = Some(if u.ratio(3, 4)? {
            u.choose(PARAMETERS)?.to_string()
        } else {
            u.arbitrary()?
        });
        return Ok(());
    }
    if op == 1 {
        if u.arbitrary()? {
            req.file_to_generate.push(name(u)?);
        } else if let Some(i) = pick(u, req.file_to_generate.len())? {
            req.file_to_generate.remove(i);
        }
        return Ok(());
    }
    let Some(fi) = pick(u, req.proto_file.len())? else {
        return Ok(());
    };
    if op == 2 {
        // Drop a file (its dependents now name types nobody defines), or duplicate it.
        if u.arbitrary()? {
            req.proto_file.remove(fi);
        } else {
            let copy = req.proto_file[fi].clone();
            req.proto_file.push(copy);
        }
        return Ok(());
    }
    let file = &mut req.proto_file[fi];
    match op {
        3 => file.name = Some(name(u)?),
        4 => file.package = if u.ratio(1, 4)? { None } else { Some(name(u)?) },
        5 => {
            file.syntax = Some(
                u.choose(&["proto2", "proto3", "editions", "", "proto4"])?
                    .to_string(),
            )
        }
        6 => {
            if let Some(m) = message(u, file)? {
                m.name = Some(name(u)?);
            }
        }
        7 => {
            if let Some(m) = message(u, file)? {
                if let Some(f) = pick(u, m.field.len())? {
                    let field = &mut m.field[f];
                    match u.int_in_range(0..=7)? {
                        0 => field.name = Some(name(u)?),
                        1 => field.number = Some(u.arbitrary()?),
                        2 => field.r#type = Some(u.int_in_range(0..=20)?),
                        3 => field.type_name = Some(name(u)?),
                        4 => field.label = Some(u.int_in_range(0..=4)?),
                        5 => field.oneof_index = Some(u.int_in_range(-1..=3)?),
                        6 => field.proto3_optional = Some(u.arbitrary()?),
                        _ => field.json_name = Some(name(u)?),
                    }
                }
            }
        }
        8 => {
            if let Some(m) = message(u, file)? {
                if let Some(f) = pick(u, m.field.len())? {
                    if u.arbitrary()? {
                        m.field.remove(f);
                    } else {
                        let copy = m.field[f].clone();
                        m.field.push(copy);
                    }
                }
            }
        }
        9 => {
            if let Some(m) = message(u, file)? {
                // map_entry on a message that is not one, or oneof declarations.
                if u.arbitrary()? {
                    m.options.get_or_insert_with(Default::default).map_entry = Some(u.arbitrary()?);
                } else {
                    m.oneof_decl.push(prost_types::OneofDescriptorProto {
                        name: Some(name(u)?),
                        options: None,
                    });
                }
            }
        }
        10 => {
            // Delete, duplicate or nest a message.
            if let Some(i) = pick(u, file.message_type.len())? {
                match u.int_in_range(0..=2)? {
                    0 => drop(file.message_type.remove(i)),
                    1 => {
                        let copy = file.message_type[i].clone();
                        file.message_type.push(copy);
                    }
                    _ => {
                        let moved = file.message_type.remove(i);
                        if let Some(j) = pick(u, file.message_type.len())? {
                            file.message_type[j].nested_type.push(moved);
                        }
                    }
                }
            }
        }
        11 => {
            if let Some(s) = pick(u, file.service.len())? {
                file.service[s].name = Some(name(u)?);
            }
        }
        12 => {
            if let Some(s) = pick(u, file.service.len())? {
                let service = &mut file.service[s];
                if let Some(m) = pick(u, service.method.len())? {
                    let method = &mut service.method[m];
                    match u.int_in_range(0..=4)? {
                        0 => method.name = Some(name(u)?),
                        1 => method.input_type = if u.ratio(1, 5)? { None } else { Some(name(u)?) },
                        2 => {
                            method.output_type = if u.ratio(1, 5)? { None } else { Some(name(u)?) }
                        }
                        3 => method.client_streaming = Some(u.arbitrary()?),
                        _ => method.server_streaming = Some(u.arbitrary()?),
                    }
                }
            }
        }
        13 => {
            if let Some(s) = pick(u, file.service.len())? {
                let service = &mut file.service[s];
                if let Some(m) = pick(u, service.method.len())? {
                    if u.arbitrary()? {
                        service.method.remove(m);
                    } else {
                        let copy = service.method[m].clone();
                        service.method.push(copy);
                    }
                }
            }
        }
        14 => {
            if let Some(s) = pick(u, file.service.len())? {
                if u.arbitrary()? {
                    file.service.remove(s);
                } else {
                    let copy = file.service[s].clone();
                    file.service.push(copy);
                }
            }
        }
        15 => {
            if let Some(e) = pick(u, file.enum_type.len())? {
                let en = &mut file.enum_type[e];
                match u.int_in_range(0..=2)? {
                    0 => en.name = Some(name(u)?),
                    1 => en.value.clear(),
                    _ => {
                        if let Some(v) = pick(u, en.value.len())? {
                            en.value[v].name = Some(name(u)?);
                            en.value[v].number = Some(u.arbitrary()?);
                        }
                    }
                }
            }
        }
        16 => {
            if u.arbitrary()? {
                file.dependency.push(name(u)?);
            } else if let Some(d) = pick(u, file.dependency.len())? {
                file.dependency.remove(d);
            }
        }
        17 => {
            // Comments: a location with an arbitrary path and text.
            let info = file.source_code_info.get_or_insert_with(Default::default);
            let path: Vec<i32> = (0..u.int_in_range(0..=4)?)
                .map(|_| u.int_in_range(-1..=8))
                .collect::<Result<_>>()?;
            info.location.push(prost_types::source_code_info::Location {
                path,
                span: vec![0, 0, 1],
                leading_comments: Some(u.arbitrary()?),
                trailing_comments: Some(u.arbitrary()?),
                leading_detached_comments: vec![u.arbitrary()?],
            });
        }
        18 => {
            // Options prost and our generator look at.
            let opts = file.options.get_or_insert_with(Default::default);
            match u.int_in_range(0..=2)? {
                0 => opts.deprecated = Some(u.arbitrary()?),
                1 => opts.java_package = Some(name(u)?),
                _ => {
                    if let Some(s) = pick(u, file.service.len())? {
                        file.service[s]
                            .options
                            .get_or_insert_with(Default::default)
                            .deprecated = Some(u.arbitrary()?);
                    }
                }
            }
        }
        _ => {
            if let Some(m) = message(u, file)? {
                m.reserved_name.push(name(u)?);
                m.extension_range
                    .push(prost_types::descriptor_proto::ExtensionRange {
                        start: Some(u.arbitrary()?),
                        end: Some(u.arbitrary()?),
                        options: None,
                    });
            }
        }
    }
    Ok(())
}

fuzz_target!(init: grpc_rust_fuzz::contain_prost_build_panics(), |data: &[u8]| {
    let mut u = Unstructured::new(data);
    let bases = grpc_rust_fuzz::plugin_requests();
    let Ok(i) = u.choose_index(bases.len()) else { return };
    let mut req = bases[i].clone();
    for _ in 0..16 {
        if u.is_empty() || edit(&mut u, &mut req).is_err() {
            break;
        }
    }
    let response = protoc_gen_rust_grpc::plugin::respond(&req);
    grpc_rust_fuzz::check_plugin_response(&response);
});
