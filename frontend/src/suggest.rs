//! "Did you mean ...?" suggestions by edit distance.
//!
//! Responsible for: picking the closest candidate to a misspelt name (instruction,
//! flag, stage). Not responsible for: wording the diagnostic around it.

/// The candidate closest to `input` (compared without case), if it is close enough to
/// be a plausible typo: at most 2 edits for names longer than 3 characters, at most 1
/// for shorter ones, and never the whole word.
pub fn closest<'a, I>(input: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let input = input.to_lowercase();
    let max = if input.chars().count() > 3 { 2 } else { 1 };
    candidates
        .into_iter()
        .map(|c| (distance(&input, &c.to_lowercase()), c))
        .filter(|&(d, c)| d <= max && d < c.chars().count())
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Optimal string alignment distance: Levenshtein plus transposition of two adjacent
/// characters (so `CPOY` is one edit from `COPY`).
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2 = vec![0usize; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0usize; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(prev2[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("copy", "copy"), 0);
        assert_eq!(distance("coppy", "copy"), 1);
        assert_eq!(distance("cpoy", "copy"), 1);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn suggestions() {
        let names = ["COPY", "CMD", "ADD", "RUN"];
        assert_eq!(closest("COPPY", names), Some("COPY"));
        assert_eq!(closest("run", names), Some("RUN"));
        assert_eq!(closest("xyzzy", names), None);
        assert_eq!(closest("chmodd", ["from", "chown", "chmod"]), Some("chmod"));
    }
}
