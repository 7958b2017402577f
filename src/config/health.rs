//! `[health]`: where `/healthz` and `/readyz` are served, if anywhere.

use serde::Deserialize;

use super::Problems;

#[derive(Debug, Clone)]
pub struct HealthSettings {
    /// Where `/healthz` and `/readyz` are served; `None` turns the endpoint off.
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    listen: Option<String>,
}

impl RawHealth {
    pub(super) fn validate(self, p: &mut Problems) -> HealthSettings {
        let listen = self.listen.as_deref().and_then(|text| {
            let parsed = text.parse().ok();
            p.check(
                parsed.is_some(),
                "health.listen",
                format!("{text:?} is not an address such as \"0.0.0.0:8080\""),
            );
            parsed
        });
        HealthSettings { listen }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, GOOD};

    #[test]
    fn health_endpoint_is_off_unless_an_address_is_given() {
        assert_eq!(load(GOOD, &[]).unwrap().health.listen, None);
        let s = load(GOOD, &[("LAKEWORKER__HEALTH__LISTEN", "0.0.0.0:8080")]).unwrap();
        assert_eq!(s.health.listen, Some("0.0.0.0:8080".parse().unwrap()));
        let err = load(GOOD, &[("LAKEWORKER__HEALTH__LISTEN", "localhost")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("health.listen: \"localhost\" is not an address"),
            "{err}"
        );
    }
}
