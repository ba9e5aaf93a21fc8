//! The one row codec: stored rows of both tables as compact, versioned bytes.
//!
//! Boundary: stored bytes are decoded as untrusted (a damaged file must give an error naming the
//! key, never a panic). Layout, all integers little-endian:
//! household: version u8, household_id u64, head_id u64, members u8, cause u8, status u8,
//! registered_year u16, exit_year u16 (0 = null), income i64 (fen), flags u8 (housing, water,
//! medical, relocated), industry u8, then four length-prefixed (u16) strings: head_name,
//! cadre_id, relocation_site, phone (length 0xFFFF = null).
//! person: version u8, person_id u64, household_id u64, relation, gender u8, birth_date i32
//! (days), education, health, labor u8, flags u8 (in_school, employed).

use tiermesh_federation::date::Date;
use tiermesh_federation::record::{
    Cause, Education, Gender, Health, Household, HouseholdId, IdNumber, Industry, Labor, Person,
    Relation, Status,
};
use tiermesh_federation::region::RegionCode;
use tiermesh_federation::standard::validate::INCOME_MAX_FEN;

/// Row format version written by this build.
pub const ROW_FORMAT_VERSION: u8 = 1;
const NULL_LENGTH: u16 = u16::MAX;

/// Why stored bytes are not a row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowCodecError {
    /// The bytes ended early.
    #[error("row truncated at byte {offset}")]
    Truncated { offset: usize },
    /// Unknown format version.
    #[error("row format version {version} is not known (this build reads {ROW_FORMAT_VERSION})")]
    Version { version: u8 },
    /// A field holds a value the standard does not allow.
    #[error("field {field} holds an invalid value")]
    Field { field: &'static str },
    /// Bytes were left over after the row.
    #[error("{extra} stray bytes after the row")]
    Trailing { extra: usize },
}

/// Appends the encoding of a household to `out`.
pub fn encode_household(row: &Household, out: &mut Vec<u8>) {
    out.push(ROW_FORMAT_VERSION);
    out.extend_from_slice(&row.household_id.0.to_le_bytes());
    out.extend_from_slice(&row.head_id.0.to_le_bytes());
    out.push(row.members);
    out.push(row.cause.code());
    out.push(row.status.code());
    out.extend_from_slice(&row.registered_year.to_le_bytes());
    out.extend_from_slice(&row.exit_year.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&row.income_per_capita.to_le_bytes());
    let flags = u8::from(row.housing_safe)
        | u8::from(row.water_safe) << 1
        | u8::from(row.medical_insured) << 2
        | u8::from(row.relocated) << 3;
    out.push(flags);
    out.push(row.industry.code());
    put_text(out, Some(&row.head_name));
    put_text(out, Some(&row.cadre_id));
    put_text(out, row.relocation_site.as_deref());
    put_text(out, row.phone.as_deref());
}

/// Appends the encoding of a person to `out`.
pub fn encode_person(row: &Person, out: &mut Vec<u8>) {
    out.push(ROW_FORMAT_VERSION);
    out.extend_from_slice(&row.person_id.0.to_le_bytes());
    out.extend_from_slice(&row.household_id.0.to_le_bytes());
    out.push(row.relation.code());
    out.push(row.gender.code());
    out.extend_from_slice(&row.birth_date.days().to_le_bytes());
    out.push(row.education.code());
    out.push(row.health.code());
    out.push(row.labor.code());
    out.push(u8::from(row.in_school) | u8::from(row.employed) << 1);
}

fn put_text(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        // Validation bounds every text far below 64 KiB; a longer one is a programmer error.
        Some(text) => {
            let length = u16::try_from(text.len()).expect("validated text fits a u16 length");
            assert!(length != NULL_LENGTH);
            out.extend_from_slice(&length.to_le_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        None => out.extend_from_slice(&NULL_LENGTH.to_le_bytes()),
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], RowCodecError> {
        let end = self
            .offset
            .checked_add(count)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(RowCodecError::Truncated {
                offset: self.offset,
            })?;
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RowCodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, RowCodecError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, RowCodecError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, RowCodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, RowCodecError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, RowCodecError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    fn text(&mut self, field: &'static str) -> Result<Option<String>, RowCodecError> {
        let length = self.u16()?;
        if length == NULL_LENGTH {
            return Ok(None);
        }
        let bytes = self.take(usize::from(length))?;
        let text = std::str::from_utf8(bytes).map_err(|_| RowCodecError::Field { field })?;
        Ok(Some(text.to_string()))
    }

    fn version(&mut self) -> Result<(), RowCodecError> {
        match self.u8()? {
            ROW_FORMAT_VERSION => Ok(()),
            version => Err(RowCodecError::Version { version }),
        }
    }

    fn finish(self) -> Result<(), RowCodecError> {
        match self.bytes.len() - self.offset {
            0 => Ok(()),
            extra => Err(RowCodecError::Trailing { extra }),
        }
    }
}

fn field<T>(value: Option<T>, field: &'static str) -> Result<T, RowCodecError> {
    value.ok_or(RowCodecError::Field { field })
}

/// Decodes a household.
pub fn decode_household(bytes: &[u8]) -> Result<Household, RowCodecError> {
    let mut reader = Reader { bytes, offset: 0 };
    reader.version()?;
    let household_id = reader.u64()?;
    if household_id >= HouseholdId::LIMIT {
        return Err(RowCodecError::Field {
            field: "household_id",
        });
    }
    let region_code =
        RegionCode::from_u64(household_id / 10_000).map_err(|_| RowCodecError::Field {
            field: "region_code",
        })?;
    let head_id = IdNumber(reader.u64()?);
    let members = reader.u8()?;
    let cause = field(Cause::from_code(reader.u8()?), "cause")?;
    let status = field(Status::from_code(reader.u8()?), "status")?;
    let registered_year = reader.u16()?;
    let exit_year = match reader.u16()? {
        0 => None,
        year => Some(year),
    };
    let income_per_capita = reader.i64()?;
    if !(0..=INCOME_MAX_FEN).contains(&income_per_capita) {
        return Err(RowCodecError::Field {
            field: "income_per_capita",
        });
    }
    let flags = reader.u8()?;
    let industry = field(Industry::from_code(reader.u8()?), "industry")?;
    let head_name = field(reader.text("head_name")?, "head_name")?;
    let cadre_id = field(reader.text("cadre_id")?, "cadre_id")?;
    let relocation_site = reader.text("relocation_site")?;
    let phone = reader.text("phone")?;
    reader.finish()?;
    Ok(Household {
        household_id: HouseholdId(household_id),
        region_code,
        head_id,
        head_name,
        members,
        cause,
        status,
        registered_year,
        exit_year,
        income_per_capita,
        housing_safe: flags & 1 != 0,
        water_safe: flags & 2 != 0,
        medical_insured: flags & 4 != 0,
        cadre_id,
        industry,
        relocated: flags & 8 != 0,
        relocation_site,
        phone,
    })
}

/// Decodes a person.
pub fn decode_person(bytes: &[u8]) -> Result<Person, RowCodecError> {
    let mut reader = Reader { bytes, offset: 0 };
    reader.version()?;
    let person_id = IdNumber(reader.u64()?);
    let household_id = reader.u64()?;
    if household_id >= HouseholdId::LIMIT {
        return Err(RowCodecError::Field {
            field: "household_id",
        });
    }
    let relation = field(Relation::from_code(reader.u8()?), "relation")?;
    let gender = field(Gender::from_code(reader.u8()?), "gender")?;
    let birth_date = Date::from_days(reader.i32()?);
    let education = field(Education::from_code(reader.u8()?), "education")?;
    let health = field(Health::from_code(reader.u8()?), "health")?;
    let labor = field(Labor::from_code(reader.u8()?), "labor")?;
    let flags = reader.u8()?;
    reader.finish()?;
    Ok(Person {
        person_id,
        household_id: HouseholdId(household_id),
        relation,
        gender,
        birth_date,
        education,
        health,
        labor,
        in_school: flags & 1 != 0,
        employed: flags & 2 != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn household() -> Household {
        Household {
            household_id: HouseholdId(5201020012010001),
            region_code: "520102001201".parse().expect("code"),
            head_id: IdNumber::pack(11010519491231002, 10),
            head_name: "张三".to_string(),
            members: 3,
            cause: Cause::Illness,
            status: Status::Exited,
            registered_year: 2015,
            exit_year: Some(2019),
            income_per_capita: 812_345,
            housing_safe: true,
            water_safe: false,
            medical_insured: true,
            cadre_id: "=SUM(A1)".to_string(),
            industry: Industry::Breeding,
            relocated: true,
            relocation_site: Some("安置点".to_string()),
            phone: None,
        }
    }

    #[test]
    fn rows_round_trip() {
        let row = household();
        let mut bytes = Vec::new();
        encode_household(&row, &mut bytes);
        assert_eq!(decode_household(&bytes), Ok(row));
        let person = Person {
            person_id: IdNumber::pack(11010519491231002, 10),
            household_id: HouseholdId(5201020012010001),
            relation: Relation::Head,
            gender: Gender::Female,
            birth_date: Date::from_days(-7306),
            education: Education::College,
            health: Health::Chronic,
            labor: Labor::Partial,
            in_school: false,
            employed: true,
        };
        let mut bytes = Vec::new();
        encode_person(&person, &mut bytes);
        assert_eq!(decode_person(&bytes), Ok(person));
    }

    #[test]
    fn damaged_rows_are_errors() {
        let mut bytes = Vec::new();
        encode_household(&household(), &mut bytes);
        assert_eq!(
            decode_household(&bytes[..10]),
            Err(RowCodecError::Truncated { offset: 9 })
        );
        let mut versioned = bytes.clone();
        versioned[0] = 9;
        assert_eq!(
            decode_household(&versioned),
            Err(RowCodecError::Version { version: 9 })
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            decode_household(&trailing),
            Err(RowCodecError::Trailing { extra: 1 })
        );
        for income in [-1, INCOME_MAX_FEN + 1] {
            let mut bytes = Vec::new();
            encode_household(
                &Household {
                    income_per_capita: income,
                    ..household()
                },
                &mut bytes,
            );
            assert_eq!(
                decode_household(&bytes),
                Err(RowCodecError::Field {
                    field: "income_per_capita"
                }),
                "income {income}"
            );
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_household(&bytes);
            let _ = decode_person(&bytes);
        }
    }
}
