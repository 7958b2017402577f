//! Athena adapter of the catalog: runs a statement and waits for it to finish.

use std::time::Duration;

use aws_sdk_athena::types::{QueryExecutionContext, QueryExecutionState, ResultConfiguration};

use super::error::from_sdk;
use crate::ports::QueryRunner;
use crate::ports::{StoreError, StoreErrorKind};

/// Longest wait for one statement (DDL normally takes a second or two).
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(500);

/// Statements run in one workgroup, results (if given) to one location.
#[derive(Clone, Debug)]
pub struct Athena {
    client: aws_sdk_athena::Client,
    workgroup: String,
    output_location: Option<String>,
}

impl Athena {
    pub fn new(
        client: aws_sdk_athena::Client,
        workgroup: String,
        output_location: Option<String>,
    ) -> Self {
        Athena {
            client,
            workgroup,
            output_location,
        }
    }
}

impl QueryRunner for Athena {
    async fn run(&self, sql: &str, database: Option<&str>) -> Result<(), StoreError> {
        let mut request = self
            .client
            .start_query_execution()
            .query_string(sql)
            .work_group(&self.workgroup);
        if let Some(database) = database {
            request = request.query_execution_context(
                QueryExecutionContext::builder().database(database).build(),
            );
        }
        if let Some(location) = &self.output_location {
            request = request.result_configuration(
                ResultConfiguration::builder()
                    .output_location(location)
                    .build(),
            );
        }
        let started = request
            .send()
            .await
            .map_err(|e| from_sdk("Athena StartQueryExecution", e))?;
        let id = started.query_execution_id.unwrap_or_default();
        let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
        loop {
            let execution = self
                .client
                .get_query_execution()
                .query_execution_id(&id)
                .send()
                .await
                .map_err(|e| from_sdk("Athena GetQueryExecution", e))?;
            let status = execution.query_execution.and_then(|q| q.status);
            match status.as_ref().and_then(|s| s.state.clone()) {
                Some(QueryExecutionState::Succeeded) => return Ok(()),
                Some(state @ (QueryExecutionState::Failed | QueryExecutionState::Cancelled)) => {
                    let reason = status
                        .and_then(|s| s.state_change_reason)
                        .unwrap_or_default();
                    return Err(StoreError::new(
                        "Athena query",
                        StoreErrorKind::Rejected,
                        format!("{id} {}: {reason}", state.as_str()),
                    ));
                }
                _ if tokio::time::Instant::now() > deadline => {
                    return Err(StoreError::new(
                        "Athena query",
                        StoreErrorKind::Transient,
                        format!("{id} still running after {QUERY_TIMEOUT:?}"),
                    ))
                }
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }
}
