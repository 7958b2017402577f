//! A dataset's Iceberg schema and partition spec, derived from the lake batch's Arrow
//! schema ([`crate::convert::sinks::LakeProjection`]: the kept columns, the lineage
//! columns and, for ingest-date tables, `ingest_date`), and the check that an existing
//! table still matches it. Only type *descriptions* cross from Arrow to Iceberg here.

use arrow::datatypes::{DataType, Schema as ArrowSchema, TimeUnit};
use iceberg::spec::{NestedField, PrimitiveType, Schema, Transform, Type, UnboundPartitionSpec};

use crate::convert::sinks::ICEBERG_FIELD_ID;
use crate::domain::dataset::{Dataset, Partition};

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
