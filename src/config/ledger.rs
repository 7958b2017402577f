//! `[ledger]`: the DynamoDB table that remembers each source object version.

use serde::Deserialize;

use super::checks::is_table_name;
use super::Problems;

#[derive(Debug, Clone)]
pub struct LedgerSettings {
    /// DynamoDB table with one item per source object version.
    pub table: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLedger {
    table: String,
}

impl RawLedger {
    pub(super) fn validate(self, p: &mut Problems) -> LedgerSettings {
        p.check(
            is_table_name(&self.table),
            "ledger.table",
            format!(
                "{:?} is not a valid DynamoDB table name (3-255 of a-z A-Z 0-9 _ . -)",
                self.table
            ),
        );
        LedgerSettings { table: self.table }
    }
}
