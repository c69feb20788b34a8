//! UTC calendar arithmetic: reset durations (`1m` … `1Y`), the window a moment falls in
//! (calendar-aligned or anchored), and RFC 3339 parsing/formatting for `expires_at`.
//! Hand-written civil-from-days math (H. Hinnant's algorithms) so the crate needs no date
//! library; nothing here reads a clock: the current time is always an argument.

use std::fmt;

const MS_PER_SECOND: i64 = 1_000;
const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;
const MS_PER_WEEK: i64 = 7 * MS_PER_DAY;
/// 1970-01-05T00:00:00Z, the first Monday after the epoch: aligned weeks count from here.
const FIRST_MONDAY_MS: i64 = 4 * MS_PER_DAY;
/// 9999-12-31T23:59:59.999Z. Times are clamped to [epoch, this] so the arithmetic below can
/// never overflow, whatever a caller or a stored record passes in.
const MAX_MS: i64 = 253_402_300_799_999;
/// Largest `<n>` accepted in a reset duration; keeps `n * unit` far from overflow.
const MAX_COUNT: u32 = 100_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (`days_from_civil`).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day number since 1970-01-01 (`civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both casts are of values proven small by the algorithm (day 1..=31, month 1..=12).
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn clamp_ms(ms: u64) -> i64 {
    i64::try_from(ms).map_or(MAX_MS, |v| v.min(MAX_MS))
}

fn to_u64(ms: i64) -> u64 {
    u64::try_from(ms.max(0)).unwrap_or(0)
}

/// Months since year 0 of the month containing `ms`.
fn month_index(ms: i64) -> i64 {
    let (y, m, _) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    y * 12 + i64::from(m) - 1
}

/// Midnight on the 1st of the month with the given index.
fn month_start(index: i64) -> i64 {
    // rem_euclid(12) is 0..=11, so the month fits a u32.
    let month = (index.rem_euclid(12) + 1) as u32;
    days_from_civil(index.div_euclid(12), month, 1) * MS_PER_DAY
}

/// `ms` moved by `months` calendar months, keeping the time of day; the day is clamped to
/// the target month's length (Jan 31 + 1 month = Feb 28/29).
fn add_months(ms: i64, months: i64) -> i64 {
    let days = ms.div_euclid(MS_PER_DAY);
    let time_of_day = ms.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let index = y * 12 + i64::from(m) - 1 + months;
    let year = index.div_euclid(12);
    let month = (index.rem_euclid(12) + 1) as u32;
    let day = d.min(days_in_month(year, month));
    days_from_civil(year, month, day) * MS_PER_DAY + time_of_day
}

/// A half-open time window `[start_ms, end_ms)` in unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Window {
    /// A window that never ends (used for records whose duration cannot be parsed, so the
    /// limit still holds rather than silently disappearing).
    pub const FOREVER: Window = Window {
        start_ms: 0,
        end_ms: u64::MAX,
    };

    pub fn contains(&self, ms: u64) -> bool {
        self.start_ms <= ms && ms < self.end_ms
    }

    /// Whole seconds from `now_ms` until the window resets, at least 1 (for `Retry-After`).
    pub fn seconds_until_reset(&self, now_ms: u64) -> u64 {
        self.end_ms.saturating_sub(now_ms).div_ceil(1_000).max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DurationUnit {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl DurationUnit {
    fn suffix(self) -> char {
        match self {
            DurationUnit::Minute => 'm',
            DurationUnit::Hour => 'h',
            DurationUnit::Day => 'd',
            DurationUnit::Week => 'w',
            DurationUnit::Month => 'M',
            DurationUnit::Quarter => 'Q',
            DurationUnit::Year => 'Y',
        }
    }

    /// Length of a fixed-length unit; `None` for calendar units (months vary).
    fn fixed_ms(self) -> Option<i64> {
        match self {
            DurationUnit::Minute => Some(MS_PER_MINUTE),
            DurationUnit::Hour => Some(MS_PER_HOUR),
            DurationUnit::Day => Some(MS_PER_DAY),
            DurationUnit::Week => Some(MS_PER_WEEK),
            DurationUnit::Month | DurationUnit::Quarter | DurationUnit::Year => None,
        }
    }

    fn months(self) -> i64 {
        match self {
            DurationUnit::Quarter => 3,
            DurationUnit::Year => 12,
            _ => 1,
        }
    }
}

/// A reset period `<n><unit>`: units `m h d w M Q Y` (minute, hour, day, week, month,
/// quarter, year). `Q` is accepted only for budgets (Bifrost's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResetDuration {
    pub count: u32,
    pub unit: DurationUnit,
}

/// Where a duration is used: quarters are a budget-only unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationUse {
    Budget,
    RateLimit,
}

impl ResetDuration {
    /// Parses `<n><unit>` with `n` in `1..=100000` and no sign, spaces or leading zeros.
    pub fn parse(s: &str, usage: DurationUse) -> Option<ResetDuration> {
        let unit_char = s.chars().last()?;
        let digits = &s[..s.len() - unit_char.len_utf8()];
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return None;
        }
        let count: u32 = digits.parse().ok()?;
        if count == 0 || count > MAX_COUNT {
            return None;
        }
        let unit = match unit_char {
            'm' => DurationUnit::Minute,
            'h' => DurationUnit::Hour,
            'd' => DurationUnit::Day,
            'w' => DurationUnit::Week,
            'M' => DurationUnit::Month,
            'Q' if usage == DurationUse::Budget => DurationUnit::Quarter,
            'Y' => DurationUnit::Year,
            _ => return None,
        };
        Some(ResetDuration { count, unit })
    }

    /// The window containing `now_ms`.
    ///
    /// Calendar-aligned (UTC): windows start on multiples of the duration counted from a
    /// natural origin: the epoch for minutes/hours/days (so `1d` starts at 00:00, `5m` at
    /// :00, :05, …), Monday 00:00 for weeks, the 1st of a month for months, Jan/Apr/Jul/Oct 1
    /// for quarters, Jan 1 for years (multi-month/-year counts from year 0: `2Y` starts on
    /// even years).
    ///
    /// Not aligned: consecutive periods from `anchor_ms` (the budget's creation time).
    /// Months, quarters and years are calendar lengths in both modes; an anchor on the 31st
    /// starts later periods on the last day of shorter months, always computed from the
    /// anchor so the day never drifts.
    pub fn window(&self, now_ms: u64, calendar_aligned: bool, anchor_ms: u64) -> Window {
        let now = clamp_ms(now_ms);
        let anchor = clamp_ms(anchor_ms);
        let count = i64::from(self.count);
        let (start, end) = match self.unit.fixed_ms() {
            Some(unit_ms) => {
                let len = unit_ms * count;
                let origin = match (calendar_aligned, self.unit) {
                    (true, DurationUnit::Week) => FIRST_MONDAY_MS,
                    (true, _) => 0,
                    (false, _) => anchor,
                };
                let start = origin + (now - origin).div_euclid(len) * len;
                (start, start + len)
            }
            None => {
                let n = self.unit.months() * count;
                if calendar_aligned {
                    let first = month_index(now).div_euclid(n) * n;
                    (month_start(first), month_start(first + n))
                } else {
                    let mut k = (month_index(now) - month_index(anchor)).div_euclid(n);
                    let mut start = add_months(anchor, k * n);
                    if start > now {
                        // Same month as the anchor's day-of-month boundary, but earlier in it.
                        k -= 1;
                        start = add_months(anchor, k * n);
                    }
                    (start, add_months(anchor, (k + 1) * n))
                }
            }
        };
        Window {
            start_ms: to_u64(start),
            end_ms: to_u64(end),
        }
    }
}

impl fmt::Display for ResetDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.count, self.unit.suffix())
    }
}

/// Parses an RFC 3339 timestamp (`2026-01-31T23:59:59Z`, `…T23:59:59.5+02:00`; `t`, `z` and
/// a space separator are accepted) into unix milliseconds. Fractions beyond milliseconds are
/// truncated. Returns `None` for anything malformed or out of range.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(
            part.iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
        )
    };
    let sep = |at: usize, allowed: &[u8]| b.get(at).is_some_and(|c| allowed.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let year = num(0, 4)?;
    let month = u32::try_from(num(5, 2)?).ok()?;
    let day = u32::try_from(num(8, 2)?).ok()?;
    let hour = num(11, 2)?;
    let minute = num(14, 2)?;
    let second = num(17, 2)?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut pos = 19;
    let mut millis = 0i64;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let digits = b[pos..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for i in 0..3 {
            millis = millis * 10
                + b.get(pos + i)
                    .filter(|_| i < digits)
                    .map_or(0, |d| i64::from(d - b'0'));
        }
        pos += digits;
    }
    let offset_ms = match b.get(pos) {
        Some(b'Z' | b'z') if pos + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if pos + 6 == b.len() && b[pos + 3] == b':' => {
            let oh = num(pos + 1, 2)?;
            let om = num(pos + 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * MS_PER_HOUR + om * MS_PER_MINUTE;
            if *sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    let local = days_from_civil(year, month, day) * MS_PER_DAY
        + hour * MS_PER_HOUR
        + minute * MS_PER_MINUTE
        + second * MS_PER_SECOND
        + millis;
    Some(local - offset_ms)
}

/// Formats unix milliseconds as RFC 3339 UTC: `2026-11-29T20:26:59Z`, or with `.mmm` when
/// the milliseconds are not zero.
pub fn format_rfc3339(ms: u64) -> String {
    let ms = clamp_ms(ms);
    let (y, m, d) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    let tod = ms.rem_euclid(MS_PER_DAY);
    let (hh, mm, ss, frac) = (
        tod / MS_PER_HOUR,
        tod % MS_PER_HOUR / MS_PER_MINUTE,
        tod % MS_PER_MINUTE / MS_PER_SECOND,
        tod % MS_PER_SECOND,
    );
    if frac == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{frac:03}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> u64 {
        u64::try_from(parse_rfc3339(s).unwrap()).unwrap()
    }

    fn dur(s: &str) -> ResetDuration {
        ResetDuration::parse(s, DurationUse::Budget).unwrap()
    }

    fn win(d: &str, now: &str, aligned: bool, anchor: &str) -> (String, String) {
        let w = dur(d).window(ts(now), aligned, ts(anchor));
        (format_rfc3339(w.start_ms), format_rfc3339(w.end_ms))
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_owned(), b.to_owned())
    }

    #[test]
    fn civil_round_trips_and_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        for d in -800_000..800_000i64 {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn leap_years() {
        assert!(is_leap_year(2000));
        assert!(!is_leap_year(1900));
        assert!(is_leap_year(2024));
        assert!(!is_leap_year(2026));
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
    }

    #[test]
    fn parses_durations() {
        for (s, count, unit) in [
            ("1m", 1, DurationUnit::Minute),
            ("5m", 5, DurationUnit::Minute),
            ("15m", 15, DurationUnit::Minute),
            ("30m", 30, DurationUnit::Minute),
            ("1h", 1, DurationUnit::Hour),
            ("6h", 6, DurationUnit::Hour),
            ("12h", 12, DurationUnit::Hour),
            ("1d", 1, DurationUnit::Day),
            ("1w", 1, DurationUnit::Week),
            ("1M", 1, DurationUnit::Month),
            ("1Q", 1, DurationUnit::Quarter),
            ("1Y", 1, DurationUnit::Year),
        ] {
            assert_eq!(dur(s), ResetDuration { count, unit }, "{s}");
            assert_eq!(dur(s).to_string(), s);
        }
        for bad in [
            "", "m", "0m", "01m", "-1m", "1s", "1 m", "1.5h", "1q", "1y", "1D", "100001m", "1mm",
            "é",
        ] {
            assert_eq!(
                ResetDuration::parse(bad, DurationUse::Budget),
                None,
                "{bad}"
            );
        }
        assert_eq!(ResetDuration::parse("1Q", DurationUse::RateLimit), None);
        assert!(ResetDuration::parse("1M", DurationUse::RateLimit).is_some());
    }

    #[test]
    fn aligned_fixed_windows() {
        let a = "2020-01-01T00:00:00Z";
        assert_eq!(
            win("1m", "2026-03-04T10:17:42.5Z", true, a),
            pair("2026-03-04T10:17:00Z", "2026-03-04T10:18:00Z")
        );
        assert_eq!(
            win("5m", "2026-03-04T10:17:42Z", true, a),
            pair("2026-03-04T10:15:00Z", "2026-03-04T10:20:00Z")
        );
        assert_eq!(
            win("6h", "2026-03-04T10:17:42Z", true, a),
            pair("2026-03-04T06:00:00Z", "2026-03-04T12:00:00Z")
        );
        assert_eq!(
            win("1d", "2026-03-04T23:59:59.999Z", true, a),
            pair("2026-03-04T00:00:00Z", "2026-03-05T00:00:00Z")
        );
        // 2026-03-04 is a Wednesday; weeks start on Monday.
        assert_eq!(
            win("1w", "2026-03-04T10:00:00Z", true, a),
            pair("2026-03-02T00:00:00Z", "2026-03-09T00:00:00Z")
        );
        assert_eq!(
            win("1w", "2026-03-09T00:00:00Z", true, a),
            pair("2026-03-09T00:00:00Z", "2026-03-16T00:00:00Z")
        );
    }

    #[test]
    fn aligned_calendar_windows_cross_boundaries() {
        let a = "2020-01-01T00:00:00Z";
        assert_eq!(
            win("1M", "2024-02-29T23:59:59Z", true, a),
            pair("2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z")
        );
        assert_eq!(
            win("1M", "2024-03-01T00:00:00Z", true, a),
            pair("2024-03-01T00:00:00Z", "2024-04-01T00:00:00Z")
        );
        assert_eq!(
            win("1M", "2026-12-31T23:59:59.999Z", true, a),
            pair("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z")
        );
        for (now, start, end) in [
            (
                "2026-01-01T00:00:00Z",
                "2026-01-01T00:00:00Z",
                "2026-04-01T00:00:00Z",
            ),
            (
                "2026-03-31T23:59:59Z",
                "2026-01-01T00:00:00Z",
                "2026-04-01T00:00:00Z",
            ),
            (
                "2026-05-15T12:00:00Z",
                "2026-04-01T00:00:00Z",
                "2026-07-01T00:00:00Z",
            ),
            (
                "2026-08-01T00:00:00Z",
                "2026-07-01T00:00:00Z",
                "2026-10-01T00:00:00Z",
            ),
            (
                "2026-12-31T23:59:59Z",
                "2026-10-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
        ] {
            assert_eq!(win("1Q", now, true, a), pair(start, end), "{now}");
        }
        assert_eq!(
            win("1Y", "2024-12-31T23:59:59Z", true, a),
            pair("2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z")
        );
        assert_eq!(
            win("2Y", "2025-06-01T00:00:00Z", true, a),
            pair("2024-01-01T00:00:00Z", "2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn anchored_windows() {
        // 1h from an anchor at :20 past.
        assert_eq!(
            win("1h", "2026-03-04T10:05:00Z", false, "2026-03-01T07:20:00Z"),
            pair("2026-03-04T09:20:00Z", "2026-03-04T10:20:00Z")
        );
        // 1d from noon.
        assert_eq!(
            win("1d", "2026-03-04T11:59:59Z", false, "2026-03-01T12:00:00Z"),
            pair("2026-03-03T12:00:00Z", "2026-03-04T12:00:00Z")
        );
        // Months from Jan 31: the day clamps to short months and recovers (no drift).
        let anchor = "2024-01-31T08:00:00Z";
        assert_eq!(
            win("1M", "2024-02-15T00:00:00Z", false, anchor),
            pair("2024-01-31T08:00:00Z", "2024-02-29T08:00:00Z")
        );
        assert_eq!(
            win("1M", "2024-03-01T00:00:00Z", false, anchor),
            pair("2024-02-29T08:00:00Z", "2024-03-31T08:00:00Z")
        );
        assert_eq!(
            win("1M", "2024-04-30T08:00:00Z", false, anchor),
            pair("2024-04-30T08:00:00Z", "2024-05-31T08:00:00Z")
        );
        // Same month as the boundary but before the anchor's day.
        assert_eq!(
            win("1M", "2024-03-30T23:00:00Z", false, anchor),
            pair("2024-02-29T08:00:00Z", "2024-03-31T08:00:00Z")
        );
        // Quarters and years from a leap day.
        assert_eq!(
            win("1Q", "2024-06-01T00:00:00Z", false, "2024-02-29T00:00:00Z"),
            pair("2024-05-29T00:00:00Z", "2024-08-29T00:00:00Z")
        );
        assert_eq!(
            win("1Y", "2025-03-01T00:00:00Z", false, "2024-02-29T00:00:00Z"),
            pair("2025-02-28T00:00:00Z", "2026-02-28T00:00:00Z")
        );
        assert_eq!(
            win("1Y", "2028-02-29T00:00:00Z", false, "2024-02-29T00:00:00Z"),
            pair("2028-02-29T00:00:00Z", "2029-02-28T00:00:00Z")
        );
        // An anchor in the future (clock skew) still yields the window containing now.
        assert_eq!(
            win("1d", "2026-03-04T10:00:00Z", false, "2026-03-10T12:00:00Z"),
            pair("2026-03-03T12:00:00Z", "2026-03-04T12:00:00Z")
        );
        assert_eq!(
            win("1M", "2026-01-15T00:00:00Z", false, "2026-03-20T00:00:00Z"),
            pair("2025-12-20T00:00:00Z", "2026-01-20T00:00:00Z")
        );
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_rfc3339("1969-12-31T19:00:00-05:00"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-29t20:26:59.123456789z"),
            Some(1_795_984_019_123)
        );
        assert_eq!(
            parse_rfc3339("2026-11-29 20:26:59.5Z"),
            Some(1_795_984_019_500)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
        for bad in [
            "",
            "2026-11-29",
            "2026-11-29T20:26:59",
            "2026-11-29T20:26:59+0100",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:60:00Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00Zjunk",
            "2026-01-01T00:00:00+24:00",
            "26-01-01T00:00:00Z",
            "2026/01/01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_rfc3339(1_795_984_019_123),
            "2026-11-29T20:26:59.123Z"
        );
        assert_eq!(
            parse_rfc3339(&format_rfc3339(1_709_164_800_000)),
            Some(1_709_164_800_000)
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        let w = Window {
            start_ms: 0,
            end_ms: 10_000,
        };
        assert_eq!(w.seconds_until_reset(8_500), 2);
        assert_eq!(w.seconds_until_reset(10_000), 1);
        assert!(w.contains(0) && !w.contains(10_000));
    }

    fn any_duration() -> impl Strategy<Value = ResetDuration> {
        let unit = prop_oneof![
            Just(DurationUnit::Minute),
            Just(DurationUnit::Hour),
            Just(DurationUnit::Day),
            Just(DurationUnit::Week),
            Just(DurationUnit::Month),
            Just(DurationUnit::Quarter),
            Just(DurationUnit::Year),
        ];
        (1u32..40, unit).prop_map(|(count, unit)| ResetDuration { count, unit })
    }

    proptest! {
        /// The window contains now, and the window starting at its end is the next one:
        /// windows tile time without gaps or overlaps.
        #[test]
        fn windows_tile(
            d in any_duration(),
            now in 0u64..4_102_444_800_000,
            anchor in 0u64..4_102_444_800_000,
            aligned in any::<bool>(),
        ) {
            let w = d.window(now, aligned, anchor);
            prop_assert!(w.start_ms < w.end_ms);
            // Aligned weeks before the first Monday clamp at the epoch.
            if w.start_ms > 0 {
                prop_assert!(w.contains(now), "{w:?} does not contain {now}");
                let next = d.window(w.end_ms, aligned, anchor);
                prop_assert_eq!(next.start_ms, w.end_ms);
                let last = d.window(w.end_ms - 1, aligned, anchor);
                prop_assert_eq!(last, w);
            }
        }
    }
}
