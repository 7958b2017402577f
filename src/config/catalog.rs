//! `[catalog]`: the Athena workgroup and Glue database tables are registered in, and the
//! views created over them. Optional: without it the catalog is left alone.

use serde::Deserialize;

use super::Problems;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogSettings {
    pub database: String,
    pub workgroup: String,
    /// Where Athena writes query results (`s3://…`); the workgroup's setting if `None`.
    pub output_location: Option<String>,
    /// `CREATE OR REPLACE VIEW` name and query, in order.
    pub views: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCatalog {
    database: String,
    #[serde(default = "default_workgroup")]
    workgroup: String,
    output_location: Option<String>,
    #[serde(default)]
    views: Vec<RawView>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawView {
    name: String,
    sql: String,
}

fn default_workgroup() -> String {
    "primary".into()
}

impl RawCatalog {
    pub(super) fn validate(self, p: &mut Problems) -> CatalogSettings {
        let name_ok = |name: &str| {
            !name.is_empty()
                && name.len() <= 255
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        p.check(
            name_ok(&self.database),
            "catalog.database",
            format!(
                "{:?} is not a Glue database name (a-z, 0-9, _)",
                self.database
            ),
        );
        p.check(
            !self.workgroup.trim().is_empty(),
            "catalog.workgroup",
            "must not be empty",
        );
        if let Some(location) = &self.output_location {
            p.check(
                location.starts_with("s3://") && location.len() > 5,
                "catalog.output_location",
                format!("{location:?} is not an s3:// URI"),
            );
        }
        for (i, view) in self.views.iter().enumerate() {
            p.check(
                name_ok(&view.name),
                format!("catalog.views[{i}].name"),
                format!("{:?} is not a view name (a-z, 0-9, _)", view.name),
            );
            p.check(
                !view.sql.trim().is_empty(),
                format!("catalog.views[{i}].sql"),
                "must not be empty",
            );
        }
        CatalogSettings {
            database: self.database,
            workgroup: self.workgroup,
            output_location: self.output_location,
            views: self.views.into_iter().map(|v| (v.name, v.sql)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, problems, GOOD};

    #[test]
    fn the_catalog_is_optional_and_checked() {
        assert_eq!(load(GOOD, &[]).unwrap().catalog, None);
        let text = format!(
            "{GOOD}\n[catalog]\ndatabase = \"lake\"\noutput_location = \"s3://results/athena/\"\n[[catalog.views]]\nname = \"pro_users\"\nsql = \"SELECT * FROM users WHERE plan = 'pro'\"\n"
        );
        let catalog = load(&text, &[]).unwrap().catalog.unwrap();
        assert_eq!(catalog.database, "lake");
        assert_eq!(catalog.workgroup, "primary");
        assert_eq!(catalog.views[0].0, "pro_users");
        let bad = text
            .replace("database = \"lake\"", "database = \"Lake-DB\"")
            .replace("s3://results/athena/", "results");
        assert_eq!(
            problems(&bad),
            [
                "catalog.database: \"Lake-DB\" is not a Glue database name (a-z, 0-9, _)",
                "catalog.output_location: \"results\" is not an s3:// URI"
            ]
        );
    }
}
