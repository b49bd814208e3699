//! The first line of every result the benchmarks print: which commit was
//! measured, whether the working tree had changes, and when.
//!
//! Read from git at run time, in the current directory (bench/run.sh and the
//! other scripts run from the repository root). Changes under
//! `bench/results/` do not count as uncommitted: `… | tee
//! bench/results/x.txt` truncates its file before the binary asks git.

use std::{
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

/// `commit: <hash> (clean|uncommitted changes) measured <UTC time>`, or
/// `commit: unknown measured <UTC time>` when git cannot tell.
pub fn commit_stamp() -> String {
    let measured = utc_now();
    match commit() {
        Some((hash, clean)) => format!(
            "commit: {hash} ({}) measured {measured}",
            if clean { "clean" } else { "uncommitted changes" }
        ),
        None => format!("commit: unknown measured {measured}"),
    }
}

/// The checked-out commit and whether the tree matches it.
fn commit() -> Option<(String, bool)> {
    let hash = git(&["rev-parse", "HEAD"])?;
    let hash = hash.trim();
    if hash.len() < 40 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    // `--no-optional-locks`: only look, never refresh the index (someone
    // else may be using the repository at the same time).
    let status = git(&[
        "--no-optional-locks",
        "status",
        "--porcelain",
        "--",
        ":(top,exclude)bench/results",
    ])?;
    Some((hash.to_owned(), status.trim().is_empty()))
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()
}

/// Now, as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, of_day) = ((seconds / 86_400) as i64, seconds % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
