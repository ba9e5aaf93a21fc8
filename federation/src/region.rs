//! Region codes (统计用区划代码): the 12-digit codes that name every tier, and the tier tree they imply.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The six administrative tiers, from the root down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    National,
    Province,
    Prefecture,
    County,
    Township,
    Village,
}

impl Tier {
    /// Every tier, root first.
    pub const ALL: [Tier; 6] = [
        Tier::National,
        Tier::Province,
        Tier::Prefecture,
        Tier::County,
        Tier::Township,
        Tier::Village,
    ];

    /// How many leading digits of a code are significant at this tier.
    pub fn prefix_digits(self) -> u32 {
        match self {
            Tier::National => 0,
            Tier::Province => 2,
            Tier::Prefecture => 4,
            Tier::County => 6,
            Tier::Township => 9,
            Tier::Village => 12,
        }
    }

    /// The lower-case English name used in configs and output.
    pub fn name(self) -> &'static str {
        match self {
            Tier::National => "national",
            Tier::Province => "province",
            Tier::Prefecture => "prefecture",
            Tier::County => "county",
            Tier::Township => "township",
            Tier::Village => "village",
        }
    }

    /// The tier one level down, if any.
    pub fn child(self) -> Option<Tier> {
        let index = Tier::ALL.iter().position(|tier| *tier == self)?;
        Tier::ALL.get(index + 1).copied()
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A valid 12-digit region code, kept as its decimal value.
///
/// Invariant: the non-zero segments form a prefix (`PP CC DD TTT VVV`): a code never has a zero
/// segment above a non-zero one, and only the national root has a zero province segment.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RegionCode(u64);

/// Why a text is not a region code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegionCodeError {
    /// Not exactly 12 ASCII digits.
    #[error("a region code is exactly 12 digits, e.g. 520102001201")]
    Shape,
    /// A zero segment sits above a non-zero one.
    #[error("segment {segment} is 0 while a lower segment is not (codes read PP CC DD TTT VVV)")]
    Gap { segment: &'static str },
}

const SEGMENT_NAMES: [&str; 5] = ["province", "prefecture", "county", "township", "village"];
/// Segment widths (digits) of `PP CC DD TTT VVV`.
const SEGMENT_WIDTHS: [u32; 5] = [2, 2, 2, 3, 3];

impl RegionCode {
    /// The national root, `000000000000`.
    pub const NATIONAL: RegionCode = RegionCode(0);
    /// One more than the largest 12-digit value.
    pub const LIMIT: u64 = 1_000_000_000_000;

    /// Validates a numeric code.
    pub fn from_u64(value: u64) -> Result<RegionCode, RegionCodeError> {
        if value >= Self::LIMIT {
            return Err(RegionCodeError::Shape);
        }
        let segments = segments(value);
        let mut seen_zero: Option<usize> = None;
        for (index, segment) in segments.iter().enumerate() {
            if *segment == 0 {
                seen_zero.get_or_insert(index);
            } else if let Some(zero_index) = seen_zero {
                return Err(RegionCodeError::Gap {
                    segment: SEGMENT_NAMES[zero_index],
                });
            }
        }
        Ok(RegionCode(value))
    }

    /// The code's decimal value.
    pub fn value(self) -> u64 {
        self.0
    }

    /// The tier the code names, read from its trailing zeros.
    pub fn tier(self) -> Tier {
        let segments = segments(self.0);
        match segments.iter().rposition(|segment| *segment != 0) {
            None => Tier::National,
            Some(index) => Tier::ALL[index + 1],
        }
    }

    /// True when `other` lies inside this region (a region contains itself).
    pub fn contains(self, other: RegionCode) -> bool {
        let divisor = 10u64.pow(12 - self.tier().prefix_digits());
        other.0 / divisor == self.0 / divisor
    }

    /// The region at `tier` that contains this one; `None` when `tier` is below this code's tier.
    pub fn ancestor_at(self, tier: Tier) -> Option<RegionCode> {
        if tier > self.tier() {
            return None;
        }
        Some(RegionCode(truncate_to(self.0, tier)))
    }

    /// The parent region one tier up; `None` for the national root.
    pub fn parent(self) -> Option<RegionCode> {
        let tier = self.tier();
        let index = Tier::ALL.iter().position(|t| *t == tier)?;
        let parent_tier = *Tier::ALL.get(index.checked_sub(1)?)?;
        self.ancestor_at(parent_tier)
    }

    /// The inclusive range of 12-digit values inside this region.
    pub fn value_range(self) -> (u64, u64) {
        let span = 10u64.pow(12 - self.tier().prefix_digits());
        (self.0, self.0 + span - 1)
    }

    /// The significant prefix (2, 4, 6, 9 or 12 digits; empty for the root).
    pub fn prefix(self) -> String {
        let text = self.to_string();
        text[..self.tier().prefix_digits() as usize].to_string()
    }
}

/// Zeroes every digit below `tier`'s prefix.
pub fn truncate_to(value: u64, tier: Tier) -> u64 {
    let divisor = 10u64.pow(12 - tier.prefix_digits());
    value / divisor * divisor
}

fn segments(value: u64) -> [u64; 5] {
    let mut out = [0; 5];
    let mut rest = value;
    for index in (0..5).rev() {
        let modulus = 10u64.pow(SEGMENT_WIDTHS[index]);
        out[index] = rest % modulus;
        rest /= modulus;
    }
    out
}

impl FromStr for RegionCode {
    type Err = RegionCodeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RegionCodeError::Shape);
        }
        let value = text.parse::<u64>().map_err(|_| RegionCodeError::Shape)?;
        RegionCode::from_u64(value)
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:012}", self.0)
    }
}

impl fmt::Debug for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegionCode({:012})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> RegionCode {
        text.parse().expect("valid code")
    }

    #[test]
    fn tiers_follow_trailing_zeros() {
        let cases = [
            ("000000000000", Tier::National),
            ("520000000000", Tier::Province),
            ("520100000000", Tier::Prefecture),
            ("520102000000", Tier::County),
            ("520102001000", Tier::Township),
            ("520102001201", Tier::Village),
        ];
        for (text, tier) in cases {
            assert_eq!(code(text).tier(), tier, "{text}");
        }
    }

    #[test]
    fn malformed_codes_are_refused() {
        assert_eq!(
            "52010200120".parse::<RegionCode>(),
            Err(RegionCodeError::Shape)
        );
        assert_eq!(
            "52010200120a".parse::<RegionCode>(),
            Err(RegionCodeError::Shape)
        );
        assert_eq!(
            "+52010200120".parse::<RegionCode>(),
            Err(RegionCodeError::Shape)
        );
        assert_eq!(
            "520002001201".parse::<RegionCode>(),
            Err(RegionCodeError::Gap {
                segment: "prefecture"
            })
        );
        assert_eq!(
            "000100000000".parse::<RegionCode>(),
            Err(RegionCodeError::Gap {
                segment: "province"
            })
        );
    }

    #[test]
    fn containment_and_ancestors() {
        let village = code("520102001201");
        assert!(code("520000000000").contains(village));
        assert!(code("520102000000").contains(village));
        assert!(!code("530000000000").contains(village));
        assert!(RegionCode::NATIONAL.contains(village));
        assert!(village.contains(village));
        assert!(!village.contains(code("520102000000")));
        assert_eq!(
            village.ancestor_at(Tier::County),
            Some(code("520102000000"))
        );
        assert_eq!(code("520102000000").ancestor_at(Tier::Village), None);
        assert_eq!(village.parent(), Some(code("520102001000")));
        assert_eq!(RegionCode::NATIONAL.parent(), None);
        assert_eq!(
            code("520100000000").value_range(),
            (520100000000, 520199999999)
        );
        assert_eq!(code("520102001000").prefix(), "520102001");
    }
}
