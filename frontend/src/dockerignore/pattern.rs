//! One `.dockerignore` pattern: Go's `filepath.Clean`, the syntax check of Go's
//! `filepath.Match`, and matching with moby/patternmatcher's semantics.
//!
//! Responsible for: turning one cleaned pattern into a matcher, answering "does it match
//! this path or one of its parent directories" and "could it match anything below this
//! directory". Not responsible for: reading the file, `!` exceptions or rule order (see the
//! parent module).
//!
//! # How patternmatcher matches, and how this mirrors it
//!
//! patternmatcher translates a pattern into one of four forms, and the choice changes the
//! result for `**` glued to text, so this module keeps the same four:
//!
//! | form | when | matches |
//! | --- | --- | --- |
//! | exact | only plain characters | the path equal to the pattern |
//! | prefix | plain characters, then `**` at the end | paths starting with the text before `**` |
//! | suffix | `**` first, then only plain characters | paths ending with the text after `**` (or, when that text is `/x`, the path `x`) |
//! | program | anything else | a regular expression, here a small Thompson NFA |
//!
//! In a program, `*` is "any characters but `/`", `?` one character (code point) but `/`,
//! `**` at the end "any characters", `**` elsewhere (with the `/` after it, if any) "nothing,
//! or any characters ending with `/`", and `[...]` a class (negated by a leading `^`, never by
//! `!`). As in Go's regexp, "any characters" does not cross a newline while `*`, `?` and
//! negated classes do.
//!
//! Two deliberate differences from patternmatcher, both only for patterns nobody writes on
//! purpose: a `\` always makes the next character literal (patternmatcher hands `\d`, `\w`,
//! `\b`, `\n`... to Go's regexp, which gives them special meanings), and the inside of a
//! class follows `filepath.Match` (patternmatcher rewrites `*` and `?` inside a class into
//! regexp syntax and lets `[:alpha:]` through as a POSIX class).

/// Why a pattern is not valid `filepath.Match` syntax (or, for a reversed range, not a valid
/// regular expression once patternmatcher translates it). `at` is a byte offset into the
/// cleaned pattern.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("unterminated character class")]
    UnterminatedClass { at: usize },
    #[error("a character class cannot start with `]`")]
    EmptyClass { at: usize },
    #[error("unexpected `-` in character class")]
    MisplacedDash { at: usize },
    #[error("character range `{lo}-` has no upper bound")]
    OpenRange { at: usize, lo: char },
    #[error("character range `{lo}-{hi}` is out of order")]
    ReversedRange { at: usize, lo: char, hi: char },
    #[error("`\\` at the end of a pattern escapes nothing")]
    TrailingBackslash { at: usize },
}

impl PatternError {
    /// Byte offset of the offending text in the cleaned pattern.
    pub fn offset(&self) -> usize {
        match *self {
            PatternError::UnterminatedClass { at }
            | PatternError::EmptyClass { at }
            | PatternError::MisplacedDash { at }
            | PatternError::OpenRange { at, .. }
            | PatternError::ReversedRange { at, .. }
            | PatternError::TrailingBackslash { at } => at,
        }
    }

    /// A short fix, shown as `help:`.
    pub fn help(&self) -> &'static str {
        match self {
            PatternError::UnterminatedClass { .. } => {
                "close the class with `]`, or write `\\[` for a literal `[`"
            }
            PatternError::EmptyClass { .. } => "write `\\]` for a literal `]` inside a class",
            PatternError::MisplacedDash { .. } | PatternError::OpenRange { .. } => {
                "write `\\-` for a literal `-` inside a class"
            }
            PatternError::ReversedRange { .. } => "write the lower character first",
            PatternError::TrailingBackslash { .. } => "write `\\\\` for a literal `\\`",
        }
    }
}

/// Go's `filepath.Clean` for `/`-separated paths: collapses `//`, drops `.` elements,
/// resolves `x/..` lexically, removes a trailing `/`; `..` at the start of a relative path
/// stays, `/..` becomes `/`, and an empty result is `.`.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            name => parts.push(name),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// A compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    matcher: Matcher,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Matcher {
    /// The whole path equals this text.
    Exact(String),
    /// The path starts with this text (the pattern minus a trailing `**`).
    Prefix(String),
    /// The path ends with this text (the pattern minus a leading `**`).
    Suffix(String),
    Program(Program),
}

/// One piece of a pattern, before it becomes NFA instructions.
#[derive(Clone, Debug)]
enum Node {
    Char(CharSet),
    /// `*`: any run of characters but `/`.
    Star,
    /// `**` at the end: any run of characters.
    AnyPath,
    /// `**` elsewhere: nothing, or any run of characters ending with `/`.
    AnyDirs,
}

/// Which form patternmatcher would pick (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Exact,
    Prefix,
    Suffix,
    Program,
}

impl Pattern {
    /// Compiles a cleaned pattern (without its `!`).
    pub fn new(pattern: &str) -> Result<Pattern, PatternError> {
        let chars: Vec<(usize, char)> = pattern.char_indices().collect();
        let mut nodes = Vec::new();
        let mut form = Form::Exact;
        // Where the `**` that ends a prefix-form pattern starts.
        let mut prefix_end = pattern.len();
        let mut i = 0;
        while i < chars.len() {
            let first = i == 0;
            let (at, c) = chars[i];
            i += 1;
            let next = chars.get(i).map(|&(_, c)| c);
            match c {
                '*' if next == Some('*') => {
                    i += 1;
                    if chars.get(i).is_some_and(|&(_, c)| c == '/') {
                        i += 1;
                    }
                    if i == chars.len() {
                        prefix_end = at;
                        nodes.push(Node::AnyPath);
                        form = if form == Form::Exact {
                            Form::Prefix
                        } else {
                            Form::Program
                        };
                    } else {
                        nodes.push(Node::AnyDirs);
                        form = Form::Program;
                    }
                    if first {
                        form = Form::Suffix;
                    }
                }
                '*' => {
                    nodes.push(Node::Star);
                    form = Form::Program;
                }
                '?' => {
                    nodes.push(Node::Char(CharSet::NotSlash));
                    form = Form::Program;
                }
                '\\' => {
                    let Some(escaped) = next else {
                        return Err(PatternError::TrailingBackslash { at });
                    };
                    i += 1;
                    nodes.push(Node::Char(CharSet::Literal(escaped)));
                    form = Form::Program;
                }
                '[' => {
                    let (class, end) = Class::parse(&chars, i, pattern.len())?;
                    i = end;
                    nodes.push(Node::Char(CharSet::Class(class)));
                    form = Form::Program;
                }
                ']' => {
                    nodes.push(Node::Char(CharSet::Literal(']')));
                    form = Form::Program;
                }
                c => nodes.push(Node::Char(CharSet::Literal(c))),
            }
        }
        let matcher = match form {
            Form::Exact => Matcher::Exact(pattern.to_owned()),
            Form::Prefix => Matcher::Prefix(pattern[..prefix_end].to_owned()),
            Form::Suffix => Matcher::Suffix(pattern[2..].to_owned()),
            Form::Program => Matcher::Program(Program::compile(&nodes)),
        };
        Ok(Pattern { matcher })
    }

    /// Whether the pattern matches `path` (clean, relative, `/`-separated) or one of its
    /// parent directories (patternmatcher's `MatchesOrParentMatches` for one pattern).
    pub fn matches_path_or_parent(&self, path: &str) -> bool {
        match &self.matcher {
            Matcher::Exact(text) => path
                .strip_prefix(text.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
            // A parent starting with the prefix means the path does too.
            Matcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => {
                let bare = suffix.strip_prefix('/');
                self_and_parents(path).any(|p| p.ends_with(suffix.as_str()) || bare == Some(p))
            }
            Matcher::Program(program) => program.matches_path_or_parent(path),
        }
    }

    /// Whether some path strictly below directory `dir` (clean, relative, not `.`) could be
    /// matched. May answer `true` when nothing can match; never `false` when something can.
    pub fn may_match_below(&self, dir: &str) -> bool {
        match &self.matcher {
            Matcher::Exact(text) => text
                .strip_prefix(dir)
                .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/')),
            Matcher::Prefix(prefix) => {
                let below = format!("{dir}/");
                below.starts_with(prefix.as_str()) || prefix.starts_with(&below)
            }
            Matcher::Suffix(_) => true,
            Matcher::Program(program) => program.survives(dir.chars().chain(['/'])),
        }
    }
}

/// `path` and each of its parent directories (`a/b/c`, `a/b`, `a`), in no useful order.
fn self_and_parents(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(|(i, _)| &path[..i])
        .chain(std::iter::once(path))
}

/// What one NFA step accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
enum CharSet {
    Literal(char),
    NotSlash,
    /// Go regexp's `.`: anything but a newline.
    NotNewline,
    Class(Class),
}

impl CharSet {
    fn accepts(&self, c: char) -> bool {
        match self {
            CharSet::Literal(l) => *l == c,
            CharSet::NotSlash => c != '/',
            CharSet::NotNewline => c != '\n',
            CharSet::Class(class) => class.contains(c),
        }
    }
}

/// A `[...]` character class.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    /// Parses the class whose `[` is just before `chars[start]` with `filepath.Match`'s rules;
    /// returns it and the index after its `]`. `len` is the pattern's byte length.
    fn parse(
        chars: &[(usize, char)],
        start: usize,
        len: usize,
    ) -> Result<(Class, usize), PatternError> {
        let open = start.checked_sub(1).map_or(0, |i| chars[i].0);
        let offset = |i: usize| chars.get(i).map_or(len, |&(at, _)| at);
        let mut i = start;
        let negated = chars.get(i).is_some_and(|&(_, c)| c == '^');
        if negated {
            i += 1;
        }
        let mut ranges = Vec::new();
        loop {
            if !ranges.is_empty() && chars.get(i).is_some_and(|&(_, c)| c == ']') {
                return Ok((Class { negated, ranges }, i + 1));
            }
            let lo_at = offset(i);
            let lo = Self::member(chars, &mut i, open)?;
            let hi = if chars.get(i).is_some_and(|&(_, c)| c == '-') {
                i += 1;
                if chars.get(i).is_some_and(|&(_, c)| c == ']') {
                    return Err(PatternError::OpenRange { at: lo_at, lo });
                }
                Self::member(chars, &mut i, open)?
            } else {
                lo
            };
            if lo > hi {
                return Err(PatternError::ReversedRange { at: lo_at, lo, hi });
            }
            ranges.push((lo, hi));
        }
    }

    /// One class member, as Go's `getEsc` reads it: not `-` or `]`, `\` escapes, and
    /// something must follow it (the class is still open). A `]` can only get here as the
    /// first member: later ones close the class, and a range's end is checked before.
    fn member(chars: &[(usize, char)], i: &mut usize, open: usize) -> Result<char, PatternError> {
        let Some(&(at, c)) = chars.get(*i) else {
            return Err(PatternError::UnterminatedClass { at: open });
        };
        let c = match c {
            '-' => return Err(PatternError::MisplacedDash { at }),
            ']' => return Err(PatternError::EmptyClass { at }),
            '\\' => {
                *i += 1;
                match chars.get(*i) {
                    Some(&(_, escaped)) => escaped,
                    None => return Err(PatternError::UnterminatedClass { at: open }),
                }
            }
            c => c,
        };
        *i += 1;
        if *i >= chars.len() {
            return Err(PatternError::UnterminatedClass { at: open });
        }
        Ok(c)
    }

    fn contains(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

/// NFA instructions (Thompson's construction; run by keeping every live state, so matching is
/// linear in the path length whatever the pattern).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Inst {
    Char(CharSet),
    Split(usize, usize),
    Jump(usize),
    Match,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Program {
    insts: Vec<Inst>,
}

impl Program {
    fn compile(nodes: &[Node]) -> Program {
        let mut insts = Vec::new();
        for node in nodes {
            let here = insts.len();
            match node {
                Node::Char(set) => insts.push(Inst::Char(set.clone())),
                Node::Star | Node::AnyPath => {
                    let set = if matches!(node, Node::Star) {
                        CharSet::NotSlash
                    } else {
                        CharSet::NotNewline
                    };
                    insts.push(Inst::Split(here + 1, here + 3));
                    insts.push(Inst::Char(set));
                    insts.push(Inst::Jump(here));
                }
                Node::AnyDirs => {
                    insts.push(Inst::Split(here + 1, here + 5));
                    insts.push(Inst::Split(here + 2, here + 4));
                    insts.push(Inst::Char(CharSet::NotNewline));
                    insts.push(Inst::Jump(here + 1));
                    insts.push(Inst::Char(CharSet::Literal('/')));
                }
            }
        }
        insts.push(Inst::Match);
        Program { insts }
    }

    /// One pass over `path`: the pattern matches a parent directory when the match state is
    /// live just before a `/`, and the path itself when it is live at the end.
    fn matches_path_or_parent(&self, path: &str) -> bool {
        let mut states = States::new(self);
        for c in path.chars() {
            if c == '/' && states.has_match(self) {
                return true;
            }
            states.step(self, c);
            if states.is_empty() {
                return false;
            }
        }
        states.has_match(self)
    }

    /// Whether any state is live after reading `text`: then some continuation may match.
    fn survives(&self, text: impl Iterator<Item = char>) -> bool {
        let mut states = States::new(self);
        for c in text {
            states.step(self, c);
            if states.is_empty() {
                return false;
            }
        }
        true
    }
}

/// The live NFA states, without duplicates.
struct States {
    live: Vec<usize>,
    /// `seen[pc]` is the generation in which `pc` was last added.
    seen: Vec<u32>,
    generation: u32,
}

impl States {
    fn new(program: &Program) -> States {
        let mut states = States {
            live: Vec::new(),
            seen: vec![0; program.insts.len()],
            generation: 1,
        };
        let mut live = Vec::new();
        states.add(program, 0, &mut live);
        states.live = live;
        states
    }

    /// Adds `pc` and everything reachable from it without reading a character.
    fn add(&mut self, program: &Program, pc: usize, into: &mut Vec<usize>) {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if self.seen[pc] == self.generation {
                continue;
            }
            self.seen[pc] = self.generation;
            match program.insts[pc] {
                Inst::Split(a, b) => {
                    stack.push(b);
                    stack.push(a);
                }
                Inst::Jump(to) => stack.push(to),
                Inst::Char(_) | Inst::Match => into.push(pc),
            }
        }
    }

    fn step(&mut self, program: &Program, c: char) {
        self.generation += 1;
        let mut next = Vec::with_capacity(self.live.len());
        let live = std::mem::take(&mut self.live);
        for &pc in &live {
            if let Inst::Char(set) = &program.insts[pc]
                && set.accepts(c)
            {
                self.add(program, pc + 1, &mut next);
            }
        }
        self.live = next;
    }

    fn has_match(&self, program: &Program) -> bool {
        self.live
            .iter()
            .any(|&pc| matches!(program.insts[pc], Inst::Match))
    }

    fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        Pattern::new(pattern).unwrap().matches_path_or_parent(path)
    }

    #[test]
    fn clean_like_go() {
        for (input, want) in [
            ("", "."),
            (".", "."),
            ("./foo", "foo"),
            ("foo/", "foo"),
            ("foo//bar", "foo/bar"),
            ("foo/../bar", "bar"),
            ("../bar", "../bar"),
            ("../../a/..", "../.."),
            ("/..", "/"),
            ("/../a", "/a"),
            ("/", "/"),
            ("//a//", "/a"),
            ("a/b/../../..", ".."),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn picks_patternmatchers_form() {
        let form = |p: &str| match Pattern::new(p).unwrap().matcher {
            Matcher::Exact(_) => "exact",
            Matcher::Prefix(_) => "prefix",
            Matcher::Suffix(_) => "suffix",
            Matcher::Program(_) => "program",
        };
        assert_eq!(form("a.b+(c)"), "exact");
        assert_eq!(form("dir/**"), "prefix");
        assert_eq!(form("**"), "suffix");
        assert_eq!(form("**/node_modules"), "suffix");
        assert_eq!(form("**file"), "suffix");
        assert_eq!(form("**/*.go"), "program");
        assert_eq!(form("a**/b"), "program");
        assert_eq!(form("**a**"), "program");
        assert_eq!(form("a\\*"), "program");
    }

    #[test]
    fn double_star_glued_to_text_depends_on_the_form() {
        // Suffix form: "ends with".
        assert!(m("**file", "dir/myfile"));
        // Program form: `**` not at the end is "nothing or ...`/`".
        assert!(!m("**a**", "xa"));
        assert!(m("**a**", "x/a"));
        assert!(m("a**/*.txt", "abc.txt"));
        assert!(!m("x/**b", "x/ab"));
        assert!(m("x/**b", "x/a/b"));
    }

    #[test]
    fn any_path_stops_at_newlines_but_star_does_not() {
        assert!(!m("a?**/b", "ax\ny/b"));
        assert!(m("a*b", "a\nb"));
        // The prefix form compares text, as patternmatcher does.
        assert!(m("a**", "a\nb"));
    }

    #[test]
    fn classes() {
        assert!(m("[a-c]x", "bx"));
        assert!(m("[\\]]", "]"));
        assert!(
            m("[^a]", "/") && m("x[^a]y", "x/y"),
            "classes may match `/`"
        );
        assert!(m("[!a]", "!"));
        assert!(m("[*]", "*") && !m("[*]", "x"));
        assert!(m("[☺-☻]", "☻"));
    }

    #[test]
    fn syntax_errors_and_offsets() {
        let err = |p: &str| Pattern::new(p).unwrap_err();
        assert_eq!(err("ab["), PatternError::UnterminatedClass { at: 2 });
        assert_eq!(err("[]a]"), PatternError::EmptyClass { at: 1 });
        assert_eq!(err("[-x]"), PatternError::MisplacedDash { at: 1 });
        assert_eq!(err("[a-b-c]"), PatternError::MisplacedDash { at: 4 });
        assert_eq!(err("[x-]"), PatternError::OpenRange { at: 1, lo: 'x' });
        assert_eq!(
            err("a[z-a]"),
            PatternError::ReversedRange {
                at: 2,
                lo: 'z',
                hi: 'a'
            }
        );
        assert_eq!(err("ab\\"), PatternError::TrailingBackslash { at: 2 });
        assert_eq!(err("[\\]"), PatternError::UnterminatedClass { at: 0 });
        assert_eq!(err("[^]"), PatternError::EmptyClass { at: 2 });
        assert_eq!(err("[a"), PatternError::UnterminatedClass { at: 0 });
        assert!(Pattern::new("]").is_ok() && Pattern::new("a-b").is_ok());
    }

    #[test]
    fn may_match_below() {
        let below = |p: &str, dir: &str| Pattern::new(p).unwrap().may_match_below(dir);
        assert!(below("docs/README.md", "docs"));
        assert!(!below("docs/README.md", "doc"));
        assert!(!below("docs", "docs"));
        assert!(!below("docs/README.md", "docs/sub"));
        assert!(below("docs/*.md", "docs"));
        assert!(!below("docs/*.md", "docs/sub"));
        assert!(below("src/**/*.rs", "src/a/b"));
        assert!(below("dir/**", "dir"));
        assert!(below("di**", "dir"));
        assert!(below("dir/sub/**", "dir"));
        assert!(!below("dir/sub/**", "other"));
        assert!(below("**/keep", "any/where"));
        assert!(!below("*", "a"));
        assert!(below("*/x", "a"));
    }

    #[test]
    fn long_paths_do_not_backtrack() {
        let pattern = Pattern::new("*a*a*a*a*a*a*a*a*b").unwrap();
        let path = "a".repeat(10_000);
        assert!(!pattern.matches_path_or_parent(&path));
    }
}
