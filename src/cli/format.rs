//! Human formats shared by commands: sizes and durations as Docker prints them, and Docker's
//! tab-aligned tables.

use std::time::Duration;

/// Size with decimal units and 3 significant digits, as Docker's `units.HumanSize`: `4.26MB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    // %.4g: up to 4 significant digits without trailing zeros, as Docker's HumanSizeWithPrecision(3) yields.
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{value:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{s}{}", UNITS[unit])
}

/// Docker's `units.HumanDuration`: "About a minute", "3 hours", "2 weeks".
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let hours = secs / 3600;
    if secs < 1 {
        "Less than a second".to_owned()
    } else if secs == 1 {
        "1 second".to_owned()
    } else if secs < 60 {
        format!("{secs} seconds")
    } else if secs / 60 == 1 {
        "About a minute".to_owned()
    } else if secs < 3600 {
        format!("{} minutes", secs / 60)
    } else if hours == 1 {
        "About an hour".to_owned()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", hours / 24 / 365)
    }
}

/// Lay out rows like Go's `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)` as Docker's tables do:
/// every column but the last is padded to max(10, widest cell + 3).
pub fn table(rows: &[Vec<String>]) -> String {
    table_with(rows, 10, 3)
}

/// Go's `tabwriter` with `minwidth` and `padding` (tab width 1, blank padding): every column but
/// the last is padded to max(`min_width`, widest cell + `padding`); trailing blanks trimmed.
pub fn table_with(rows: &[Vec<String>], min_width: usize, padding: usize) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .map(|w| (w + padding).max(min_width))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', widths[c] - cell.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_376), "4.26MB");
        assert_eq!(human_size(1_000), "1kB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(123_456_789), "123MB");
    }

    #[test]
    fn durations_like_docker() {
        assert_eq!(human_duration(Duration::from_secs(0)), "Less than a second");
        assert_eq!(human_duration(Duration::from_secs(59)), "59 seconds");
        assert_eq!(human_duration(Duration::from_secs(61)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(5 * 60)), "5 minutes");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600)), "3 hours");
        assert_eq!(human_duration(Duration::from_secs(3 * 86400)), "3 days");
        assert_eq!(human_duration(Duration::from_secs(20 * 86400)), "2 weeks");
        assert_eq!(human_duration(Duration::from_secs(100 * 86400)), "3 months");
        assert_eq!(human_duration(Duration::from_secs(800 * 86400)), "2 years");
    }

    #[test]
    fn table_pads_like_tabwriter() {
        let t = table(&[
            vec!["REPOSITORY".into(), "TAG".into(), "SIZE".into()],
            vec!["busybox".into(), "latest".into(), "4.26MB".into()],
        ]);
        assert_eq!(
            t,
            "REPOSITORY   TAG       SIZE\nbusybox      latest    4.26MB\n"
        );
    }
}
