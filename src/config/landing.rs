//! `[landing]`: the bucket files arrive in, and whether they are deleted once converted.

use serde::Deserialize;

use super::checks::check_bucket;
use super::Problems;

#[derive(Debug, Clone)]
pub struct LandingSettings {
    pub bucket: String,
    /// Delete a landing object once converted and copied to the raw zone.
    pub delete_after: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLanding {
    bucket: String,
    #[serde(default)]
    delete_after: bool,
}

impl RawLanding {
    /// `delete_after` also needs the lake's raw zone: see [`super::validate`].
    pub(super) fn validate(self, p: &mut Problems) -> LandingSettings {
        check_bucket(p, "landing.bucket", &self.bucket);
        LandingSettings {
            bucket: self.bucket,
            delete_after: self.delete_after,
        }
    }
}
