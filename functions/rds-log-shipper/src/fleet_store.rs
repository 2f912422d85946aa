//! The S3 side of the Distributed Map: the selection manifest (written by the select step, read
//! by the Map's ItemReader and by each child to check its batch), the Map's result files
//! (written by its ResultWriter, read by the summarize step) and the fleet's lag index.

use aws_sdk_s3::primitives::ByteStream;
use tracing::warn;

use crate::error::ShipError;
use crate::fairness::LagIndex;
use crate::fleet::{self, ChildRecord, FleetOutcome, InvalidResults, Location, ResultManifest};
use crate::keys;

pub struct FleetStore {
    s3: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl FleetStore {
    pub fn new(s3: aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Self {
        Self {
            s3,
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    /// Writes the run's manifest (the instances in the Map's order, see `fleet::interleave`).
    pub async fn put_manifest(&self, run: &str, order: &[String]) -> Result<Location, ShipError> {
        let key = keys::manifest_key(&self.prefix, run);
        let body = serde_json::to_vec(&fleet::manifest_items(order))
            .map_err(|e| ShipError::json("the selection manifest", e))?;
        self.put(&key, body, "S3 PutObject (manifest)").await?;
        Ok(Location {
            bucket: self.bucket.clone(),
            key,
        })
    }

    /// A location a request names: it must be a run's object in this shipper's bucket and prefix
    /// (a request never makes the shipper read elsewhere).
    pub fn check_location(&self, field: &str, loc: &Location) -> Result<(), ShipError> {
        if loc.bucket != self.bucket || !keys::is_fleet_key(&self.prefix, &loc.key) {
            let problem = format!(
                "must name an object under s3://{}/{}/_fleet/, not s3://{}/{}",
                self.bucket,
                self.prefix.trim_matches('/'),
                loc.bucket,
                loc.key
            );
            return Err(crate::request::InvalidRequest::new(field, problem).into());
        }
        Ok(())
    }

    /// The instances of a manifest.
    pub async fn read_manifest(
        &self,
        loc: &Location,
    ) -> Result<std::collections::BTreeSet<String>, ShipError> {
        let bytes = self.get(&loc.key, "S3 GetObject (manifest)").await?;
        Ok(fleet::parse_manifest(&loc.key, &bytes)?)
    }

    /// The fleet from the Map's ResultWriter manifest at `loc` and every result file it lists.
    pub async fn read_results(&self, loc: &Location) -> Result<FleetOutcome, ShipError> {
        let bytes = self.get(&loc.key, "S3 GetObject (map results)").await?;
        let manifest: ResultManifest = serde_json::from_slice(&bytes).map_err(|e| InvalidResults {
            key: loc.key.clone(),
            problem: format!("not a ResultWriter manifest: {e}"),
        })?;
        let mut fleet = FleetOutcome::default();
        for file in manifest.result_files.values().flatten() {
            let records = self.get(&file.key, "S3 GetObject (map results)").await?;
            let records: Vec<ChildRecord> = serde_json::from_slice(&records).map_err(|e| InvalidResults {
                key: file.key.clone(),
                problem: format!("not an array of child execution records: {e}"),
            })?;
            fleet::fleet_from(&mut fleet, &file.key, &records)?;
        }
        Ok(fleet)
    }

    /// The lag index; an empty one if there is none yet or it cannot be read (the order it
    /// gives is a priority, never a reason to ship nothing).
    pub async fn read_lag_index(&self) -> Result<LagIndex, ShipError> {
        let key = keys::lag_index_key(&self.prefix);
        match self.s3.get_object().bucket(&self.bucket).key(&key).send().await {
            Ok(out) => {
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| ShipError::transfer("S3 GetObject (lag index)", e))?
                    .into_bytes();
                Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    warn!(key = %key, error = %e, "the lag index is unreadable; the fleet is ordered as if it were empty, and it is rewritten");
                    LagIndex::default()
                }))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(LagIndex::default()),
            Err(e) => Err(ShipError::aws("S3 GetObject (lag index)", e)),
        }
    }

    pub async fn write_lag_index(&self, index: &LagIndex) -> Result<(), ShipError> {
        let body = serde_json::to_vec(index).map_err(|e| ShipError::json("the lag index", e))?;
        self.put(
            &keys::lag_index_key(&self.prefix),
            body,
            "S3 PutObject (lag index)",
        )
        .await
    }

    async fn put(&self, key: &str, body: Vec<u8>, operation: &'static str) -> Result<(), ShipError> {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| ShipError::aws(operation, e))?;
        Ok(())
    }

    async fn get(&self, key: &str, operation: &'static str) -> Result<Vec<u8>, ShipError> {
        let out = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| ShipError::aws(operation, e))?;
        Ok(out
            .body
            .collect()
            .await
            .map_err(|e| ShipError::transfer(operation, e))?
            .into_bytes()
            .to_vec())
    }
}
