//! A dataset's Iceberg schema and partition spec, derived from the lake batch's Arrow
//! schema ([`crate::convert::sinks::LakeProjection`]: the kept columns, the lineage
//! columns and, for ingest-date tables, `ingest_date`), and the check that an existing
//! table still matches it. Only type *descriptions* cross from Arrow to Iceberg here.

use arrow::datatypes::{DataType, Schema as ArrowSchema, TimeUnit};
use iceberg::spec::{
    NestedField, PartitionSpec, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec,
};

use crate::convert::sinks::ICEBERG_FIELD_ID;
use crate::domain::dataset::{Dataset, FieldIds, Partition};

/// The table's field ids by name (its current schema's top-level fields) and the last id
/// it assigned.
pub fn field_ids(metadata: &iceberg::spec::TableMetadata) -> FieldIds {
    let by_name = metadata
        .current_schema()
        .as_struct()
        .fields()
        .iter()
        .map(|f| (f.name.clone(), f.id))
        .collect();
    FieldIds {
        by_name,
        last: metadata.last_column_id(),
    }
}

/// The Iceberg type of an Arrow type the conversion produces.
pub fn iceberg_type(arrow: &DataType) -> Result<PrimitiveType, String> {
    Ok(match arrow {
        DataType::Utf8 => PrimitiveType::String,
        DataType::Int64 => PrimitiveType::Long,
        DataType::Float64 => PrimitiveType::Double,
        DataType::Boolean => PrimitiveType::Boolean,
        DataType::Date32 => PrimitiveType::Date,
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => PrimitiveType::Timestamptz,
        DataType::Timestamp(TimeUnit::Microsecond, None) => PrimitiveType::Timestamp,
        other => return Err(format!("no Iceberg type for the Arrow type {other}")),
    })
}

/// Each field's Iceberg id, as [`crate::convert::sinks::LakeProjection`] numbers them.
pub fn field_id(field: &arrow::datatypes::Field) -> Result<i32, String> {
    field
        .metadata()
        .get(ICEBERG_FIELD_ID)
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| format!("column {} has no Iceberg field id", field.name()))
}

/// The table schema: one field per lake column, with its id; required where the column
/// can hold no null.
pub fn table_schema(lake: &ArrowSchema) -> Result<Schema, String> {
    let fields = lake
        .fields()
        .iter()
        .map(|field| {
            let kind = Type::Primitive(iceberg_type(field.data_type())?);
            let id = field_id(field)?;
            Ok(if field.is_nullable() {
                NestedField::optional(id, field.name(), kind)
            } else {
                NestedField::required(id, field.name(), kind)
            }
            .into())
        })
        .collect::<Result<Vec<_>, String>>()?;
    Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| e.to_string())
}

/// The partition spec: identity of the date column, `day()` of the timestamp column, or
/// identity of `ingest_date`; the partition field is named as the Hive partition key.
pub fn partition_spec(dataset: &Dataset, schema: &Schema) -> Result<UnboundPartitionSpec, String> {
    let (source, transform) = match dataset.partition {
        Partition::IngestDate => (
            crate::domain::dataset::INGEST_DATE.to_owned(),
            Transform::Identity,
        ),
        Partition::DateColumn { index } => {
            (dataset.columns[index].name.clone(), Transform::Identity)
        }
        Partition::TimestampColumn { index } => {
            (dataset.columns[index].name.clone(), Transform::Day)
        }
    };
    let field = schema
        .field_by_name(&source)
        .ok_or_else(|| format!("the partition column {source} is not in the table"))?;
    UnboundPartitionSpec::builder()
        .add_partition_field(field.id, dataset.partition_name(), transform)
        .map_err(|e| e.to_string())
        .map(|builder| builder.build())
}

/// Why an existing table cannot take this dataset's files, if it cannot: every lake
/// column must be in the table under the same id, name and type. (Columns the table has
/// beyond these stay null in our files.)
pub fn mismatch(table: &Schema, wanted: &Schema) -> Option<String> {
    let problems: Vec<String> = wanted
        .as_struct()
        .fields()
        .iter()
        .filter_map(|want| match table.field_by_id(want.id) {
            None => Some(format!("column {} (id {}) is missing", want.name, want.id)),
            Some(have) if have.name != want.name => Some(format!(
                "field id {} is {} in the table, {} here",
                want.id, have.name, want.name
            )),
            Some(have) if have.field_type != want.field_type => Some(format!(
                "column {} is {} in the table, {} here",
                want.name, have.field_type, want.field_type
            )),
            Some(have) if have.required && !want.required => Some(format!(
                "column {} is required in the table but may be null here",
                want.name
            )),
            Some(_) => None,
        })
        .collect();
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// Why an existing table's partition spec is not the dataset's, if it is not: the same
/// fields (source column, transform, name) in the same order, or our files' partition
/// values would be registered under another meaning.
pub fn spec_mismatch(table: &PartitionSpec, wanted: &UnboundPartitionSpec) -> Option<String> {
    let show = |fields: Vec<(i32, String, String)>| {
        fields
            .iter()
            .map(|(source, transform, name)| format!("{name} = {transform}(field {source})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let have: Vec<(i32, String, String)> = table
        .fields()
        .iter()
        .map(|f| (f.source_id, f.transform.to_string(), f.name.clone()))
        .collect();
    let want: Vec<(i32, String, String)> = wanted
        .fields()
        .iter()
        .map(|f| (f.source_id, f.transform.to_string(), f.name.clone()))
        .collect();
    (have != want).then(|| {
        format!(
            "the table is partitioned by [{}], the dataset by [{}]",
            show(have),
            show(want)
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use arrow::datatypes::Field;

    use super::*;

    fn lake() -> ArrowSchema {
        let id = |n: &str| HashMap::from([(ICEBERG_FIELD_ID.to_owned(), n.to_owned())]);
        ArrowSchema::new(vec![
            Field::new("id", DataType::Utf8, false).with_metadata(id("1")),
            Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true)
                .with_metadata(id("2")),
            Field::new("day", DataType::Date32, true).with_metadata(id("3")),
        ])
    }

    #[test]
    fn fields_keep_their_ids_types_and_nullability() {
        let schema = table_schema(&lake()).unwrap();
        let at = schema.field_by_name("at").unwrap();
        assert_eq!((at.id, at.required), (2, false));
        assert_eq!(*at.field_type, Type::Primitive(PrimitiveType::Timestamp));
        assert!(schema.field_by_name("id").unwrap().required);
        assert_eq!(mismatch(&schema, &schema), None);
        let mut other = lake();
        other = ArrowSchema::new(
            other
                .fields()
                .iter()
                .map(|f| match f.name().as_str() {
                    "day" => f.as_ref().clone().with_data_type(DataType::Utf8),
                    _ => f.as_ref().clone(),
                })
                .collect::<Vec<_>>(),
        );
        let other = table_schema(&other).unwrap();
        assert_eq!(
            mismatch(&schema, &other).as_deref(),
            Some("column day is date in the table, string here")
        );
    }

    #[test]
    fn a_table_partitioned_otherwise_is_named() {
        let schema = table_schema(&lake()).unwrap();
        let by_day = |source: i32, transform: Transform| {
            UnboundPartitionSpec::builder()
                .add_partition_field(source, "p", transform)
                .unwrap()
                .build()
        };
        let table = by_day(2, Transform::Day).bind(schema.clone()).unwrap();
        assert_eq!(spec_mismatch(&table, &by_day(2, Transform::Day)), None);
        let problem = spec_mismatch(&table, &by_day(3, Transform::Identity)).unwrap();
        assert_eq!(
            problem,
            "the table is partitioned by [p = day(field 2)], the dataset by [p = identity(field 3)]"
        );
        let unpartitioned = UnboundPartitionSpec::builder()
            .build()
            .bind(schema)
            .unwrap();
        assert!(spec_mismatch(&unpartitioned, &by_day(2, Transform::Day)).is_some());
    }
}
