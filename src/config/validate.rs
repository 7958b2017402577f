//! Validating a whole configuration: every section in turn, in the order their problems
//! are reported, and the checks that span sections, all of them here:
//!
//! - `landing.delete_after` needs `lake.raw_prefix` ([`delete_after_needs_raw_zone`]);
//! - each dataset's `max_row_bytes` must fit `worker.conversion_memory`
//!   ([`rows_fit_the_conversion_memory`]);
//! - the salt of `pii = "hash"` columns is read as `lake.pii_salt_env` says, and each
//!   dataset checks that its hashed columns have one;
//! - a dataset's `table_format` defaults to `lake.table_format`, and an Iceberg dataset
//!   needs `[catalog]` ([`iceberg_needs_the_catalog`]).

use std::collections::HashSet;

use super::dataset::RawDataset;
use super::lake;
use super::{ConfigError, LandingSettings, MemoryBudget, Problems, RawSettings, Secret, Settings};
use crate::domain::dataset::{Dataset, Router, TableFormat};
use crate::domain::history::{loads_dataset, LOADS_TABLE};

impl RawSettings {
    /// Checks every value and collects every problem, each with its key path; `env` is
    /// where the PII salt is looked up.
    pub(super) fn validate(
        self,
        env: &config::Map<String, String>,
    ) -> Result<Settings, ConfigError> {
        let mut p = Problems::default();
        let pii_salt = self.lake.pii_salt(env);

        let aws = self.aws.validate(&mut p);
        let landing = self.landing.validate(&mut p);
        let queue = self.queue.validate(&mut p);
        let ledger = self.ledger.validate(&mut p);

        // landing.delete_after is checked after lake's keys and before the form of
        // lake.quarantine_prefix: the order its problems have always been reported in.
        let has_raw_zone = self.lake.raw_prefix.is_some();
        let quarantine_prefix = self.lake.quarantine_prefix.clone();
        let lake = self.lake.validate(pii_salt.clone(), &mut p);
        delete_after_needs_raw_zone(&mut p, &landing, has_raw_zone);
        lake::check_prefix(&mut p, "lake.quarantine_prefix", &quarantine_prefix);

        let (mut worker, memory_given) = self.worker.validate(&mut p);
        // log.level is checked after [catalog] and [health]: the order its problems have
        // always been reported in.
        let log_format = self.log.validate_format(&mut p);
        self.telemetry.validate(&mut p);
        let catalog = self.catalog.map(|raw| raw.validate(&mut p));
        let health = self.health.validate(&mut p);
        let log = self.log.validate(log_format, self.telemetry, &mut p);

        let iceberg = self.iceberg.validate(&mut p);
        let table_format = lake.as_ref().map(|l| l.table_format).unwrap_or_default();
        let deprecations = self
            .datasets
            .iter()
            .enumerate()
            .flat_map(|(i, d)| d.deprecations(&format!("datasets[{i}]")))
            .collect();
        let datasets = validate_datasets(
            self.datasets,
            pii_salt.as_ref(),
            memory_given.then_some(worker.conversion_memory),
            table_format,
            &mut p,
        );
        if !memory_given {
            let rows = datasets.iter().map(|d| d.policy.max_row_bytes);
            worker.conversion_memory = MemoryBudget::fitting(rows);
        }
        let mut router = Router::new(datasets);
        if let Some(lake) = lake.as_ref().filter(|l| l.history_interval.is_some()) {
            router = router.with_history(loads_dataset(lake.table_format));
        }
        iceberg_needs_the_catalog(&mut p, &router, catalog.is_some());

        let (Some(lake), Some(log), Some(iceberg), true) = (lake, log, iceberg, p.0.is_empty())
        else {
            return Err(ConfigError { problems: p.0 });
        };
        Ok(Settings {
            aws,
            landing,
            queue,
            lake,
            ledger,
            worker,
            log,
            health,
            catalog,
            iceberg,
            datasets: router,
            deprecations,
        })
    }
}

/// `landing.delete_after` deletes a landing object only once its original is kept in the
/// raw zone, so it needs `lake.raw_prefix`.
fn delete_after_needs_raw_zone(p: &mut Problems, landing: &LandingSettings, has_raw_zone: bool) {
    p.check(
        !landing.delete_after || has_raw_zone,
        "landing.delete_after",
        "needs lake.raw_prefix: a landing object is deleted only once its original is kept in the raw zone",
    );
}

/// `[[datasets]]`: at least one, each name once, each dataset valid and its rows within
/// `worker.conversion_memory` when the config gives it.
fn validate_datasets(
    entries: Vec<RawDataset>,
    pii_salt: Option<&Secret>,
    conversion_memory: Option<MemoryBudget>,
    table_format: TableFormat,
    p: &mut Problems,
) -> Vec<Dataset> {
    if entries.is_empty() {
        p.add("datasets", "at least one [[datasets]] entry is needed");
    }
    let mut datasets = Vec::new();
    // Every name, whether or not its dataset was valid: a clash is a problem either way.
    let mut names = HashSet::new();
    for (i, raw) in entries.into_iter().enumerate() {
        let path = format!("datasets[{i}]");
        if !names.insert(raw.name.clone()) {
            p.add(
                format!("{path}.name"),
                format!("dataset name {:?} is used twice", raw.name),
            );
        }
        if raw.name == LOADS_TABLE {
            p.add(
                format!("{path}.name"),
                format!("{LOADS_TABLE:?} is the load history's table (lake.history)"),
            );
        }
        if let Some(dataset) = raw.validate(&path, p, pii_salt, table_format) {
            if let Some(budget) = conversion_memory {
                rows_fit_the_conversion_memory(p, &path, &dataset, budget);
            }
            datasets.push(dataset);
        }
    }
    datasets
}

/// An Iceberg table lives in the Glue database of `[catalog]`.
fn iceberg_needs_the_catalog(p: &mut Problems, router: &Router, has_catalog: bool) {
    if has_catalog {
        return;
    }
    for dataset in router
        .datasets()
        .iter()
        .filter(|d| d.table == TableFormat::Iceberg)
    {
        p.add(
            format!("datasets.{}.table_format", dataset.name),
            "\"iceberg\" needs [catalog] (its database holds the table)",
        );
    }
    if router
        .history()
        .is_some_and(|h| h.table == TableFormat::Iceberg)
    {
        p.add(
            "lake.table_format",
            "\"iceberg\" makes the load history an Iceberg table, which needs [catalog] (or set lake.history = false)",
        );
    }
}

/// A dataset's longest rows (`max_row_bytes`) must fit `worker.conversion_memory`: see
/// [`MemoryBudget::minimum_for`].
fn rows_fit_the_conversion_memory(
    p: &mut Problems,
    path: &str,
    dataset: &Dataset,
    conversion_memory: MemoryBudget,
) {
    let row = dataset.policy.max_row_bytes;
    p.check(
        conversion_memory.bytes() >= MemoryBudget::minimum_for(row),
        format!("{path}.max_row_bytes"),
        format!(
            "{row} is more than a sixteenth of worker.conversion_memory ({}): raise that to at least {} or lower this",
            conversion_memory.bytes(),
            MemoryBudget::minimum_for(row),
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::super::tests::{in_dataset, load, GOOD};
    use super::MemoryBudget;

    #[test]
    fn delete_after_needs_the_raw_zone() {
        let err = load(GOOD, &[("LAKEWORKER__LANDING__DELETE_AFTER", "true")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("landing.delete_after: needs lake.raw_prefix"),
            "{err}"
        );
        let err = load(GOOD, &[("LAKEWORKER__LAKE__RAW_PREFIX", "curated")]).unwrap_err();
        assert!(
            err.to_string().contains("lake.raw_prefix: must differ"),
            "{err}"
        );
        let s = load(
            GOOD,
            &[
                ("LAKEWORKER__LANDING__DELETE_AFTER", "true"),
                ("LAKEWORKER__LAKE__RAW_PREFIX", "raw"),
            ],
        )
        .unwrap();
        assert!(s.landing.delete_after);
        assert_eq!(s.lake.raw_prefix.as_deref(), Some("raw"));
    }

    #[test]
    fn the_conversion_memory_must_hold_the_longest_rows() {
        assert_eq!(
            load(GOOD, &[]).unwrap().worker.conversion_memory,
            MemoryBudget::new(128 << 20)
        );
        let long_rows = in_dataset("max_row_bytes = \"64MiB\"");
        // Left out, the budget grows to hold the longest rows (16 times them)...
        let s = load(&long_rows, &[]).unwrap();
        assert_eq!(s.worker.conversion_memory.bytes(), 1 << 30);
        // ...given, it must hold them.
        let given = [("LAKEWORKER__WORKER__CONVERSION_MEMORY", "128MiB")];
        let refused = load(&long_rows, &given).unwrap_err();
        assert_eq!(
            refused.problems.iter().map(|p| format!("{}: {}", p.path, p.reason)).collect::<Vec<_>>(),
            ["datasets[0].max_row_bytes: 67108864 is more than a sixteenth of worker.conversion_memory (134217728): raise that to at least 1073741824 or lower this"]
        );
        let s = load(
            &long_rows,
            &[("LAKEWORKER__WORKER__CONVERSION_MEMORY", "1GiB")],
        )
        .unwrap();
        assert_eq!(s.worker.conversion_memory.bytes(), 1 << 30);
    }
}
