//! The part of containerd's filter language the snapshots API's `List` is called with:
//! `field==value`, `field!=value` and a bare `field` (present, not empty), joined by `,` (all must
//! hold); several filters in one request match when any of them does. Fields: `name`, `parent`,
//! `kind` and `labels.KEY`, a field or value quoted with `"` when it holds other characters
//! (`labels."containerd.io/snapshot.ref"==sha256:…`). Regular expressions (`~=`) are refused
//! with a clear error rather than ignored.

use crate::proto::{Info, Kind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Present,
    Eq(String),
    Ne(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    /// `name`, `parent`, `kind`, or `labels` followed by the key.
    pub path: Vec<String>,
    pub op: Op,
}

/// One filter: conditions that must all hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Filter(pub Vec<Cond>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("filter {filter:?} at byte {at}: {reason}")]
pub struct FilterError {
    pub filter: String,
    pub at: usize,
    pub reason: String,
}

fn bare(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn err(&self, reason: impl Into<String>) -> FilterError {
        FilterError {
            filter: self.src.to_string(),
            at: self.pos,
            reason: reason.into(),
        }
    }
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }
    fn eat(&mut self, s: &str) -> bool {
        if self.src[self.pos..].starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }
    fn skip_space(&mut self) {
        while let Some(c) = self.peek().filter(|c| c.is_whitespace()) {
            self.pos += c.len_utf8();
        }
    }
    fn quoted(&mut self) -> Result<String, FilterError> {
        debug_assert_eq!(self.peek(), Some('"'));
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self.peek().ok_or_else(|| self.err("unterminated quoted string"))?;
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let e = self.peek().ok_or_else(|| self.err("unterminated escape"))?;
                    self.pos += e.len_utf8();
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '"' | '\\' | '/' => e,
                        _ => return Err(self.err(format!("unknown escape \\{e}"))),
                    });
                }
                c => out.push(c),
            }
        }
    }
    fn field(&mut self) -> Result<String, FilterError> {
        match self.peek() {
            Some('"') => self.quoted(),
            Some(c) if bare(c) => {
                let start = self.pos;
                while self.peek().is_some_and(bare) {
                    self.pos += 1;
                }
                Ok(self.src[start..self.pos].to_string())
            }
            Some(c) => Err(self.err(format!("expected a field name, found {c:?}"))),
            None => Err(self.err("expected a field name, found the end")),
        }
    }
    /// A value: quoted, or everything up to the next `,` (spaces around it trimmed).
    fn value(&mut self) -> Result<String, FilterError> {
        self.skip_space();
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let start = self.pos;
        while self.peek().is_some_and(|c| c != ',') {
            self.pos += self.peek().expect("checked").len_utf8();
        }
        let v = self.src[start..self.pos].trim();
        if v.is_empty() {
            return Err(self.err("expected a value"));
        }
        if v.contains('"') {
            return Err(self.err("a quote inside an unquoted value"));
        }
        Ok(v.to_string())
    }
}

impl Filter {
    pub fn parse(src: &str) -> Result<Filter, FilterError> {
        let mut lx = Lexer { src, pos: 0 };
        let mut conds = Vec::new();
        lx.skip_space();
        if lx.peek().is_none() {
            return Ok(Filter(conds));
        }
        loop {
            lx.skip_space();
            let mut path = vec![lx.field()?];
            while lx.eat(".") {
                path.push(lx.field()?);
            }
            lx.skip_space();
            let op = if lx.eat("==") {
                Op::Eq(lx.value()?)
            } else if lx.eat("!=") {
                Op::Ne(lx.value()?)
            } else if lx.eat("~=") {
                return Err(lx.err("regular expressions (~=) are not supported by this snapshotter"));
            } else {
                Op::Present
            };
            let cond = Cond { path, op };
            check_field(&cond.path).map_err(|r| lx.err(r))?;
            conds.push(cond);
            lx.skip_space();
            match lx.peek() {
                None => return Ok(Filter(conds)),
                Some(',') => lx.pos += 1,
                Some(c) => return Err(lx.err(format!("expected ',' or the end, found {c:?}"))),
            }
        }
    }

    pub fn matches(&self, info: &Info) -> bool {
        self.0.iter().all(|c| {
            let got = field_of(info, &c.path);
            match &c.op {
                Op::Present => got.is_some_and(|v| !v.is_empty()),
                Op::Eq(v) => got.as_deref() == Some(v.as_str()),
                Op::Ne(v) => got.as_deref() != Some(v.as_str()),
            }
        })
    }
}

fn check_field(path: &[String]) -> Result<(), String> {
    match path[0].as_str() {
        "name" | "parent" | "kind" if path.len() == 1 => Ok(()),
        "labels" if path.len() > 1 => Ok(()),
        "labels" => Err("labels needs a key (labels.KEY)".into()),
        f => Err(format!(
            "unknown field {f:?} (snapshots are filtered by name, parent, kind and labels.KEY)"
        )),
    }
}

fn field_of(info: &Info, path: &[String]) -> Option<String> {
    match path[0].as_str() {
        "name" => Some(info.name.clone()),
        "parent" => Some(info.parent.clone()),
        "kind" => Some(
            match Kind::try_from(info.kind).unwrap_or(Kind::Unknown) {
                Kind::View => "view",
                Kind::Active => "active",
                Kind::Committed => "committed",
                Kind::Unknown => "unknown",
            }
            .to_string(),
        ),
        "labels" => info.labels.get(&path[1..].join(".")).cloned(),
        _ => None,
    }
}

/// Whether `info` passes a request's filters (none: everything; several: any of them).
pub fn any_matches(filters: &[Filter], info: &Info) -> bool {
    filters.is_empty() || filters.iter().any(|f| f.matches(info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn info(name: &str, parent: &str, kind: Kind, labels: &[(&str, &str)]) -> Info {
        Info {
            name: name.into(),
            parent: parent.into(),
            kind: kind as i32,
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn containerds_target_walk_filter() {
        // What containerd's metadata layer sends after a remote snapshotter's ALREADY_EXISTS.
        let f = Filter::parse(r#"labels."containerd.io/snapshot.ref"==sha256:abc,parent=="ns/1/p q""#).unwrap();
        let hit = info(
            "sha256:abc",
            "ns/1/p q",
            Kind::Committed,
            &[("containerd.io/snapshot.ref", "sha256:abc")],
        );
        assert!(f.matches(&hit));
        let other_parent = info(
            "x",
            "ns/2/p",
            Kind::Committed,
            &[("containerd.io/snapshot.ref", "sha256:abc")],
        );
        assert!(!f.matches(&other_parent));
        let no_label = info("x", "ns/1/p q", Kind::Committed, &[]);
        assert!(!f.matches(&no_label));
    }

    #[test]
    fn operators_kinds_and_bare_labels() {
        let i = info("k", "", Kind::Active, &[("a.b", "1")]);
        assert!(Filter::parse("kind==active").unwrap().matches(&i));
        assert!(!Filter::parse("kind!=active").unwrap().matches(&i));
        assert!(Filter::parse("labels.a.b==1, name").unwrap().matches(&i));
        assert!(
            !Filter::parse("parent").unwrap().matches(&i),
            "an empty parent is not present"
        );
        assert!(Filter::parse("").unwrap().matches(&i));
        let fs = [Filter::parse("name==x").unwrap(), Filter::parse("name==k").unwrap()];
        assert!(any_matches(&fs, &i));
        assert!(!any_matches(&fs[..1], &i));
    }

    #[test]
    fn bad_filters_say_where() {
        for (src, want) in [
            ("name~=x", "regular expressions"),
            ("size==3", "unknown field \"size\""),
            ("labels==x", "labels needs a key"),
            ("name==", "expected a value"),
            ("labels.\"x==1", "unterminated"),
            ("name==\"a\"b", "expected ','"),
            (",", "expected a field name"),
        ] {
            let e = Filter::parse(src).unwrap_err();
            assert!(e.to_string().contains(want), "{src}: {e}");
        }
    }

    proptest! {
        #[test]
        fn quoted_values_round_trip(key in "[ -~]{1,20}", val in "[ -~]{0,20}") {
            let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
            let src = format!("labels.{}=={}", q(&key), q(&val));
            let f = Filter::parse(&src).unwrap();
            prop_assert_eq!(&f.0[0].path, &vec!["labels".to_string(), key.clone()]);
            prop_assert_eq!(&f.0[0].op, &Op::Eq(val.clone()));
        }

        #[test]
        fn never_panics(src in ".{0,40}") {
            let _ = Filter::parse(&src);
        }
    }
}
