//! GB 11643 resident ID numbers: shape, check character, birth date.

use crate::date::Date;
use crate::record::IdNumber;

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// `sum mod 11` -> check value (10 is written `X`).
const CHECK_VALUES: [u8; 11] = [1, 0, 10, 9, 8, 7, 6, 5, 4, 3, 2];

/// Why a text is not a valid ID number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdNumberError {
    /// Not 17 digits followed by a digit or `X`.
    Shape,
    /// The check character does not match; carries the expected one.
    Check { expected: char },
    /// Characters 7-14 are not a calendar date.
    BirthDate,
    /// The birth date lies after the reference day.
    Future,
}

impl IdNumberError {
    /// A sentence for an import report.
    pub fn message(self) -> String {
        match self {
            IdNumberError::Shape => {
                "an ID number is 17 digits then a digit or upper-case X (GB 11643)".to_string()
            }
            IdNumberError::Check { expected } => {
                format!("check character is wrong: these 17 digits need '{expected}'")
            }
            IdNumberError::BirthDate => {
                "characters 7-14 must be a real birth date YYYYMMDD".to_string()
            }
            IdNumberError::Future => {
                "the birth date in characters 7-14 is in the future".to_string()
            }
        }
    }
}

/// The check value (0-10, 10 = `X`) for 17 ASCII digits.
pub fn check_value(body: &[u8; 17]) -> u8 {
    let sum: u32 = body
        .iter()
        .zip(WEIGHTS)
        .map(|(digit, weight)| u32::from(digit - b'0') * weight)
        .sum();
    CHECK_VALUES[(sum % 11) as usize]
}

/// The character written for a check value.
pub fn check_char(value: u8) -> char {
    if value == 10 {
        'X'
    } else {
        char::from(b'0' + value)
    }
}

/// Validates an ID number written on or before `today`.
pub fn parse(text: &str, today: Date) -> Result<IdNumber, IdNumberError> {
    let bytes = text.as_bytes();
    if bytes.len() != 18 || !bytes[..17].iter().all(u8::is_ascii_digit) {
        return Err(IdNumberError::Shape);
    }
    let written = match bytes[17] {
        b'X' => 10,
        digit @ b'0'..=b'9' => digit - b'0',
        _ => return Err(IdNumberError::Shape),
    };
    let mut body = [0u8; 17];
    body.copy_from_slice(&bytes[..17]);
    let expected = check_value(&body);
    if written != expected {
        return Err(IdNumberError::Check {
            expected: check_char(expected),
        });
    }
    let birth = Date::parse_compact(&bytes[6..14]).ok_or(IdNumberError::BirthDate)?;
    if birth > today {
        return Err(IdNumberError::Future);
    }
    let value = body
        .iter()
        .fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0'));
    Ok(IdNumber::pack(value, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> Date {
        Date::parse_iso("2026-11-29").expect("date")
    }

    #[test]
    fn accepts_valid_numbers() {
        // The standard's own worked example and an X-check number.
        let id = parse("11010519491231002X", today()).expect("valid");
        assert_eq!(id.text(), "11010519491231002X");
        let id = parse("440524188001010014", today()).expect("valid");
        assert_eq!(
            id.birth_date().map(|d| d.to_string()),
            Some("1880-01-01".into())
        );
    }

    #[test]
    fn refuses_broken_numbers() {
        assert_eq!(
            parse("11010519491231002x", today()),
            Err(IdNumberError::Shape)
        );
        assert_eq!(
            parse("11010519491231002", today()),
            Err(IdNumberError::Shape)
        );
        assert_eq!(
            parse("110105194912310021", today()),
            Err(IdNumberError::Check { expected: 'X' })
        );
        // 1949-02-30 with a correct check character.
        let mut body = *b"11010519490230002";
        let check = check_char(check_value(&body));
        let text = format!("{}{check}", std::str::from_utf8(&body).expect("ascii"));
        assert_eq!(parse(&text, today()), Err(IdNumberError::BirthDate));
        body.copy_from_slice(b"11010520300101002");
        let check = check_char(check_value(&body));
        let text = format!("{}{check}", std::str::from_utf8(&body).expect("ascii"));
        assert_eq!(parse(&text, today()), Err(IdNumberError::Future));
    }
}
