//! RFC 3339 date-times (RFC 7643 §2.3.5 `dateTime`), read as instants so that
//! `2015-05-13T04:42:34Z` and `2015-05-13T06:42:34+02:00` compare equal.

/// An instant: seconds since 1970-01-01T00:00:00Z and nanoseconds within the second.
pub(crate) type Instant = (i64, u32);

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `None` when `text` is not one.
pub(crate) fn parse_rfc3339(text: &str) -> Option<Instant> {
    let bytes = text.as_bytes();
    if !text.is_ascii() || bytes.len() < 20 || !matches!(bytes[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = parse_date(&text[..10])?;
    let (seconds_of_day, nanos, rest) = parse_time(&text[11..])?;
    let offset = parse_offset(rest)?;
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + seconds_of_day - offset, nanos))
}

fn parse_date(text: &str) -> Option<(i64, u32, u32)> {
    let bytes = text.as_bytes();
    if bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return None;
    }
    let year = digits(&text[..4])?;
    let month = digits(&text[5..7])? as u32;
    let day = digits(&text[8..10])? as u32;
    let valid = (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month);
    valid.then_some((year, month, day))
}

/// Reads `HH:MM:SS[.fraction]`, returning the seconds of the day, the nanoseconds and the rest.
fn parse_time(text: &str) -> Option<(i64, u32, &str)> {
    let bytes = text.as_bytes();
    if bytes.len() < 8 || bytes[2] != b':' || bytes[5] != b':' {
        return None;
    }
    let (hour, minute, second) = (
        digits(&text[..2])?,
        digits(&text[3..5])?,
        digits(&text[6..8])?,
    );
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &text[8..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let length = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if length == 0 {
            return None;
        }
        let kept = &fraction[..length.min(9)];
        nanos = kept.parse::<u32>().ok()? * 10u32.pow(9 - kept.len() as u32);
        rest = &fraction[length..];
    }
    Some((hour * 3600 + minute * 60 + second, nanos, rest))
}

/// Reads `Z` or `±HH:MM` (the whole rest), returning the offset in seconds.
fn parse_offset(text: &str) -> Option<i64> {
    if text.eq_ignore_ascii_case("z") {
        return Some(0);
    }
    let bytes = text.as_bytes();
    if bytes.len() != 6 || bytes[3] != b':' {
        return None;
    }
    let sign = match bytes[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (hours, minutes) = (digits(&text[1..3])?, digits(&text[4..6])?);
    (hours <= 23 && minutes <= 59).then_some(sign * (hours * 3600 + minutes * 60))
}

fn digits(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_the_epoch_when_parsed_then_zero() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some((0, 0)));
    }

    #[test]
    fn given_a_known_instant_when_parsed_then_its_unix_seconds() {
        assert_eq!(
            parse_rfc3339("2011-05-13T04:42:34Z"),
            Some((1_305_261_754, 0))
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T12:00:00z"),
            Some((951_825_600, 0))
        );
    }

    #[test]
    fn given_the_same_instant_in_two_offsets_when_parsed_then_equal() {
        assert_eq!(
            parse_rfc3339("2015-05-13T06:42:34+02:00"),
            parse_rfc3339("2015-05-13T04:42:34Z")
        );
        assert_eq!(
            parse_rfc3339("2015-05-12T23:42:34-05:00"),
            parse_rfc3339("2015-05-13T04:42:34Z")
        );
    }

    #[test]
    fn given_fractions_when_parsed_then_nanoseconds() {
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:01.5Z"),
            Some((1, 500_000_000))
        );
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00.1234567891Z"),
            Some((0, 123_456_789))
        );
    }

    #[test]
    fn given_malformed_date_times_when_parsed_then_none() {
        for text in [
            "",
            "2011-05-13",
            "2011-05-13T04:42:34",
            "2011-13-13T04:42:34Z",
            "2011-02-30T04:42:34Z",
            "2011-05-13T24:00:00Z",
            "2011-05-13T04:42:34.Z",
            "2011-05-13T04:42:34+0200",
            "2011-05-13X04:42:34Z",
            "２０１１-05-13T04:42:34Z",
            "2011-05-13T04:42:34+02:00junk",
        ] {
            assert_eq!(parse_rfc3339(text), None, "{text:?}");
        }
    }
}
