//! The external carriers' settings, read once: each carrier's `number_manager.<carrier>` section
//! becomes its typed config when the store layer is built from `system_config` (so once per
//! change of the live document, not once per call), and every call of that carrier is handed it.
//! A section that cannot be read is logged when it is read and fails each call of that carrier
//! with the same clear [`Error::Config`] naming the key; the other carriers are not affected.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::external::{config_doc_id, ExternalCarrier, Section};
use super::CarrierKind;
use crate::error::Error;

/// A carrier's typed config, as [`ConfigSection::read`] returns it.
type Typed = Arc<dyn Any + Send + Sync>;

/// A module's own settings, in its `SPEC`: the document `number_manager.<name>` and how it is read.
#[derive(Clone, Copy)]
pub struct ConfigSection {
    /// `telnyx` for `number_manager.telnyx`.
    pub name: &'static str,
    /// Reads a section (the document, or its `default` object) into the carrier's config.
    pub read: fn(&Value) -> Result<Typed, Error>,
}

impl ConfigSection {
    /// The section `number_manager.<name>` of the external carrier `T`, read by
    /// [`ExternalCarrier::read_config`].
    pub(crate) const fn of<T: ExternalCarrier>(name: &'static str) -> ConfigSection {
        ConfigSection { name, read: read_as::<T> }
    }
}

impl fmt::Debug for ConfigSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigSection").field("name", &self.name).finish()
    }
}

fn read_as<T: ExternalCarrier>(section: &Value) -> Result<Typed, Error> {
    Ok(Arc::new(T::read_config(&Section::new(T::KIND, section))?))
}

/// Why a section could not be read: the key and what is wrong with it.
#[derive(Debug, Clone)]
struct Unreadable {
    key: String,
    reason: String,
}

/// Every external carrier's settings: its section as written and its typed config (or why the
/// section could not be read). Built once per `system_config` by the store layer; cheap to share.
#[derive(Clone)]
pub struct CarrierSettings {
    sections: BTreeMap<CarrierKind, Value>,
    read: BTreeMap<CarrierKind, Result<Typed, Unreadable>>,
}

impl fmt::Debug for CarrierSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // the sections hold credentials: only which carriers have one, and which failed
        let failed: Vec<_> =
            self.read.iter().filter_map(|(k, r)| r.as_ref().err().map(|_| k)).collect();
        f.debug_struct("CarrierSettings")
            .field("sections", &self.sections.keys().collect::<Vec<_>>())
            .field("unreadable", &failed)
            .finish()
    }
}

impl Default for CarrierSettings {
    /// Every external carrier with its defaults (no section written).
    fn default() -> Self {
        CarrierSettings::read(BTreeMap::new())
    }
}

impl CarrierSettings {
    /// Reads each external carrier's section (`sections`, by kind: the document, or its
    /// `default` object); a carrier without one reads its defaults. A section that cannot be
    /// read is logged here, and each call of that carrier fails with its error.
    pub fn read(sections: BTreeMap<CarrierKind, Value>) -> Self {
        let mut read = BTreeMap::new();
        for kind in CarrierKind::ALL {
            let Some(config) = kind.spec().config_section else { continue };
            let section = sections.get(&kind).unwrap_or(&Value::Null);
            let typed = (config.read)(section).map_err(|e| {
                let doc = config_doc_id(kind).unwrap_or_default();
                let unreadable = match e {
                    Error::Config { key, reason } => Unreadable { key, reason },
                    other => Unreadable { key: doc.clone(), reason: other.to_string() },
                };
                tracing::warn!(
                    document = doc.as_str(),
                    key = unreadable.key.as_str(),
                    reason = unreadable.reason.as_str(),
                    "carrier settings cannot be read; the carrier's calls fail until they are fixed"
                );
                unreadable
            });
            read.insert(kind, typed);
        }
        CarrierSettings { sections, read }
    }

    /// Every external carrier reading the same `section` (a context for one carrier's calls).
    pub fn same_for_all(section: &Value) -> Self {
        let sections = CarrierKind::ALL
            .into_iter()
            .filter(|k| k.spec().config_section.is_some())
            .map(|k| (k, section.clone()))
            .collect();
        CarrierSettings::read(sections)
    }

    /// The settings of a context that was given none: every carrier's defaults.
    pub(crate) fn defaults() -> &'static CarrierSettings {
        static DEFAULTS: OnceLock<CarrierSettings> = OnceLock::new();
        DEFAULTS.get_or_init(CarrierSettings::default)
    }

    /// The sections as written, by kind (what the feature providers read besides the carrier).
    pub fn sections(&self) -> &BTreeMap<CarrierKind, Value> {
        &self.sections
    }

    /// The typed config of the external carrier `T`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key of its section that could not be read.
    pub(crate) fn get<T: ExternalCarrier>(&self) -> Result<Arc<T::Config>, Error> {
        let doc = || config_doc_id(T::KIND).unwrap_or_else(|| T::KIND.module_name().to_owned());
        match self.read.get(&T::KIND) {
            Some(Ok(typed)) => Arc::clone(typed).downcast::<T::Config>().map_err(|_| {
                Error::Config { key: doc(), reason: "read as another carrier's settings".into() }
            }),
            Some(Err(Unreadable { key, reason })) => {
                Err(Error::Config { key: key.clone(), reason: reason.clone() })
            }
            None => Err(Error::Config {
                key: doc(),
                reason: "the carrier's SPEC declares no config section".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use serde_json::json;

    use super::CarrierSettings;
    use crate::carriers::external::testutil::doc;
    use crate::carriers::simwood::Simwood;
    use crate::carriers::telnyx::Telnyx;
    use crate::carriers::testindex::MemoryIndex;
    use crate::carriers::{CarrierCtx, CarrierKind, SearchQuery};
    use crate::config::Config;
    use crate::error::Error;

    /// A section is read once: every call is handed the same typed config; a carrier without a
    /// section reads its defaults.
    #[test]
    fn each_section_is_read_once() {
        let sections: BTreeMap<CarrierKind, serde_json::Value> =
            [(CarrierKind::Telnyx, json!({"user": "u", "token": "t"}))].into_iter().collect();
        let settings = CarrierSettings::read(sections);
        let first = settings.get::<Telnyx>().unwrap();
        assert!(Arc::ptr_eq(&first, &settings.get::<Telnyx>().unwrap()));
        assert_eq!(first.user.expose(), "u");
        assert_eq!(first.base_url, "https://api.telnyx.com/origination");
        assert!(settings.get::<Simwood>().is_ok(), "defaults for a carrier without a section");
        assert_eq!(settings.sections().len(), 1);
    }

    /// A section that cannot be read fails each call of its carrier with the key and the
    /// reason, before any request; the other carriers keep working; nothing prints a credential.
    #[tokio::test]
    async fn a_bad_section_fails_its_carriers_calls_clearly() {
        let sections: BTreeMap<CarrierKind, serde_json::Value> = [
            (CarrierKind::Telnyx, json!({"token": "s3cret", "base_url": "ftp://example.com"})),
            (CarrierKind::Simwood, json!({"request_timeout_ms": "soon"})),
        ]
        .into_iter()
        .collect();
        let settings = CarrierSettings::read(sections);
        let (config, index) = (Config::kazoo_defaults(), MemoryIndex::default());
        let ctx = CarrierCtx::new(&config, &index).with_settings(&settings);
        let err = CarrierKind::Telnyx
            .carrier()
            .find_numbers(&SearchQuery::new("+1415", 1), &ctx)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Config { key, reason }
                if key == "number_manager.telnyx.base_url" && reason == "expected an http(s) URL"),
            "{err:?}"
        );
        let err = CarrierKind::Simwood
            .acquire(doc("+442031234567", CarrierKind::Simwood), &ctx)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Config { key, .. } if key == "number_manager.simwood.request_timeout_ms"),
            "{err:?}"
        );
        assert!(settings.get::<crate::carriers::other::Other>().is_ok());
        assert!(!format!("{settings:?}").contains("s3cret"));
    }
}
