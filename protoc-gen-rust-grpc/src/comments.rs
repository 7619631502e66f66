//! Rebuilds protoc's `SourceCodeInfo` comments from `.proto` text for the build.rs path.
//!
//! protobuf-parse's pure parser does not record comments, so this module re-implements
//! protoc's attachment rules (`Tokenizer::NextWithComments` and the parser's
//! `ConsumeEndOfDeclaration`): after every `;`, `{` and `}` that ends a declaration, the
//! comments up to the next token are split into trailing (of the declaration just ended),
//! detached, and leading (of the next declaration). Only the locations prost-build reads
//! are produced: messages, fields, oneofs, enums, enum values, services and methods, with
//! their leading and trailing comments. Spans are not recorded.

use prost_types::source_code_info::Location;
use prost_types::SourceCodeInfo;

#[derive(Debug)]
struct Tok {
    text: String,
    start: usize,
    end: usize,
    /// Line of the token's last character (0-based).
    line: usize,
}

/// Builds the comment locations of one `.proto` file. Never fails: text the walker does not
/// understand simply yields fewer comments (the real parse already validated the file).
pub(crate) fn source_code_info(source: &str) -> SourceCodeInfo {
    let toks = tokenize(source);
    let mut walker = Walker {
        src: source,
        toks,
        i: 0,
        upcoming: String::new(),
        locations: Vec::new(),
    };
    let (_, _, leading) = gap_comments(source, None, walker.toks.first());
    walker.upcoming = leading;
    walker.file();
    SourceCodeInfo {
        location: walker.locations,
    }
}

/// Adds an empty location for every element prost-build looks up but the walker did not
/// record (prost-build expects protoc's complete source info), and sorts by path.
pub(crate) fn complete(info: &mut SourceCodeInfo, file: &prost_types::FileDescriptorProto) {
    use std::collections::HashSet;
    let mut paths: Vec<Vec<i32>> = Vec::new();
    fn message(paths: &mut Vec<Vec<i32>>, path: Vec<i32>, m: &prost_types::DescriptorProto) {
        for i in 0..m.field.len() {
            paths.push([&path[..], &[2, i as i32]].concat());
        }
        for (i, n) in m.nested_type.iter().enumerate() {
            message(paths, [&path[..], &[3, i as i32]].concat(), n);
        }
        for (i, e) in m.enum_type.iter().enumerate() {
            enumeration(paths, [&path[..], &[4, i as i32]].concat(), e);
        }
        for i in 0..m.oneof_decl.len() {
            paths.push([&path[..], &[8, i as i32]].concat());
        }
        paths.push(path);
    }
    fn enumeration(
        paths: &mut Vec<Vec<i32>>,
        path: Vec<i32>,
        e: &prost_types::EnumDescriptorProto,
    ) {
        for i in 0..e.value.len() {
            paths.push([&path[..], &[2, i as i32]].concat());
        }
        paths.push(path);
    }
    for (i, m) in file.message_type.iter().enumerate() {
        message(&mut paths, vec![4, i as i32], m);
    }
    for (i, e) in file.enum_type.iter().enumerate() {
        enumeration(&mut paths, vec![5, i as i32], e);
    }
    for (i, s) in file.service.iter().enumerate() {
        for j in 0..s.method.len() {
            paths.push(vec![6, i as i32, 2, j as i32]);
        }
        paths.push(vec![6, i as i32]);
    }
    let valid: HashSet<Vec<i32>> = paths.iter().cloned().collect();
    // Drop anything the walker mis-numbered, then fill the gaps.
    info.location.retain(|l| valid.contains(&l.path));
    let mut have: HashSet<Vec<i32>> = HashSet::new();
    info.location.retain(|l| have.insert(l.path.clone()));
    for path in paths {
        if !have.contains(&path) {
            info.location.push(Location {
                path,
                ..Default::default()
            });
        }
    }
    info.location.sort_by(|a, b| a.path.cmp(&b.path));
}

fn tokenize(src: &str) -> Vec<Tok> {
    let bytes = src.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    let mut line = 0;
    // Skip a UTF-8 byte order mark.
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        i = 3;
    }
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if bytes[i..].starts_with(b"//") {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if bytes[i..].starts_with(b"/*") {
            i += 2;
            while i < bytes.len() && !bytes[i..].starts_with(b"*/") {
                if bytes[i] == b'\n' {
                    line += 1;
                }
                i += 1;
            }
            i = (i + 2).min(bytes.len());
        } else {
            let start = i;
            if c == b'"' || c == b'\'' {
                i += 1;
                while i < bytes.len() && bytes[i] != c && bytes[i] != b'\n' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i = (i + 1).min(bytes.len());
            } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || bytes[i] >= 0x80
                        || (bytes[i] == b'.' && bytes[start].is_ascii_digit()))
                {
                    i += 1;
                }
            } else {
                i += 1;
            }
            // Keep slicing on char boundaries.
            while i < bytes.len() && !src.is_char_boundary(i) {
                i += 1;
            }
            toks.push(Tok {
                text: src[start..i].to_string(),
                start,
                end: i,
                line,
            });
        }
    }
    toks
}

/// protoc's `CommentCollector`.
#[derive(Default)]
struct Collector {
    buffer: String,
    has_comment: bool,
    is_line_comment: bool,
    can_attach_to_prev: bool,
    trailing: String,
    has_trailing: bool,
    detached: Vec<String>,
    num_comments: usize,
}

impl Collector {
    fn buffer_for_line_comment(&mut self) -> &mut String {
        if self.has_comment && !self.is_line_comment {
            self.flush();
        }
        self.has_comment = true;
        self.is_line_comment = true;
        &mut self.buffer
    }

    fn buffer_for_block_comment(&mut self) -> &mut String {
        if self.has_comment {
            self.flush();
        }
        self.has_comment = true;
        self.is_line_comment = false;
        &mut self.buffer
    }

    fn clear_buffer(&mut self) {
        self.buffer.clear();
        self.has_comment = false;
    }

    fn flush(&mut self) {
        if self.has_comment {
            if self.can_attach_to_prev {
                self.trailing.push_str(&self.buffer);
                self.has_trailing = true;
                self.can_attach_to_prev = false;
            } else {
                self.detached.push(self.buffer.clone());
            }
            self.clear_buffer();
            self.num_comments += 1;
        }
    }

    fn maybe_detach_comment(&mut self) {
        let count = self.num_comments + usize::from(self.has_comment);
        if count == 1 {
            if self.has_trailing {
                let trail = std::mem::take(&mut self.trailing);
                self.detached.insert(0, trail);
            }
            self.can_attach_to_prev = false;
            self.flush();
        }
    }

    fn finish(self) -> (String, Vec<String>, String) {
        let leading = if self.has_comment {
            self.buffer
        } else {
            String::new()
        };
        (self.trailing, self.detached, leading)
    }
}

/// A cursor over the whitespace and comments between two tokens.
struct Gap<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
    line: usize,
}

enum CommentStart {
    Line,
    Block,
    None,
}

impl Gap<'_> {
    fn peek(&self) -> Option<u8> {
        (self.pos < self.end).then(|| self.bytes[self.pos])
    }

    fn bump(&mut self) {
        if self.peek() == Some(b'\n') {
            self.line += 1;
        }
        self.pos += 1;
    }

    fn try_consume(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn skip_ws_no_newline(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r' | 0x0b | 0x0c)) {
            self.bump();
        }
    }

    fn comment_start(&mut self) -> CommentStart {
        if self.bytes[self.pos..self.end].starts_with(b"//") {
            self.pos += 2;
            CommentStart::Line
        } else if self.bytes[self.pos..self.end].starts_with(b"/*") {
            self.pos += 2;
            CommentStart::Block
        } else {
            CommentStart::None
        }
    }

    fn text(&self, from: usize, to: usize) -> String {
        String::from_utf8_lossy(&self.bytes[from..to]).into_owned()
    }

    fn line_comment(&mut self, out: &mut String) {
        let start = self.pos;
        while self.peek().is_some_and(|c| c != b'\n') {
            self.bump();
        }
        self.try_consume(b'\n');
        out.push_str(&self.text(start, self.pos));
    }

    fn block_comment(&mut self, out: &mut String) {
        let mut start = self.pos;
        loop {
            while self
                .peek()
                .is_some_and(|c| c != b'*' && c != b'/' && c != b'\n')
            {
                self.bump();
            }
            if self.try_consume(b'\n') {
                out.push_str(&self.text(start, self.pos));
                self.skip_ws_no_newline();
                if self.try_consume(b'*') && self.try_consume(b'/') {
                    break;
                }
                start = self.pos;
            } else if self.try_consume(b'*') {
                if self.try_consume(b'/') {
                    out.push_str(&self.text(start, self.pos - 2));
                    break;
                }
            } else if self.try_consume(b'/') {
                // "/*" inside a block comment: protoc reports an error; keep going.
            } else {
                // End of the gap (unterminated comment).
                out.push_str(&self.text(start, self.pos));
                break;
            }
        }
    }
}

/// protoc's `NextWithComments` over the gap after `prev` (None: start of file) up to `next`.
/// Returns (trailing comments of prev, detached comments, leading comments of next).
fn gap_comments(
    src: &str,
    prev: Option<&Tok>,
    next: Option<&Tok>,
) -> (String, Vec<String>, String) {
    let bytes = src.as_bytes();
    let mut start = prev.map_or(0, |t| t.end);
    if prev.is_none() && bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        start = 3;
    }
    let end = next.map_or(bytes.len(), |t| t.start);
    let prev_line = prev.map_or(0, |t| t.line);
    let mut gap = Gap {
        bytes,
        pos: start,
        end,
        line: prev_line,
    };
    let mut c = Collector {
        can_attach_to_prev: true,
        ..Default::default()
    };
    let mut trailing_end_line = None;

    if prev.is_none() {
        c.can_attach_to_prev = false;
    } else {
        gap.skip_ws_no_newline();
        match gap.comment_start() {
            CommentStart::Line => {
                trailing_end_line = Some(gap.line);
                let mut buf = std::mem::take(c.buffer_for_line_comment());
                gap.line_comment(&mut buf);
                c.buffer = buf;
                c.flush();
            }
            CommentStart::Block => {
                let mut buf = std::mem::take(c.buffer_for_block_comment());
                gap.block_comment(&mut buf);
                c.buffer = buf;
                trailing_end_line = Some(gap.line);
                gap.skip_ws_no_newline();
                if !gap.try_consume(b'\n') {
                    return (String::new(), Vec::new(), String::new());
                }
                c.flush();
            }
            CommentStart::None => {
                if !gap.try_consume(b'\n') {
                    return (String::new(), Vec::new(), String::new());
                }
            }
        }
    }

    loop {
        gap.skip_ws_no_newline();
        match gap.comment_start() {
            CommentStart::Line => {
                let mut buf = std::mem::take(c.buffer_for_line_comment());
                gap.line_comment(&mut buf);
                c.buffer = buf;
            }
            CommentStart::Block => {
                let mut buf = std::mem::take(c.buffer_for_block_comment());
                gap.block_comment(&mut buf);
                c.buffer = buf;
                gap.skip_ws_no_newline();
                gap.try_consume(b'\n');
            }
            CommentStart::None => {
                if gap.try_consume(b'\n') {
                    c.flush();
                    c.can_attach_to_prev = false;
                } else if gap.pos < gap.end && !matches!(gap.peek(), Some(b'/')) {
                    // Stray whitespace we do not classify (e.g. form feed handled above);
                    // step over it.
                    gap.bump();
                } else {
                    let result = next.is_some();
                    if !result || next.is_some_and(|t| matches!(t.text.as_str(), "}" | "]" | ")")) {
                        c.flush();
                    }
                    if let Some(next) = next {
                        if prev.is_some()
                            && (prev_line == next.line || trailing_end_line == Some(next.line))
                        {
                            c.maybe_detach_comment();
                        }
                    }
                    return c.finish();
                }
            }
        }
    }
}

struct Walker<'a> {
    src: &'a str,
    toks: Vec<Tok>,
    i: usize,
    upcoming: String,
    locations: Vec<Location>,
}

impl Walker<'_> {
    fn cur(&self) -> Option<&str> {
        self.toks.get(self.i).map(|t| t.text.as_str())
    }

    fn peek(&self, n: usize) -> Option<&str> {
        self.toks.get(self.i + n).map(|t| t.text.as_str())
    }

    fn bump(&mut self) {
        self.i += 1;
    }

    /// The current token ends a declaration: collect comments, attach to `path`.
    fn end_decl(&mut self, path: Option<Vec<i32>>) {
        let (trailing, _detached, leading) =
            gap_comments(self.src, self.toks.get(self.i), self.toks.get(self.i + 1));
        let prev_leading = std::mem::replace(&mut self.upcoming, leading);
        if let Some(path) = path {
            if !prev_leading.is_empty() || !trailing.is_empty() {
                self.locations.push(Location {
                    path,
                    span: Vec::new(),
                    leading_comments: (!prev_leading.is_empty()).then_some(prev_leading),
                    trailing_comments: (!trailing.is_empty()).then_some(trailing),
                    leading_detached_comments: Vec::new(),
                });
            }
        }
        self.i += 1;
    }

    /// Skips a balanced `{ ... }` aggregate option value (not declarations).
    fn skip_aggregate(&mut self) {
        let mut depth = 0usize;
        while let Some(t) = self.cur() {
            match t {
                "{" => depth += 1,
                "}" => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        self.bump();
                        return;
                    }
                }
                _ => {}
            }
            self.bump();
        }
    }

    /// Skips to the `;` ending a simple statement and ends the declaration there.
    fn statement(&mut self, path: Option<Vec<i32>>) {
        while let Some(t) = self.cur() {
            match t {
                ";" => {
                    self.end_decl(path);
                    return;
                }
                "{" => self.skip_aggregate(),
                "}" => return, // malformed; let the caller close the block
                _ => self.bump(),
            }
        }
    }

    /// Advances to the `{` opening a block (after `message Name`, `oneof x`, ...).
    fn seek_block_open(&mut self) -> bool {
        while let Some(t) = self.cur() {
            match t {
                "{" => return true,
                ";" | "}" => return false,
                _ => self.bump(),
            }
        }
        false
    }

    fn file(&mut self) {
        let (mut messages, mut enums, mut services) = (0, 0, 0);
        while let Some(t) = self.cur() {
            match t {
                "message" => {
                    self.message(vec![4, messages]);
                    messages += 1;
                }
                "enum" => {
                    self.enumeration(vec![5, enums]);
                    enums += 1;
                }
                "service" => {
                    self.service(vec![6, services]);
                    services += 1;
                }
                "extend" => self.extend(),
                ";" => self.end_decl(None),
                "}" => self.end_decl(None),
                _ => self.statement(None),
            }
        }
    }

    fn message(&mut self, path: Vec<i32>) {
        if !self.seek_block_open() {
            self.statement(None);
            return;
        }
        self.end_decl(Some(path.clone()));
        self.message_body(&path);
    }

    fn message_body(&mut self, path: &[i32]) {
        let (mut fields, mut nested, mut enums, mut oneofs) = (0, 0, 0, 0);
        let sub = |a: i32, b: i32| {
            let mut p = path.to_vec();
            p.extend([a, b]);
            p
        };
        self.block(|w| match w.cur() {
            Some("message") => {
                w.message(sub(3, nested));
                nested += 1;
            }
            Some("enum") => {
                w.enumeration(sub(4, enums));
                enums += 1;
            }
            Some("extend") => w.extend(),
            Some("option" | "reserved" | "extensions") => w.statement(None),
            Some("oneof") => {
                let oneof_path = sub(8, oneofs);
                oneofs += 1;
                if !w.seek_block_open() {
                    w.statement(None);
                    return;
                }
                w.end_decl(Some(oneof_path));
                w.block(|w| match w.cur() {
                    Some("option") => w.statement(None),
                    _ => {
                        if w.field(sub(2, fields), sub(3, nested)) {
                            nested += 1;
                        }
                        fields += 1;
                    }
                });
            }
            Some("map") if w.peek(1) == Some("<") => {
                w.statement(Some(sub(2, fields)));
                fields += 1;
                nested += 1;
            }
            _ => {
                if w.field(sub(2, fields), sub(3, nested)) {
                    nested += 1;
                }
                fields += 1;
            }
        });
    }

    /// One field declaration at `field_path`; a group is a field plus the nested message at
    /// `group_path`. Returns whether it was a group.
    fn field(&mut self, field_path: Vec<i32>, group_path: Vec<i32>) -> bool {
        if self.is_group() {
            self.group(field_path, group_path);
            true
        } else {
            self.statement(Some(field_path));
            false
        }
    }

    /// Walks the declarations of a `{ ... }` body whose `{` was just consumed, through its
    /// closing `}`: empty statements (`;`) end a declaration, anything else is handed to
    /// `item`, which consumes one declaration.
    fn block(&mut self, mut item: impl FnMut(&mut Self)) {
        while let Some(t) = self.cur() {
            match t {
                "}" => {
                    self.end_decl(None);
                    return;
                }
                ";" => self.end_decl(None),
                _ => item(self),
            }
        }
    }

    /// `[label] group Name = N [options] { ... }`
    fn is_group(&self) -> bool {
        let label = matches!(self.cur(), Some("optional" | "required" | "repeated"));
        let at = usize::from(label);
        self.peek(at) == Some("group")
            && self
                .peek(at + 1)
                .is_some_and(|n| n.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
            && self.peek(at + 2) == Some("=")
    }

    fn group(&mut self, _field_path: Vec<i32>, message_path: Vec<i32>) {
        // protoc attaches the group's comments to the nested message.
        while let Some(t) = self.cur() {
            match t {
                "{" => {
                    self.end_decl(Some(message_path.clone()));
                    self.message_body(&message_path);
                    return;
                }
                "[" => {
                    while let Some(t) = self.cur() {
                        if t == "]" {
                            self.bump();
                            break;
                        }
                        if t == "{" {
                            self.skip_aggregate();
                        } else {
                            self.bump();
                        }
                    }
                }
                ";" | "}" => return,
                _ => self.bump(),
            }
        }
    }

    fn extend(&mut self) {
        if !self.seek_block_open() {
            self.statement(None);
            return;
        }
        self.end_decl(None);
        self.block(|w| w.statement(None));
    }

    fn enumeration(&mut self, path: Vec<i32>) {
        if !self.seek_block_open() {
            self.statement(None);
            return;
        }
        self.end_decl(Some(path.clone()));
        let mut values = 0;
        self.block(|w| match w.cur() {
            Some("option" | "reserved") => w.statement(None),
            _ => {
                let mut p = path.clone();
                p.extend([2, values]);
                values += 1;
                w.statement(Some(p));
            }
        });
    }

    fn service(&mut self, path: Vec<i32>) {
        if !self.seek_block_open() {
            self.statement(None);
            return;
        }
        self.end_decl(Some(path.clone()));
        let mut methods = 0;
        self.block(|w| match w.cur() {
            Some("rpc") => {
                let mut p = path.clone();
                p.extend([2, methods]);
                methods += 1;
                w.rpc(p);
            }
            _ => w.statement(None),
        });
    }

    /// `rpc Name (...) returns (...);` or with an options body `{ ... }`.
    fn rpc(&mut self, path: Vec<i32>) {
        while let Some(t) = self.cur() {
            match t {
                ";" => {
                    self.end_decl(Some(path));
                    return;
                }
                "{" => {
                    self.end_decl(Some(path));
                    self.block(|w| w.statement(None));
                    return;
                }
                "}" => return,
                _ => self.bump(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(info: &'a SourceCodeInfo, path: &[i32]) -> Option<&'a Location> {
        info.location.iter().find(|l| l.path == path)
    }

    #[test]
    fn attaches_like_protoc() {
        let src = "syntax = \"proto3\";\n\n// Leading for M.\nmessage M { // trailing M\n  // lead a\n  int32 a = 1; // trail a\n  int32 b = 2;\n  // trail b\n\n  /* block\n   * c */\n  map<string, int32> c = 3;\n  message N {}\n}\n";
        let info = source_code_info(src);
        let m = find(&info, &[4, 0]).unwrap();
        assert_eq!(m.leading_comments.as_deref(), Some(" Leading for M.\n"));
        assert_eq!(m.trailing_comments.as_deref(), Some(" trailing M\n"));
        let a = find(&info, &[4, 0, 2, 0]).unwrap();
        assert_eq!(a.leading_comments.as_deref(), Some(" lead a\n"));
        assert_eq!(a.trailing_comments.as_deref(), Some(" trail a\n"));
        let b = find(&info, &[4, 0, 2, 1]).unwrap();
        assert_eq!(b.trailing_comments.as_deref(), Some(" trail b\n"));
        let c = find(&info, &[4, 0, 2, 2]).unwrap();
        assert_eq!(c.leading_comments.as_deref(), Some(" block\n c "));
        assert!(find(&info, &[4, 0, 3, 1]).is_none());
    }
}
