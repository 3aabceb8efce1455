//! `--chmod` of COPY/ADD: an octal mode (`755`, up to `7777`), or since Dockerfile 1.14 a
//! symbolic one (`u=rwx,go=rx`, `+x`, `a-w`), applied to every copied entry but symlinks
//! (BuildKit `dispatchCopy` + fsutil `copyFileInfo`: octal replaces the permission bits,
//! symbolic is applied to the source's mode like `chmod(1)`, with BSD `setmode` rules and no
//! umask).
//!
//! Not responsible for: which entries get the mode (the copy decides).

/// A parsed `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    /// Replaces the mode bits (`0o7777` at most).
    Octal(u32),
    /// Changes applied in order to the source's mode.
    Symbolic(Vec<Clause>),
}

/// One `who op perms` change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Bits of `who` (`u` 0o4700, `g` 0o2070, `o` 0o1007); all when `who` was empty.
    who: u32,
    who_given: bool,
    op: char,
    perms: Perms,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Perms {
    /// `rwxst` bits (as for all of ugo) and whether `X` was given.
    Bits { bits: u32, big_x: bool },
    /// `g=u`: copy another class's bits.
    Copy(char),
}

impl Chmod {
    /// Parse BuildKit's way: octal when it parses as octal (and must then be ≤ 7777), else
    /// symbolic.
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return match u32::from_str_radix(s, 8) {
                Ok(m) if m <= 0o7777 => Ok(Self::Octal(m)),
                _ => Err(format!(
                    "invalid --chmod={s}: an octal mode must be between 0 and 7777"
                )),
            };
        }
        let mut clauses = Vec::new();
        for part in s.split(',') {
            parse_clause(part, &mut clauses).ok_or_else(|| {
                format!(
                    "invalid --chmod={s}: expected an octal mode such as 755 or a symbolic one such as u=rwx,go=rx"
                )
            })?;
        }
        Ok(Self::Symbolic(clauses))
    }

    /// The mode an entry gets, from its source mode (permission bits and setuid/setgid/sticky).
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Self::Octal(m) => *m,
            Self::Symbolic(clauses) => {
                let mut m = mode & 0o7777;
                for c in clauses {
                    m = c.apply(m, is_dir);
                }
                m
            }
        }
    }
}

fn parse_clause(part: &str, out: &mut Vec<Clause>) -> Option<()> {
    let mut chars = part.chars().peekable();
    let mut who = 0;
    let mut who_given = false;
    while let Some(&c) = chars.peek() {
        let bits = match c {
            'u' => 0o4700,
            'g' => 0o2070,
            'o' => 0o1007,
            'a' => 0o7777,
            _ => break,
        };
        who |= bits;
        who_given = true;
        chars.next();
    }
    if !who_given {
        who = 0o7777;
    }
    let mut any = false;
    while let Some(op) = chars.next() {
        if !matches!(op, '+' | '-' | '=') {
            return None;
        }
        any = true;
        let mut bits = 0;
        let mut big_x = false;
        let mut copy = None;
        while let Some(&c) = chars.peek() {
            match c {
                'r' => bits |= 0o444,
                'w' => bits |= 0o222,
                'x' => bits |= 0o111,
                'X' => big_x = true,
                's' => bits |= 0o6000,
                't' => bits |= 0o1000,
                'u' | 'g' | 'o' if copy.is_none() && bits == 0 && !big_x => copy = Some(c),
                '+' | '-' | '=' => break,
                _ => return None,
            }
            chars.next();
        }
        let perms = match copy {
            Some(c) => Perms::Copy(c),
            None => Perms::Bits { bits, big_x },
        };
        out.push(Clause {
            who,
            who_given,
            op,
            perms,
        });
    }
    any.then_some(())
}

impl Clause {
    fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let mut bits = match &self.perms {
            Perms::Bits { bits, big_x } => {
                let x = if *big_x && (is_dir || mode & 0o111 != 0) {
                    0o111
                } else {
                    0
                };
                bits | x
            }
            Perms::Copy(c) => {
                let rwx = match c {
                    'u' => (mode >> 6) & 7,
                    'g' => (mode >> 3) & 7,
                    _ => mode & 7,
                };
                rwx * 0o111
            }
        };
        // Sticky applies only for `o`/`a` or no who (BSD setmode).
        if self.who_given && self.who & 0o1007 != 0o1007 {
            bits &= !0o1000;
        }
        let affected = self.who & bits;
        match self.op {
            '+' => mode | affected,
            '-' => mode & !affected,
            _ => {
                // `=`: clear what `who` covers, then set.
                let clear = self.who & 0o7777;
                (mode & !clear) | affected
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str, mode: u32, dir: bool) -> u32 {
        Chmod::parse(s).unwrap().apply(mode, dir)
    }

    #[test]
    fn octal_and_symbolic_modes() {
        assert_eq!(Chmod::parse("755").unwrap(), Chmod::Octal(0o755));
        assert_eq!(Chmod::parse("4755").unwrap().apply(0o644, false), 0o4755);
        assert!(Chmod::parse("17777").is_err());
        assert!(Chmod::parse("9").is_err());
        assert!(Chmod::parse("u=rwz").is_err());
        assert!(Chmod::parse("").is_err());
        assert_eq!(sym("+x", 0o644, false), 0o755);
        assert_eq!(sym("u=rwx,go=rx", 0o600, false), 0o755);
        assert_eq!(sym("go-w", 0o666, false), 0o644);
        assert_eq!(sym("a=r", 0o755, false), 0o444);
        assert_eq!(sym("a+X", 0o644, false), 0o644);
        assert_eq!(sym("a+X", 0o644, true), 0o755);
        assert_eq!(sym("a+X", 0o744, false), 0o755);
        assert_eq!(sym("g=u", 0o740, false), 0o770);
        assert_eq!(sym("u+s,+t", 0o755, false), 0o5755);
        assert_eq!(sym("o=", 0o777, false), 0o770);
    }
}
