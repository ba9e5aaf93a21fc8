//! The columnar image of a node's tables: one vector per queryable column, dictionary-coded,
//! kept in step with the stored rows and rebuilt from them at start.
//!
//! Rows live in slots. An upsert overwrites its slot in place, a removal clears the slot's
//! `alive` flag; slots are never reused, so a slot number stays valid for the image's life.
//! Personal columns (names, ID numbers, phones) are not kept here, except each person's birth
//! date, which only `age`/`age_band` may read.

use crate::fast_hash::FastMap;
use crate::slot_index::SlotIndex;

use crate::record::{Cents, Household, HouseholdId, IdNumber, Person};
use crate::standard::validate::INCOME_MAX_FEN;

/// Code used in a dictionary-coded column for a null cell.
pub const NULL_CODE: u32 = u32::MAX;
/// Value of `exit_year` for a null cell.
pub const NULL_YEAR: u16 = 0;
/// The most rows of a table that room is made for ahead of time (`Image::reserve`); a county
/// holds well under a million households.
pub const RESERVE_ROWS_MAX: usize = 1 << 25;

/// A household's income as its column holds it. The standard bounds income to
/// `0..=INCOME_MAX_FEN`, which validation checks on import and the row codec on reading a stored
/// row, so the value always fits; were it ever outside, it would be clipped, never wrapped.
fn fen_column(fen: Cents) -> i32 {
    i32::try_from(fen.clamp(0, INCOME_MAX_FEN)).unwrap_or(i32::MAX)
}

/// Distinct strings of one text column, each with a dense code in first-seen order.
#[derive(Clone, Debug, Default)]
pub struct Dictionary {
    values: Vec<String>,
    codes: FastMap<String, u32>,
}

impl Dictionary {
    /// The code of `value`, adding it when new.
    pub fn intern(&mut self, value: &str) -> u32 {
        if let Some(code) = self.codes.get(value) {
            return *code;
        }
        let code = self.values.len() as u32;
        self.values.push(value.to_string());
        self.codes.insert(value.to_string(), code);
        code
    }

    /// The code of `value` if present.
    pub fn code(&self, value: &str) -> Option<u32> {
        self.codes.get(value).copied()
    }

    /// The string for `code`.
    pub fn value(&self, code: u32) -> Option<&str> {
        self.values.get(code as usize).map(String::as_str)
    }

    /// Every value, in code order.
    pub fn values(&self) -> &[String] {
        &self.values
    }
}

/// The queryable columns of `households`, one entry per slot.
#[derive(Clone, Debug, Default)]
pub struct HouseholdColumns {
    pub alive: Vec<bool>,
    pub household_id: Vec<u64>,
    pub region_code: Vec<u64>,
    pub members: Vec<u8>,
    pub cause: Vec<u8>,
    pub status: Vec<u8>,
    pub registered_year: Vec<u16>,
    /// `NULL_YEAR` when null.
    pub exit_year: Vec<u16>,
    /// Fen, as 32 bits: the standard bounds it to `0..=INCOME_MAX_FEN` (10^8), and half the
    /// width is half the memory a WHERE or an aggregate over income streams through.
    pub income_per_capita: Vec<i32>,
    pub housing_safe: Vec<bool>,
    pub water_safe: Vec<bool>,
    pub medical_insured: Vec<bool>,
    /// Codes into `cadre_ids`.
    pub cadre_id: Vec<u32>,
    pub industry: Vec<u8>,
    pub relocated: Vec<bool>,
    /// Codes into `relocation_sites`, `NULL_CODE` when null.
    pub relocation_site: Vec<u32>,
    pub cadre_ids: Dictionary,
    pub relocation_sites: Dictionary,
    /// Live persons stored for the household (for `members-mismatch`).
    pub persons_stored: Vec<u16>,
    /// The head's ID number, packed; personal: only the import's head check reads it, never a query.
    pub head_id: Vec<u64>,
}

/// The queryable columns of `persons`, one entry per slot.
#[derive(Clone, Debug, Default)]
pub struct PersonColumns {
    pub alive: Vec<bool>,
    /// The slot of the person's household in `HouseholdColumns`.
    pub household_slot: Vec<u32>,
    pub relation: Vec<u8>,
    pub gender: Vec<u8>,
    /// Days since 1970-01-01; personal, read only through `age`/`age_band`.
    pub birth_date: Vec<i32>,
    pub education: Vec<u8>,
    pub health: Vec<u8>,
    pub labor: Vec<u8>,
    pub in_school: Vec<bool>,
    pub employed: Vec<bool>,
}

/// An empty person index with room for a bulk load, its memory already written once.
///
/// In a fresh process the first write to each page of new memory costs the page's zeroing by
/// the system; the person index of ten million persons is over 200 MB, and random inserts reach
/// every page of it within the first thousands, so a writer filling it stalls at once on all of
/// them. Made in another thread ahead of time ([`PersonIndex::prepared`]) and handed to
/// [`Image::adopt_person_index`], that cost leaves the writer's path.
#[derive(Debug, Default)]
pub struct PersonIndex(SlotIndex);

impl PersonIndex {
    /// An index with room for `persons` entries whose every page has been written.
    pub fn prepared(persons: usize) -> PersonIndex {
        PersonIndex(SlotIndex::with_capacity(persons))
    }

    /// Entries the index holds without growing.
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// True when the index holds no entry (as a prepared one does).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where `Image::place_person` put a person.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The slot of the row's household.
    pub household_slot: u32,
    /// The household (and its slot) the person was stored under before: none for a new person,
    /// the row's own household for an update in place.
    pub previous: Option<(HouseholdId, u32)>,
}

impl Placed {
    /// The household the person was stored under before.
    pub fn previous_household(&self) -> Option<HouseholdId> {
        self.previous.map(|(id, _)| id)
    }
}

/// A node's tables in columnar form.
#[derive(Clone, Debug, Default)]
pub struct Image {
    pub households: HouseholdColumns,
    pub persons: PersonColumns,
    household_slots: SlotIndex,
    person_slots: SlotIndex,
    households_alive: usize,
    persons_alive: usize,
    /// The household last looked up by `upsert_person`, with its slot.
    last_household: Option<(HouseholdId, u32)>,
    /// The storage sequence number the image reflects.
    pub data_version: u64,
}

impl Image {
    /// An empty image.
    pub fn new() -> Image {
        Image::default()
    }

    /// Makes room for about this many more rows: the index for that many, the columns for an
    /// eighth more. An estimate that falls a little short then costs no column its doubling
    /// (a copy, and memory touched for the first time); reserved and unused column memory is
    /// never touched. The index gets no margin: its room is rounded up to a power of two. Each
    /// count is an estimate (from a database's files, from input sizes) and is capped at
    /// [`RESERVE_ROWS_MAX`]; rows beyond it still fit, they grow the image step by step.
    pub fn reserve(&mut self, households: usize, persons: usize) {
        let households = households.min(RESERVE_ROWS_MAX);
        let persons = persons.min(RESERVE_ROWS_MAX);
        if households > 0 {
            self.household_slots.reserve(households);
            let households = households + households / 8;
            let columns = &mut self.households;
            columns.alive.reserve(households);
            columns.household_id.reserve(households);
            columns.region_code.reserve(households);
            columns.members.reserve(households);
            columns.cause.reserve(households);
            columns.status.reserve(households);
            columns.registered_year.reserve(households);
            columns.exit_year.reserve(households);
            columns.income_per_capita.reserve(households);
            columns.housing_safe.reserve(households);
            columns.water_safe.reserve(households);
            columns.medical_insured.reserve(households);
            columns.cadre_id.reserve(households);
            columns.industry.reserve(households);
            columns.relocated.reserve(households);
            columns.relocation_site.reserve(households);
            columns.persons_stored.reserve(households);
            columns.head_id.reserve(households);
        }
        if persons > 0 {
            self.person_slots.reserve(persons);
            let persons = persons + persons / 8;
            let columns = &mut self.persons;
            columns.alive.reserve(persons);
            columns.household_slot.reserve(persons);
            columns.relation.reserve(persons);
            columns.gender.reserve(persons);
            columns.birth_date.reserve(persons);
            columns.education.reserve(persons);
            columns.health.reserve(persons);
            columns.labor.reserve(persons);
            columns.in_school.reserve(persons);
            columns.employed.reserve(persons);
        }
    }

    /// Takes `index` as the person index when the image has no persons yet and `index` has room
    /// for at least as many as the present one; returns whether it did.
    pub fn adopt_person_index(&mut self, index: PersonIndex) -> bool {
        let adopt =
            self.person_slots.is_empty() && index.capacity() >= self.person_slots.capacity();
        if adopt {
            self.person_slots = index.0;
        }
        adopt
    }

    /// Live households.
    pub fn households_len(&self) -> usize {
        self.households_alive
    }

    /// Live persons.
    pub fn persons_len(&self) -> usize {
        self.persons_alive
    }

    /// The slot of a live household.
    pub fn household_slot(&self, id: HouseholdId) -> Option<u32> {
        self.household_slots.get(id.0)
    }

    /// True when the household is stored.
    pub fn has_household(&self, id: HouseholdId) -> bool {
        self.household_slots.contains(id.0)
    }

    /// Reads the person's index entry without using it, so that it is in the cache when the
    /// row is placed soon after (see `SlotIndex::warm`).
    pub fn warm_person(&self, id: IdNumber) {
        self.person_slots.warm(id.0);
    }

    /// As `warm_person`, for a household.
    pub fn warm_household(&self, id: HouseholdId) {
        self.household_slots.warm(id.0);
    }

    /// The household a stored person belongs to.
    pub fn person_household(&self, id: IdNumber) -> Option<HouseholdId> {
        let slot = self.person_slots.get(id.0)?;
        let household_slot = self.persons.household_slot[slot as usize];
        Some(HouseholdId(
            self.households.household_id[household_slot as usize],
        ))
    }

    /// Live persons stored for a household.
    pub fn persons_stored(&self, id: HouseholdId) -> u16 {
        self.household_slot(id)
            .map_or(0, |slot| self.households.persons_stored[slot as usize])
    }

    /// Inserts or replaces a household; returns its slot.
    pub fn upsert_household(&mut self, row: &Household) -> u32 {
        let cadre = self.households.cadre_ids.intern(&row.cadre_id);
        let site = row.relocation_site.as_deref().map_or(NULL_CODE, |site| {
            self.households.relocation_sites.intern(site)
        });
        let columns = &mut self.households;
        let next_slot = columns.alive.len();
        let slot = match self
            .household_slots
            .get_or_insert(row.household_id.0, next_slot as u32)
        {
            Some(slot) => slot as usize,
            None => {
                let slot = next_slot;
                columns.alive.push(true);
                columns.household_id.push(0);
                columns.region_code.push(0);
                columns.members.push(0);
                columns.cause.push(0);
                columns.status.push(0);
                columns.registered_year.push(0);
                columns.exit_year.push(NULL_YEAR);
                columns.income_per_capita.push(0);
                columns.housing_safe.push(false);
                columns.water_safe.push(false);
                columns.medical_insured.push(false);
                columns.cadre_id.push(0);
                columns.industry.push(0);
                columns.relocated.push(false);
                columns.relocation_site.push(NULL_CODE);
                columns.persons_stored.push(0);
                columns.head_id.push(0);
                self.households_alive += 1;
                slot
            }
        };
        columns.household_id[slot] = row.household_id.0;
        columns.region_code[slot] = row.region_code.value();
        columns.members[slot] = row.members;
        columns.cause[slot] = row.cause.code();
        columns.status[slot] = row.status.code();
        columns.registered_year[slot] = row.registered_year;
        columns.exit_year[slot] = row.exit_year.unwrap_or(NULL_YEAR);
        columns.income_per_capita[slot] = fen_column(row.income_per_capita);
        columns.housing_safe[slot] = row.housing_safe;
        columns.water_safe[slot] = row.water_safe;
        columns.medical_insured[slot] = row.medical_insured;
        columns.cadre_id[slot] = cadre;
        columns.industry[slot] = row.industry.code();
        columns.relocated[slot] = row.relocated;
        columns.relocation_site[slot] = site;
        columns.head_id[slot] = row.head_id.0;
        slot as u32
    }

    /// The slot of a live household, remembering it: persons arrive grouped by household (file
    /// order, key order at rebuild), so the last one is asked for again and again.
    fn household_slot_cached(&mut self, id: HouseholdId) -> Option<u32> {
        if let Some((last, slot)) = self.last_household {
            if last == id {
                return Some(slot);
            }
            // Persons usually come in their households' order, which is slot order after an
            // import or a rebuild: try the next slot before hashing. A live slot holding the id
            // is the id's slot (a removed household's slot is never live again).
            let next = slot as usize + 1;
            if self.households.household_id.get(next) == Some(&id.0) && self.households.alive[next]
            {
                self.last_household = Some((id, next as u32));
                return Some(next as u32);
            }
        }
        let slot = self.household_slot(id)?;
        self.last_household = Some((id, slot));
        Some(slot)
    }

    /// A household's `members` and its live persons stored, cheap for households asked for in
    /// slot order.
    pub fn member_counts_cached(&mut self, id: HouseholdId) -> Option<(u8, u16)> {
        let slot = self.household_slot_cached(id)? as usize;
        Some((
            self.households.members[slot],
            self.households.persons_stored[slot],
        ))
    }

    /// The stored head ID of a household, cheap for households asked for in slot order.
    pub fn head_id_cached(&mut self, id: HouseholdId) -> Option<IdNumber> {
        let slot = self.household_slot_cached(id)?;
        Some(IdNumber(self.households.head_id[slot as usize]))
    }

    /// True when the household is stored; cheap when asked for the same household repeatedly.
    pub fn has_household_cached(&mut self, id: HouseholdId) -> bool {
        self.household_slot_cached(id).is_some()
    }

    /// Inserts or replaces a person. Returns false (and changes nothing) when the person's
    /// household is not in the image: storage guarantees it is.
    pub fn upsert_person(&mut self, row: &Person) -> bool {
        self.place_person(row).is_some()
    }

    /// Inserts or replaces a person, and tells where: the slot of the row's household, and
    /// where the person was before (see `Placed`). `None`, with nothing changed, when the row's
    /// household is not in the image.
    pub fn place_person(&mut self, row: &Person) -> Option<Placed> {
        let household_slot = self.household_slot_cached(row.household_id)?;
        let columns = &mut self.persons;
        let next_slot = columns.alive.len() as u32;
        let mut before = None;
        let slot = match self.person_slots.get_or_insert(row.person_id.0, next_slot) {
            Some(slot) => {
                let slot = slot as usize;
                let previous = columns.household_slot[slot] as usize;
                self.households.persons_stored[previous] -= 1;
                before = Some((
                    HouseholdId(self.households.household_id[previous]),
                    previous as u32,
                ));
                slot
            }
            None => {
                let slot = next_slot as usize;
                columns.alive.push(true);
                columns.household_slot.push(0);
                columns.relation.push(0);
                columns.gender.push(0);
                columns.birth_date.push(0);
                columns.education.push(0);
                columns.health.push(0);
                columns.labor.push(0);
                columns.in_school.push(false);
                columns.employed.push(false);
                self.persons_alive += 1;
                slot
            }
        };
        self.households.persons_stored[household_slot as usize] += 1;
        columns.household_slot[slot] = household_slot;
        columns.relation[slot] = row.relation.code();
        columns.gender[slot] = row.gender.code();
        columns.birth_date[slot] = row.birth_date.days();
        columns.education[slot] = row.education.code();
        columns.health[slot] = row.health.code();
        columns.labor[slot] = row.labor.code();
        columns.in_school[slot] = row.in_school;
        columns.employed[slot] = row.employed;
        Some(Placed {
            household_slot,
            previous: before,
        })
    }

    /// Removes a household and the given persons (its members, as storage found them).
    pub fn remove_household(&mut self, id: HouseholdId, persons: &[IdNumber]) -> bool {
        for person in persons {
            if let Some(slot) = self.person_slots.remove(person.0) {
                let slot = slot as usize;
                self.persons.alive[slot] = false;
                let household_slot = self.persons.household_slot[slot] as usize;
                self.households.persons_stored[household_slot] -= 1;
                self.persons_alive -= 1;
            }
        }
        if self.last_household.is_some_and(|(last, _)| last == id) {
            self.last_household = None;
        }
        match self.household_slots.remove(id.0) {
            Some(slot) => {
                self.households.alive[slot as usize] = false;
                self.households_alive -= 1;
                true
            }
            None => false,
        }
    }
}
