//! The typed records of the two tables of the data standard, and their enumerations.
//!
//! Every enumeration is stored as a one-byte code: its index in `NAMES`. Codes are part of the
//! on-disk row format, so variants are only ever appended.

use serde::{Deserialize, Serialize};

use crate::date::Date;
use crate::region::RegionCode;

macro_rules! code_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[repr(u8)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The exact lower-case names the standard accepts, in code order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];
            const VARIANTS: &'static [$name] = &[$($name::$variant),+];

            /// Parses the exact name.
            pub fn parse(text: &str) -> Option<$name> {
                Self::NAMES.iter().position(|name| *name == text).map(|index| Self::VARIANTS[index])
            }

            /// The variant with this code, if any.
            pub fn from_code(code: u8) -> Option<$name> {
                Self::VARIANTS.get(usize::from(code)).copied()
            }

            /// The one-byte code.
            pub fn code(self) -> u8 {
                self as u8
            }

            /// The exact name.
            pub fn name(self) -> &'static str {
                Self::NAMES[self as usize]
            }
        }
    };
}

code_enum!(
    /// 致贫原因: the main cause of poverty.
    Cause {
        Illness = "illness",
        Disability = "disability",
        Education = "education",
        Disaster = "disaster",
        Marriage = "marriage",
        Land = "land",
        Water = "water",
        Skills = "skills",
        Labor = "labor",
        Capital = "capital",
        Transport = "transport",
        Motivation = "motivation",
        Other = "other",
    }
);

code_enum!(
    /// A household's standing.
    Status {
        Poor = "poor",
        Exited = "exited",
        Returned = "returned",
        Monitored = "monitored",
    }
);

code_enum!(
    /// The household's supported industry.
    Industry {
        Planting = "planting",
        Breeding = "breeding",
        Processing = "processing",
        Circulation = "circulation",
        None = "none",
    }
);

code_enum!(
    /// A person's relation to the household head.
    Relation {
        Head = "head",
        Spouse = "spouse",
        Child = "child",
        Parent = "parent",
        Grandchild = "grandchild",
        Other = "other",
    }
);

code_enum!(
    /// Gender as written in the standard.
    Gender {
        Male = "M",
        Female = "F",
    }
);

code_enum!(
    /// Highest education level.
    Education {
        None = "none",
        Primary = "primary",
        Junior = "junior",
        Senior = "senior",
        Vocational = "vocational",
        College = "college",
    }
);

code_enum!(
    /// Health condition.
    Health {
        Healthy = "healthy",
        Chronic = "chronic",
        Serious = "serious",
        Disabled = "disabled",
    }
);

code_enum!(
    /// Capacity to work.
    Labor {
        Full = "full",
        Partial = "partial",
        None = "none",
    }
);

/// A 16-digit household id: the village code followed by a 4-digit serial.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct HouseholdId(pub u64);

impl HouseholdId {
    /// One more than the largest 16-digit value.
    pub const LIMIT: u64 = 10_000_000_000_000_000;

    /// The village part, as a raw 12-digit value.
    pub fn region_value(self) -> u64 {
        self.0 / 10_000
    }
}

impl std::fmt::Display for HouseholdId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016}", self.0)
    }
}

/// A validated 18-character resident ID number (GB 11643), packed into a `u64`:
/// the first 17 digits times 11 plus the check value (0-10, where 10 is `X`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IdNumber(pub u64);

impl IdNumber {
    /// Packs 17 digits and a check value; the caller has validated them.
    pub fn pack(body: u64, check: u8) -> IdNumber {
        IdNumber(body * 11 + u64::from(check))
    }

    /// The 17-digit body.
    pub fn body(self) -> u64 {
        self.0 / 11
    }

    /// The check value 0-10 (10 is written `X`).
    pub fn check(self) -> u8 {
        (self.0 % 11) as u8
    }

    /// The 18 characters.
    pub fn text(self) -> String {
        let check = match self.check() {
            10 => 'X',
            digit => char::from(b'0' + digit),
        };
        format!("{:017}{check}", self.body())
    }

    /// The 6-digit county code of birth registration.
    pub fn county_code(self) -> u64 {
        self.body() / 100_000_000_000
    }

    /// The birth date written in characters 7-14 (valid for a validated number).
    pub fn birth_date(self) -> Option<Date> {
        let text = format!("{:017}", self.body());
        Date::parse_compact(&text.as_bytes()[6..14])
    }

    /// The gender given by the parity of the 17th character.
    pub fn gender(self) -> Gender {
        if self.body() % 2 == 1 {
            Gender::Male
        } else {
            Gender::Female
        }
    }
}

impl std::fmt::Display for IdNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

impl std::fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdNumber({})", self.text())
    }
}

/// Money in fen (1/100 yuan).
pub type Cents = i64;

/// One row of `households` (建档立卡贫困户), validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Household {
    pub household_id: HouseholdId,
    pub region_code: RegionCode,
    pub head_id: IdNumber,
    pub head_name: String,
    pub members: u8,
    pub cause: Cause,
    pub status: Status,
    pub registered_year: u16,
    pub exit_year: Option<u16>,
    pub income_per_capita: Cents,
    pub housing_safe: bool,
    pub water_safe: bool,
    pub medical_insured: bool,
    pub cadre_id: String,
    pub industry: Industry,
    pub relocated: bool,
    pub relocation_site: Option<String>,
    pub phone: Option<String>,
}

/// One row of `persons` (家庭成员), validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub person_id: IdNumber,
    pub household_id: HouseholdId,
    pub relation: Relation,
    pub gender: Gender,
    pub birth_date: Date,
    pub education: Education,
    pub health: Health,
    pub labor: Labor,
    pub in_school: bool,
    pub employed: bool,
}

/// Formats fen as yuan with two decimals.
pub fn format_cents(cents: Cents) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let magnitude = cents.unsigned_abs();
    format!("{sign}{}.{:02}", magnitude / 100, magnitude % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_codes_round_trip() {
        for (index, name) in Cause::NAMES.iter().enumerate() {
            let cause = Cause::parse(name).expect("known name");
            assert_eq!(usize::from(cause.code()), index);
            assert_eq!(Cause::from_code(cause.code()), Some(cause));
            assert_eq!(cause.name(), *name);
        }
        assert_eq!(Cause::parse("Illness"), None);
        assert_eq!(Gender::parse("M"), Some(Gender::Male));
        assert_eq!(Status::from_code(4), None);
    }

    #[test]
    fn id_numbers_pack_and_unpack() {
        let id = IdNumber::pack(11010519491231002, 10);
        assert_eq!(id.text(), "11010519491231002X");
        assert_eq!(id.county_code(), 110105);
        assert_eq!(
            id.birth_date().map(|d| d.to_string()),
            Some("1949-12-31".into())
        );
        assert_eq!(id.gender(), Gender::Female);
        assert_eq!(format_cents(123456), "1234.56");
        assert_eq!(format_cents(5), "0.05");
    }
}
