//! The vectorised executor: scans the image's slots in chunks, evaluates WHERE a column at a time
//! into a selection, assigns groups, and updates per-group accumulators, ending in a mergeable
//! `PartialAggregate`.

use crate::image::Image;
use crate::schema::Table;

use super::filter::{Filter, LeafKind, Values, FALSE, TRUE};
use super::group::Groups;
use super::kernel::{compile, Decoder, Scalar};
use super::partial::{Accumulator, PartialAggregate, PartialGroup};
use super::plan::{AggregateFunction, Dimension, Plan};
use super::semantics::NULL;
use super::sketch::Sketch;
use super::value::Value;

/// Rows evaluated together: small enough that a chunk's columns stay in cache.
pub const CHUNK_ROWS: usize = 2048;

/// A chunk whose selected rows are at most its length over this has its key and aggregate
/// values produced only at those rows (eight 8-byte values share a cache line).
const SPARSE_SELECTION_DIVISOR: usize = 8;

/// Runs `plan` over `image` and returns its partial aggregate (HAVING, ORDER BY and LIMIT are
/// applied by `PartialAggregate::finalize`, after any merge).
pub fn execute_partial(plan: &Plan, image: &Image) -> PartialAggregate {
    let mut scan = Scan::new(plan, image);
    scan.run();
    scan.finish()
}

/// One aggregate's accumulators, one entry per group.
struct AggregateState {
    function: AggregateFunction,
    scalar: Option<usize>,
    /// For MIN/MAX over text: each code's rank in byte order, and each rank's code.
    ranks: Option<(Vec<i64>, Vec<i64>)>,
    /// A chunk value times this is the argument's value (for MEDIAN over age bands).
    multiplier: i64,
    count: Vec<u64>,
    sum: Vec<i128>,
    best: Vec<i64>,
    sketches: Vec<Sketch>,
}

impl AggregateState {
    fn grow(&mut self, groups: usize) {
        let initial = match self.function {
            AggregateFunction::Max => i64::MIN,
            _ => i64::MAX,
        };
        self.count.resize(groups, 0);
        match self.function {
            AggregateFunction::Sum | AggregateFunction::Avg => self.sum.resize(groups, 0),
            AggregateFunction::Min | AggregateFunction::Max => self.best.resize(groups, initial),
            AggregateFunction::Median => self.sketches.resize(groups, Sketch::default()),
            AggregateFunction::CountRows | AggregateFunction::Count => {}
        }
    }

    fn update(&mut self, values: &[i64], selection: &[u32], group_of: &[u32]) {
        let rows = selection.iter().zip(group_of);
        match self.function {
            AggregateFunction::CountRows => {}
            AggregateFunction::Count => {
                for (row, group) in rows {
                    self.count[*group as usize] += u64::from(values[*row as usize] != NULL);
                }
            }
            AggregateFunction::Sum | AggregateFunction::Avg => {
                for (row, group) in rows {
                    let value = values[*row as usize];
                    if value != NULL {
                        self.count[*group as usize] += 1;
                        self.sum[*group as usize] += i128::from(value);
                    }
                }
            }
            AggregateFunction::Median => {
                for (row, group) in rows {
                    let value = values[*row as usize];
                    if value != NULL {
                        self.count[*group as usize] += 1;
                        self.sketches[*group as usize].add(value.saturating_mul(self.multiplier));
                    }
                }
            }
            AggregateFunction::Min | AggregateFunction::Max => {
                let is_min = self.function == AggregateFunction::Min;
                for (row, group) in rows {
                    let mut value = values[*row as usize];
                    if value == NULL {
                        continue;
                    }
                    if let Some((ranks, _)) = &self.ranks {
                        value = ranks[value as usize];
                    }
                    let group = *group as usize;
                    self.count[group] += 1;
                    let best = &mut self.best[group];
                    if (is_min && value < *best) || (!is_min && value > *best) {
                        *best = value;
                    }
                }
            }
        }
    }
}

struct Scan<'a> {
    plan: &'a Plan,
    image: &'a Image,
    scalars: Vec<Scalar<'a>>,
    dimensions: Vec<Dimension>,
    buffers: Vec<Vec<i64>>,
    filter: Option<Filter>,
    /// Scalars WHERE reads, computed for every chunk.
    filter_scalars: Vec<usize>,
    /// Per scalar: read by WHERE alone and straight from its column (`Kernel::direct`), so
    /// never filled.
    direct: Vec<bool>,
    /// Scalars only keys and aggregates read, computed for chunks with selected rows.
    other_scalars: Vec<usize>,
    key_scalars: Vec<usize>,
    aggregates: Vec<AggregateState>,
    groups: Groups,
    truth: Vec<u8>,
    selection: Vec<u32>,
    group_of: Vec<u32>,
}

impl<'a> Scan<'a> {
    fn new(plan: &'a Plan, image: &'a Image) -> Scan<'a> {
        let mut scan = Scan {
            plan,
            image,
            scalars: Vec::new(),
            dimensions: Vec::new(),
            buffers: Vec::new(),
            filter: None,
            filter_scalars: Vec::new(),
            direct: Vec::new(),
            other_scalars: Vec::new(),
            key_scalars: Vec::new(),
            aggregates: Vec::new(),
            groups: Groups::new(&[]),
            truth: vec![FALSE; CHUNK_ROWS],
            selection: Vec::with_capacity(CHUNK_ROWS),
            group_of: Vec::with_capacity(CHUNK_ROWS),
        };
        if let Some(predicate) = &plan.filter {
            let mut dimensions = Vec::new();
            collect_dimensions(predicate, &mut dimensions);
            for dimension in &dimensions {
                let index = scan.scalar(dimension);
                if !scan.filter_scalars.contains(&index) {
                    scan.filter_scalars.push(index);
                }
            }
            let scalars = &scan.scalars;
            let known = &scan.dimensions;
            let mut scalar_of = |dimension: &Dimension| {
                known
                    .iter()
                    .position(|known| known == dimension)
                    .unwrap_or_else(|| panic!("every filter dimension was compiled"))
            };
            let kinds = |index: usize| LeafKind::of(&scalars[index]);
            scan.filter = Some(Filter::compile(
                predicate,
                &mut scalar_of,
                &kinds,
                CHUNK_ROWS,
            ));
        }
        for key in &plan.keys {
            let index = scan.scalar(key);
            scan.key_scalars.push(index);
        }
        let domains: Vec<_> = scan
            .key_scalars
            .iter()
            .map(|index| scan.scalars[*index].domain)
            .collect();
        scan.groups = Groups::new(&domains);
        for aggregate in &plan.aggregates {
            let scalar = aggregate
                .argument
                .as_ref()
                .map(|argument| scan.scalar(argument));
            let ranks = match (aggregate.function, scalar) {
                (AggregateFunction::Min | AggregateFunction::Max, Some(index)) => {
                    match &scan.scalars[index].decoder {
                        Decoder::Names(names) => {
                            let mut order: Vec<usize> = (0..names.len()).collect();
                            order.sort_by(|left, right| {
                                names[*left].as_bytes().cmp(names[*right].as_bytes())
                            });
                            let mut ranks = vec![0; names.len()];
                            for (rank, code) in order.iter().enumerate() {
                                ranks[*code] = rank as i64;
                            }
                            Some((ranks, order.into_iter().map(|code| code as i64).collect()))
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            scan.aggregates.push(AggregateState {
                function: aggregate.function,
                scalar,
                ranks,
                multiplier: scalar.map_or(1, |index| scan.scalars[index].multiplier),
                count: Vec::new(),
                sum: Vec::new(),
                best: Vec::new(),
                sketches: Vec::new(),
            });
        }
        for index in 0..scan.scalars.len() {
            if !scan.filter_scalars.contains(&index) {
                scan.other_scalars.push(index);
            }
        }
        scan.direct = (0..scan.scalars.len())
            .map(|index| {
                let read_later = scan.key_scalars.contains(&index)
                    || scan
                        .aggregates
                        .iter()
                        .any(|aggregate| aggregate.scalar == Some(index));
                scan.filter_scalars.contains(&index)
                    && !read_later
                    && scan.scalars[index].kernel.direct(0, 0).is_some()
            })
            .collect();
        scan
    }

    /// The scalar index of `dimension`, compiling it on first use.
    fn scalar(&mut self, dimension: &Dimension) -> usize {
        if let Some(index) = self.dimensions.iter().position(|known| known == dimension) {
            return index;
        }
        self.scalars.push(compile(
            dimension,
            self.image,
            self.plan.source,
            self.plan.as_of,
        ));
        self.dimensions.push(dimension.clone());
        self.buffers.push(vec![NULL; CHUNK_ROWS]);
        self.scalars.len() - 1
    }

    fn slots(&self) -> usize {
        match self.plan.source.base_table() {
            Table::Households => self.image.households.alive.len(),
            Table::Persons => self.image.persons.alive.len(),
        }
    }

    /// Clears the truth of rows whose slot is empty (and, in a join, whose household's is).
    fn apply_alive(&mut self, start: usize, length: usize) {
        let truth = &mut self.truth[..length];
        let households = &self.image.households;
        let persons = &self.image.persons;
        let alive: &[bool] = match self.plan.source.base_table() {
            Table::Households => &households.alive[start..start + length],
            Table::Persons => &persons.alive[start..start + length],
        };
        for (truth, alive) in truth.iter_mut().zip(alive) {
            if !alive {
                *truth = FALSE;
            }
        }
        if self.plan.source.tables().len() == 2 {
            let slots = &persons.household_slot[start..start + length];
            for (truth, slot) in truth.iter_mut().zip(slots) {
                if !households.alive[*slot as usize] {
                    *truth = FALSE;
                }
            }
        }
    }

    fn run(&mut self) {
        let slots = self.slots();
        let mut start = 0;
        while start < slots {
            let length = CHUNK_ROWS.min(slots - start);
            self.chunk(start, length);
            start += length;
        }
    }

    fn chunk(&mut self, start: usize, length: usize) {
        for index in &self.filter_scalars {
            if !self.direct[*index] {
                self.scalars[*index]
                    .kernel
                    .fill(start, &mut self.buffers[*index][..length]);
            }
        }
        let (scalars, buffers, direct) = (&self.scalars, &self.buffers, &self.direct);
        let values = |index: usize| {
            let filled = Values::Filled(&buffers[index][..length]);
            if direct[index] {
                scalars[index]
                    .kernel
                    .direct(start, length)
                    .unwrap_or(filled)
            } else {
                filled
            }
        };
        match &mut self.filter {
            Some(filter) => filter.evaluate(&values, &mut self.truth[..length]),
            None => self.truth[..length].fill(TRUE),
        }
        self.apply_alive(start, length);

        let selected = compact(&self.truth[..length], &mut self.selection);
        if selected == 0 {
            return;
        }

        // Keys and aggregates are read only at the selected rows: for a selective WHERE,
        // produce just those (a few cache lines of each column instead of the whole chunk).
        let sparse = selected <= length / SPARSE_SELECTION_DIVISOR;
        for index in &self.other_scalars {
            let kernel = &self.scalars[*index].kernel;
            let buffer = &mut self.buffers[*index][..length];
            if sparse {
                kernel.fill_selected(start, &self.selection, buffer);
            } else {
                kernel.fill(start, buffer);
            }
        }
        let keys: Vec<&[i64]> = self
            .key_scalars
            .iter()
            .map(|index| self.buffers[*index].as_slice())
            .collect();
        self.groups
            .assign(&keys, &self.selection, &mut self.group_of);
        let groups = self.groups.len();
        for aggregate in &mut self.aggregates {
            aggregate.grow(groups);
            let values: &[i64] = match aggregate.scalar {
                Some(index) => &self.buffers[index],
                None => &[],
            };
            aggregate.update(values, &self.selection, &self.group_of);
        }
    }

    fn finish(self) -> PartialAggregate {
        let rows_scanned = match self.plan.source.base_table() {
            Table::Households => self.image.households_len(),
            Table::Persons => self.image.persons_len(),
        } as u64;
        let key_count = self.key_scalars.len();
        let mut groups = Vec::with_capacity(self.groups.len());
        for group in 0..self.groups.len() {
            let key = self
                .key_scalars
                .iter()
                .enumerate()
                .map(|(position, scalar)| {
                    let value = self.groups.key_values[group * key_count + position];
                    self.scalars[*scalar].decode(value)
                })
                .collect();
            let rows = self.groups.rows[group];
            let accumulators = self
                .aggregates
                .iter()
                .map(|aggregate| self.accumulator(aggregate, group, rows))
                .collect();
            groups.push(PartialGroup {
                key,
                rows,
                accumulators,
            });
        }
        PartialAggregate {
            groups,
            rows_scanned,
        }
    }

    fn accumulator(&self, aggregate: &AggregateState, group: usize, rows: u64) -> Accumulator {
        let count = match aggregate.function {
            AggregateFunction::CountRows => rows,
            _ => aggregate.count.get(group).copied().unwrap_or(0),
        };
        // Sums of quotient-coded values (age bands) scale back exactly:
        // m·q1 + m·q2 = m·(q1 + q2).
        let mut accumulator = Accumulator {
            count,
            sum: aggregate.sum.get(group).copied().unwrap_or(0) * i128::from(aggregate.multiplier),
            min: None,
            max: None,
            sketch: (aggregate.function == AggregateFunction::Median)
                .then(|| aggregate.sketches.get(group).cloned().unwrap_or_default()),
        };
        if count > 0 {
            if let (Some(scalar), Some(best)) = (aggregate.scalar, aggregate.best.get(group)) {
                let value = match &aggregate.ranks {
                    Some((_, codes)) => codes.get(*best as usize).copied().unwrap_or(NULL),
                    None => *best,
                };
                let value: Value = self.scalars[scalar].decode(value);
                match aggregate.function {
                    AggregateFunction::Min => accumulator.min = Some(value),
                    AggregateFunction::Max => accumulator.max = Some(value),
                    _ => {}
                }
            }
        }
        accumulator
    }
}

/// Sets `selection` to the offsets of the true rows, without a branch per row.
fn compact(truth: &[u8], selection: &mut Vec<u32>) -> usize {
    selection.clear();
    selection.resize(truth.len() + 1, 0);
    let slots = selection.as_mut_slice();
    let mut selected = 0;
    let mut push_true = |row: usize, value: u8| {
        // `selected <= row < truth.len()`, so the write is always in bounds.
        if let Some(slot) = slots.get_mut(selected) {
            *slot = row as u32;
        }
        selected += usize::from(value == TRUE);
    };
    // Eight truths at a time: a word without a TRUE (bit 1 of a byte) is skipped whole, so a
    // selective WHERE costs little here.
    let mut words = truth.chunks_exact(8);
    let mut row = 0;
    for word in &mut words {
        let bits = <[u8; 8]>::try_from(word).map_or(u64::MAX, u64::from_le_bytes);
        if bits & 0x0202_0202_0202_0202 != 0 {
            for (offset, value) in word.iter().enumerate() {
                push_true(row + offset, *value);
            }
        }
        row += 8;
    }
    for (offset, value) in words.remainder().iter().enumerate() {
        push_true(row + offset, *value);
    }
    selection.truncate(selected);
    selected
}

fn collect_dimensions(predicate: &super::plan::Predicate<Dimension>, out: &mut Vec<Dimension>) {
    use super::plan::Predicate;
    match predicate {
        Predicate::And(parts) | Predicate::Or(parts) => {
            for part in parts {
                collect_dimensions(part, out);
            }
        }
        Predicate::Not(inner) => collect_dimensions(inner, out),
        Predicate::Compare { operand, .. }
        | Predicate::In { operand, .. }
        | Predicate::Between { operand, .. }
        | Predicate::LikePrefix { operand, .. }
        | Predicate::IsNull { operand, .. }
        | Predicate::IsTrue { operand } => {
            if !out.contains(operand) {
                out.push(operand.clone());
            }
        }
    }
}
