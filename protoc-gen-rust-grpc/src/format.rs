//! Lays out generated code the way `rustfmt --edition 2021` (default settings) would, without
//! running rustfmt: generated files must be rustfmt-clean, yet identical on every machine.
//!
//! The items prost-build emits for messages (structs, enums, attributes, field types) are
//! printed here following rustfmt's rules for exactly those shapes; the service code arrives
//! already laid out (see `service.rs`, which uses the [`Ty`] layout helpers below) wrapped in a
//! marker macro; anything else (e.g. the `impl` blocks prost-build writes for enums) goes
//! through prettyplease, whose output for those shapes rustfmt keeps.

use syn::punctuated::Punctuated;
use syn::{Attribute, Expr, Fields, Item, Lit, Meta, Token, Type, Visibility};

/// rustfmt's `max_width`.
pub(crate) const MAX_WIDTH: usize = 100;
/// rustfmt's `attr_fn_like_width`: wider attribute argument lists go vertical.
const ATTR_FN_LIKE_WIDTH: usize = 70;

/// Name of the marker macro `service.rs` wraps its pre-formatted text in.
pub(crate) const SERVICE_MARKER: &str = "__protoc_gen_rust_grpc_formatted";

/// A type for layout: either unbreakable text, or `head<args>tail` whose generic arguments
/// rustfmt puts one per line when the whole does not fit.
#[derive(Clone, Debug)]
pub(crate) enum Ty {
    /// Text that is never broken.
    Leaf(String),
    /// `head<arg, arg>tail`, e.g. head `Output = Result`, or tail ` + Send`.
    Generic {
        head: String,
        args: Vec<Ty>,
        tail: String,
    },
}

impl Ty {
    /// A leaf.
    pub(crate) fn leaf(s: impl Into<String>) -> Ty {
        Ty::Leaf(s.into())
    }

    /// `head<args>`.
    pub(crate) fn generic(head: impl Into<String>, args: Vec<Ty>) -> Ty {
        Ty::Generic {
            head: head.into(),
            args,
            tail: String::new(),
        }
    }

    /// The same type with `prefix` in front (e.g. `Output = `).
    pub(crate) fn prefixed(self, prefix: &str) -> Ty {
        match self {
            Ty::Leaf(s) => Ty::Leaf(format!("{prefix}{s}")),
            Ty::Generic { head, args, tail } => Ty::Generic {
                head: format!("{prefix}{head}"),
                args,
                tail,
            },
        }
    }

    /// The same type with `suffix` after it (e.g. ` + Send`).
    pub(crate) fn suffixed(self, suffix: &str) -> Ty {
        match self {
            Ty::Leaf(s) => Ty::Leaf(format!("{s}{suffix}")),
            Ty::Generic { head, args, tail } => Ty::Generic {
                head,
                args,
                tail: format!("{tail}{suffix}"),
            },
        }
    }

    /// The type on one line.
    pub(crate) fn one_line(&self) -> String {
        match self {
            Ty::Leaf(s) => s.clone(),
            Ty::Generic { head, args, tail } => {
                let args: Vec<String> = args.iter().map(Ty::one_line).collect();
                format!("{head}<{}>{tail}", args.join(", "))
            }
        }
    }

    /// Like [`Ty::layout`], but breaks the outermost generic arguments even if the type
    /// would fit on the line.
    pub(crate) fn layout_broken(&self, indent: usize, trail: &str) -> String {
        self.layout(indent, MAX_WIDTH + 1, trail)
    }

    /// Lays the type out starting at column `start` of a line indented by `indent`, followed
    /// by `trail` on its last line. Returns the text from the type's first character on; later
    /// lines carry their own indentation.
    pub(crate) fn layout(&self, indent: usize, start: usize, trail: &str) -> String {
        let one = self.one_line();
        match self {
            Ty::Generic { head, args, tail } if start + one.len() + trail.len() > MAX_WIDTH => {
                let mut out = format!("{head}<\n");
                for arg in args {
                    let inner = indent + 4;
                    out.push_str(&spaces(inner));
                    out.push_str(&arg.layout(inner, inner, ","));
                    out.push('\n');
                }
                out.push_str(&spaces(indent));
                out.push('>');
                out.push_str(tail);
                out.push_str(trail);
                out
            }
            _ => one + trail,
        }
    }
}

/// `n` spaces.
pub(crate) fn spaces(n: usize) -> String {
    " ".repeat(n)
}

/// Lays out a generated function signature and its opening brace as rustfmt does. The
/// signatures the generator emits never fit rustfmt's one-line budget, so parameters always
/// go one per line. The thresholds below were measured against rustfmt (edition 2021,
/// default config) for these exact shapes at the indentation they are used at; rustfmt
/// measures `impl Trait` types without their `impl ` prefix, hence the extra slack.
/// `head` is e.g. `pub async fn say_hello`.
pub(crate) fn fn_signature(indent: usize, head: &str, params: &[(String, Ty)], ret: &Ty) -> String {
    let pad = spaces(indent);
    let mut out = format!("{pad}{head}(\n");
    let inner = indent + 4;
    for (p, t) in params {
        out.push_str(&spaces(inner));
        let one = t.one_line();
        if one.is_empty() {
            out.push_str(p);
            out.push_str(",\n");
            continue;
        }
        let slack = if one.starts_with("impl ") { 5 } else { 0 };
        let line = format!("{p}: {one},");
        if inner + line.len() <= MAX_WIDTH + slack {
            out.push_str(&line);
            out.push('\n');
        } else {
            out.push_str(&format!("{p}: {}\n", t.layout_broken(inner, ",")));
        }
    }
    let close = format!("{pad}) -> ");
    let one = ret.one_line();
    let width = close.len() + one.len();
    let is_impl = one.starts_with("impl ");
    let slack = if is_impl { 5 } else { 0 };
    if width <= MAX_WIDTH - 10 {
        out.push_str(&format!("{close}{one} {{\n"));
    } else if width <= MAX_WIDTH + 2 + slack {
        out.push_str(&format!("{close}{one}\n{pad}{{\n"));
    } else if let (true, Ty::Generic { tail, .. }) = (is_impl && width <= MAX_WIDTH + 10, ret) {
        // rustfmt moves the trailing bounds (` + Send`) to a line of their own here.
        let head = &one[..one.len() - tail.len()];
        out.push_str(&format!(
            "{close}{head}\n{}{} {{\n",
            spaces(close.len() + 2),
            tail.trim_start()
        ));
    } else {
        out.push_str(&close);
        out.push_str(&ret.layout_broken(indent, " {"));
        out.push('\n');
    }
    out
}

/// Formats a whole generated file (without its header comment).
pub(crate) fn format_file(file: &syn::File) -> String {
    let mut out = String::new();
    for item in &file.items {
        format_item(&mut out, item, 0);
    }
    out
}

fn format_item(out: &mut String, item: &Item, depth: usize) {
    let indent = depth * 4;
    match item {
        Item::Macro(m) if m.mac.path.is_ident(SERVICE_MARKER) => {
            if let Ok(text) = syn::parse2::<syn::LitStr>(m.mac.tokens.clone()) {
                for line in text.value().lines() {
                    if !line.is_empty() {
                        out.push_str(&spaces(indent));
                        out.push_str(line);
                    }
                    out.push('\n');
                }
                return;
            }
        }
        Item::Struct(s) if s.generics.params.is_empty() && s.generics.where_clause.is_none() => {
            if let (Some(text), Fields::Named(fields)) = (attrs(&s.attrs, indent), &s.fields) {
                let mut body = String::new();
                let mut ok = vis(&s.vis).is_some();
                for field in &fields.named {
                    let (Some(a), Some(v), Some(name), Some(ty)) = (
                        attrs(&field.attrs, indent + 4),
                        vis(&field.vis),
                        field.ident.as_ref(),
                        ty_of(&field.ty),
                    ) else {
                        ok = false;
                        break;
                    };
                    body.push_str(&a);
                    body.push_str(&field_line(indent + 4, &format!("{v}{name}:"), &ty));
                }
                if ok {
                    out.push_str(&text);
                    let v = vis(&s.vis).unwrap_or_default();
                    if fields.named.is_empty() {
                        out.push_str(&format!("{}{v}struct {} {{}}\n", spaces(indent), s.ident));
                    } else {
                        out.push_str(&format!(
                            "{}{v}struct {} {{\n{body}{}}}\n",
                            spaces(indent),
                            s.ident,
                            spaces(indent)
                        ));
                    }
                    return;
                }
            }
        }
        Item::Enum(e) if e.generics.params.is_empty() && e.generics.where_clause.is_none() => {
            if let (Some(text), Some(v)) = (attrs(&e.attrs, indent), vis(&e.vis)) {
                let mut body = String::new();
                let mut ok = true;
                let inner = indent + 4;
                for variant in &e.variants {
                    let Some(a) = attrs(&variant.attrs, inner) else {
                        ok = false;
                        break;
                    };
                    body.push_str(&a);
                    let name = variant.ident.to_string();
                    match (&variant.fields, &variant.discriminant) {
                        (Fields::Unit, None) => {
                            body.push_str(&format!("{}{name},\n", spaces(inner)))
                        }
                        (Fields::Unit, Some((_, expr))) => match discriminant(expr) {
                            Some(d) => body.push_str(&format!("{}{name} = {d},\n", spaces(inner))),
                            None => ok = false,
                        },
                        (Fields::Unnamed(f), None)
                            if f.unnamed.len() == 1 && f.unnamed[0].attrs.is_empty() =>
                        {
                            match ty_of(&f.unnamed[0].ty) {
                                Some(ty) => {
                                    let one =
                                        format!("{}{name}({}),", spaces(inner), ty.one_line());
                                    if one.len() <= MAX_WIDTH {
                                        body.push_str(&one);
                                        body.push('\n');
                                    } else {
                                        let ty = ty.layout(inner + 4, inner + 4, ",");
                                        body.push_str(&format!(
                                            "{}{name}(\n{}{ty}\n{}),\n",
                                            spaces(inner),
                                            spaces(inner + 4),
                                            spaces(inner)
                                        ));
                                    }
                                }
                                None => ok = false,
                            }
                        }
                        _ => ok = false,
                    }
                    if !ok {
                        break;
                    }
                }
                if ok {
                    out.push_str(&text);
                    if e.variants.is_empty() {
                        out.push_str(&format!("{}{v}enum {} {{}}\n", spaces(indent), e.ident));
                    } else {
                        out.push_str(&format!(
                            "{}{v}enum {} {{\n{body}{}}}\n",
                            spaces(indent),
                            e.ident,
                            spaces(indent)
                        ));
                    }
                    return;
                }
            }
        }
        Item::Mod(m) if m.unsafety.is_none() => {
            if let (Some(text), Some(v), Some((_, items))) =
                (attrs(&m.attrs, indent), vis(&m.vis), &m.content)
            {
                out.push_str(&text);
                if items.is_empty() {
                    out.push_str(&format!("{}{v}mod {} {{}}\n", spaces(indent), m.ident));
                } else {
                    out.push_str(&format!("{}{v}mod {} {{\n", spaces(indent), m.ident));
                    for item in items {
                        format_item(out, item, depth + 1);
                    }
                    out.push_str(&format!("{}}}\n", spaces(indent)));
                }
                return;
            }
        }
        _ => {}
    }
    out.push_str(&prettyplease_at(item.clone(), depth));
}

/// prettyplease's rendering of `item` as if nested `depth` modules deep (so its line breaks
/// account for the indentation), plus fixes for the few spots where rustfmt disagrees.
fn prettyplease_at(item: Item, depth: usize) -> String {
    let mut item = item;
    for _ in 0..depth {
        item = syn::parse_quote! { mod __nest { #item } };
    }
    let text = prettyplease::unparse(&syn::File {
        shebang: None,
        attrs: Vec::new(),
        items: vec![item],
    });
    let lines: Vec<&str> = text.lines().collect();
    let inner = if lines.len() >= 2 * depth {
        &lines[depth..lines.len() - depth]
    } else {
        &lines[..]
    };
    const ALLOW: &str = "Some(#[allow(deprecated)] ";
    let mut out = String::new();
    let mut i = 0;
    while i < inner.len() {
        let line = inner[i];
        i += 1;
        // prettyplease wraps a match arm body in a block from 90 columns on; rustfmt keeps
        // `pattern => body,` on one line while it fits in 100.
        if let (Some(head), Some(body), Some(close)) =
            (line.strip_suffix(" => {"), inner.get(i), inner.get(i + 1))
        {
            let indent = line.len() - line.trim_start().len();
            let body_text = body.trim_start();
            let joined = format!("{head} => {body_text},");
            if close.trim_start() == "}"
                && close.len() - 1 == indent
                && body.len() - body_text.len() == indent + 4
                && !body_text.ends_with(';')
                && !body_text.ends_with('{')
                && (joined.len() <= MAX_WIDTH || body_text.starts_with(ALLOW))
            {
                out.push_str(&joined);
                out.push('\n');
                i += 2;
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    // prost-build marks deprecated enum values in `from_str_name`; rustfmt puts an attribute
    // on an expression on a line of its own.
    let joined = std::mem::take(&mut out);
    for line in joined.lines() {
        if let Some(pos) = line.find(ALLOW).filter(|_| line.ends_with("),")) {
            let indent = line.len() - line.trim_start().len();
            let value = &line[pos + ALLOW.len()..line.len() - 2];
            out.push_str(&line[..pos]);
            out.push_str("Some(\n");
            out.push_str(&format!("{}#[allow(deprecated)]\n", spaces(indent + 4)));
            out.push_str(&format!("{}{value},\n", spaces(indent + 4)));
            out.push_str(&format!("{}),\n", spaces(indent)));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `vis name: Type,` with rustfmt's choice between one line, the type on the next line, and
/// the type's generic arguments one per line.
fn field_line(indent: usize, lead: &str, ty: &Ty) -> String {
    let pad = spaces(indent);
    let one = ty.one_line();
    let same_line = format!("{pad}{lead} {one},");
    let next_line = format!("{}{one},", spaces(indent + 4));
    if same_line.len() <= MAX_WIDTH {
        format!("{same_line}\n")
    } else if next_line.len() <= MAX_WIDTH {
        format!("{pad}{lead}\n{}{one},\n", spaces(indent + 4))
    } else {
        format!(
            "{pad}{lead} {}\n",
            ty.layout(indent, indent + lead.len() + 1, ",")
        )
    }
}

fn vis(v: &Visibility) -> Option<String> {
    match v {
        Visibility::Public(_) => Some("pub ".to_string()),
        Visibility::Inherited => Some(String::new()),
        Visibility::Restricted(r) if r.in_token.is_none() => {
            Some(format!("pub({}) ", path_str(&r.path)?))
        }
        Visibility::Restricted(_) => None,
    }
}

fn discriminant(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => Some(i.to_string()),
            _ => None,
        },
        Expr::Unary(u) if matches!(u.op, syn::UnOp::Neg(_)) => {
            Some(format!("-{}", discriminant(&u.expr)?))
        }
        _ => None,
    }
}

/// A path without generic arguments: `::prost::Message`.
fn path_str(path: &syn::Path) -> Option<String> {
    let mut s = String::new();
    if path.leading_colon.is_some() {
        s.push_str("::");
    }
    for (i, seg) in path.segments.iter().enumerate() {
        if !seg.arguments.is_none() {
            return None;
        }
        if i > 0 {
            s.push_str("::");
        }
        s.push_str(&seg.ident.to_string());
    }
    Some(s)
}

/// A field type as a layout tree (`None` for shapes this printer does not know).
fn ty_of(ty: &Type) -> Option<Ty> {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            let path = &p.path;
            let mut head = String::new();
            if path.leading_colon.is_some() {
                head.push_str("::");
            }
            let last = path.segments.len().checked_sub(1)?;
            for (i, seg) in path.segments.iter().enumerate() {
                if i > 0 {
                    head.push_str("::");
                }
                head.push_str(&seg.ident.to_string());
                match &seg.arguments {
                    syn::PathArguments::None => {}
                    syn::PathArguments::AngleBracketed(a)
                        if i == last && a.colon2_token.is_none() =>
                    {
                        let mut args = Vec::new();
                        for arg in &a.args {
                            match arg {
                                syn::GenericArgument::Type(t) => args.push(ty_of(t)?),
                                _ => return None,
                            }
                        }
                        return Some(Ty::generic(head, args));
                    }
                    _ => return None,
                }
            }
            Some(Ty::Leaf(head))
        }
        Type::Tuple(t) if t.elems.is_empty() => Some(Ty::leaf("()")),
        Type::Reference(r) if r.mutability.is_none() => {
            let inner = ty_of(&r.elem)?.one_line();
            Some(match &r.lifetime {
                Some(l) => Ty::Leaf(format!("&{l} {inner}")),
                None => Ty::Leaf(format!("&{inner}")),
            })
        }
        Type::Slice(s) => Some(Ty::Leaf(format!("[{}]", ty_of(&s.elem)?.one_line()))),
        _ => None,
    }
}

/// Outer attributes, one or more lines each, in rustfmt's layout; `None` for an attribute
/// this printer does not know (the caller then falls back to prettyplease).
fn attrs(attrs: &[Attribute], indent: usize) -> Option<String> {
    let pad = spaces(indent);
    let mut out = String::new();
    for attr in attrs {
        if !matches!(attr.style, syn::AttrStyle::Outer) {
            return None;
        }
        match &attr.meta {
            Meta::NameValue(nv) if nv.path.is_ident("doc") => {
                let Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(s), ..
                }) = &nv.value
                else {
                    return None;
                };
                let doc = s.value();
                if doc.contains('\n') || doc.contains('\r') || doc.starts_with('/') {
                    return None;
                }
                out.push_str(&format!("{pad}///{}\n", doc.trim_end_matches(' ')));
            }
            Meta::Path(p) => out.push_str(&format!("{pad}#[{}]\n", path_str(p)?)),
            Meta::NameValue(nv) => out.push_str(&format!(
                "{pad}#[{} = {}]\n",
                path_str(&nv.path)?,
                expr_str(&nv.value)?
            )),
            Meta::List(list) => {
                if !matches!(list.delimiter, syn::MacroDelimiter::Paren(_)) {
                    return None;
                }
                let name = path_str(&list.path)?;
                if name == "derive" {
                    let paths: Punctuated<syn::Path, Token![,]> =
                        list.parse_args_with(Punctuated::parse_terminated).ok()?;
                    let items: Vec<String> = paths.iter().map(path_str).collect::<Option<_>>()?;
                    let one = format!("{pad}#[derive({})]", items.join(", "));
                    // Measured: rustfmt keeps a derive on one line up to 96 columns.
                    if one.len() + 4 <= MAX_WIDTH {
                        out.push_str(&one);
                        out.push('\n');
                    } else {
                        // Mixed layout: as many per line as fit, trailing comma.
                        out.push_str(&format!("{pad}#[derive(\n"));
                        let inner = spaces(indent + 4);
                        let mut line = String::new();
                        for item in &items {
                            let piece = format!("{item},");
                            if !line.is_empty()
                                && inner.len() + line.len() + 1 + piece.len() > MAX_WIDTH
                            {
                                out.push_str(&format!("{inner}{line}\n"));
                                line.clear();
                            }
                            if !line.is_empty() {
                                line.push(' ');
                            }
                            line.push_str(&piece);
                        }
                        out.push_str(&format!("{inner}{line}\n{pad})]\n"));
                    }
                } else {
                    let metas: Punctuated<Meta, Token![,]> =
                        list.parse_args_with(Punctuated::parse_terminated).ok()?;
                    let items: Vec<String> = metas.iter().map(meta_str).collect::<Option<_>>()?;
                    let args = items.join(", ");
                    let one = format!("{pad}#[{name}({args})]");
                    if args.len() <= ATTR_FN_LIKE_WIDTH && one.len() <= MAX_WIDTH {
                        out.push_str(&one);
                        out.push('\n');
                    } else {
                        out.push_str(&format!("{pad}#[{name}(\n"));
                        let inner = spaces(indent + 4);
                        let last = items.len().saturating_sub(1);
                        for (i, item) in items.iter().enumerate() {
                            let comma = if i == last { "" } else { "," };
                            out.push_str(&format!("{inner}{item}{comma}\n"));
                        }
                        out.push_str(&format!("{pad})]\n"));
                    }
                }
            }
        }
    }
    Some(out)
}

/// One meta item on one line: `tag = "1"`, `optional`, `allow(clippy::x)`.
fn meta_str(meta: &Meta) -> Option<String> {
    match meta {
        Meta::Path(p) => path_str(p),
        Meta::NameValue(nv) => Some(format!(
            "{} = {}",
            path_str(&nv.path)?,
            expr_str(&nv.value)?
        )),
        Meta::List(list) => {
            let metas: Punctuated<Meta, Token![,]> =
                list.parse_args_with(Punctuated::parse_terminated).ok()?;
            let items: Vec<String> = metas.iter().map(meta_str).collect::<Option<_>>()?;
            Some(format!("{}({})", path_str(&list.path)?, items.join(", ")))
        }
    }
}

fn expr_str(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Lit(l) => Some(quote::ToTokens::to_token_stream(&l.lit).to_string()),
        _ => None,
    }
}
