//! The national data standard: validation of CSV cells into typed records, hard rules and screens.

pub mod id_number;
pub mod validate;
