//! Calendar dates as day numbers: strict parsing of `YYYY-MM-DD` and `YYYYMMDD`, and ages.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A proleptic Gregorian date, kept as days since 1970-01-01.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Date(i32);

impl Date {
    /// Builds a date from its parts; `None` for a date the calendar does not have.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Date> {
        if !(1..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 {
            return None;
        }
        if day > days_in_month(year, month) {
            return None;
        }
        Some(Date(days_from_civil(year, month, day)))
    }

    /// The date `days` after 1970-01-01.
    pub fn from_days(days: i32) -> Date {
        Date(days)
    }

    /// Days since 1970-01-01.
    pub fn days(self) -> i32 {
        self.0
    }

    /// Year, month and day.
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(self.0)
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.ymd().0
    }

    /// Parses exactly `YYYY-MM-DD`.
    pub fn parse_iso(text: &str) -> Option<Date> {
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return None;
        }
        let year = digits(&bytes[0..4])?;
        let month = digits(&bytes[5..7])?;
        let day = digits(&bytes[8..10])?;
        Date::from_ymd(year as i32, month, day)
    }

    /// Parses exactly `YYYYMMDD`, as in the middle of an ID number.
    pub fn parse_compact(text: &[u8]) -> Option<Date> {
        if text.len() != 8 {
            return None;
        }
        Date::from_ymd(
            digits(&text[0..4])? as i32,
            digits(&text[4..6])?,
            digits(&text[6..8])?,
        )
    }

    /// Completed years of life on `on` for someone born on `self` (negative before birth).
    pub fn age_on(self, on: Date) -> i32 {
        let (birth_year, birth_month, birth_day) = self.ymd();
        let (year, month, day) = on.ymd();
        let mut age = year - birth_year;
        if (month, day) < (birth_month, birth_day) {
            age -= 1;
        }
        age
    }
}

fn digits(bytes: &[u8]) -> Option<u32> {
    let mut value = 0u32;
    for byte in bytes {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u32::from(byte - b'0');
    }
    Some(value)
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

// Howard Hinnant's days-from-civil algorithm.
fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = month as i32;
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day as i32 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i32) -> (i32, u32, u32) {
    // In i64: every i32 day count (a date from a hostile request, say) stays in range.
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        i32::try_from(year).unwrap_or(if year < 0 { i32::MIN } else { i32::MAX }),
        month,
        day,
    )
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = self.ymd();
        write!(f, "{year:04}-{month:02}-{day:02}")
    }
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Date({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_day_numbers() {
        for days in (-719_000..2_900_000).step_by(97) {
            let date = Date::from_days(days);
            let (year, month, day) = date.ymd();
            assert_eq!(Date::from_ymd(year, month, day), Some(date));
        }
        assert_eq!(Date::from_ymd(1970, 1, 1).map(Date::days), Some(0));
    }

    #[test]
    fn parsing_is_strict() {
        assert_eq!(
            Date::parse_iso("2020-02-29").map(|d| d.to_string()),
            Some("2020-02-29".into())
        );
        assert_eq!(Date::parse_iso("2021-02-29"), None);
        assert_eq!(Date::parse_iso("1900-02-29"), None);
        assert!(Date::parse_iso("2000-02-29").is_some());
        assert_eq!(Date::parse_iso("2020-2-09"), None);
        assert_eq!(Date::parse_iso("2020/02/09"), None);
        assert_eq!(Date::parse_iso("2020-13-01"), None);
        assert_eq!(
            Date::parse_compact(b"19900101").map(|d| d.to_string()),
            Some("1990-01-01".into())
        );
        assert_eq!(Date::parse_compact(b"1990010"), None);
    }

    #[test]
    fn ages_count_completed_years() {
        let birth = Date::parse_iso("2010-06-15").expect("date");
        assert_eq!(
            birth.age_on(Date::parse_iso("2026-06-14").expect("date")),
            15
        );
        assert_eq!(
            birth.age_on(Date::parse_iso("2026-06-15").expect("date")),
            16
        );
        let leap = Date::parse_iso("2008-02-29").expect("date");
        assert_eq!(
            leap.age_on(Date::parse_iso("2026-02-28").expect("date")),
            17
        );
        assert_eq!(
            leap.age_on(Date::parse_iso("2026-03-01").expect("date")),
            18
        );
    }
}
