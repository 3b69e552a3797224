//! Recognising the format of a report sent as plain `application/json`.
//!
//! Only top-level members matter, and the decision is usually made within the
//! first few: `$schema` and `version` come before `runs` in SARIF, `bomFormat`
//! first in CycloneDX. As soon as the answer is known the probe stops reading,
//! so detection costs almost nothing even on a 100 MB report.

use super::error::{ReportError, ReportErrorKind};
use super::json::Loose;
use super::ReportFormat;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;

#[derive(Default)]
struct Clues {
    runs: bool,
    version: bool,
    sarif_schema: bool,
    decided: Option<ReportFormat>,
}

impl Clues {
    fn sarif(&self) -> bool {
        self.runs && (self.version || self.sarif_schema)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum Member {
    #[serde(rename = "runs")]
    Runs,
    #[serde(rename = "version")]
    Version,
    #[serde(rename = "$schema")]
    Schema,
    #[serde(rename = "bomFormat")]
    BomFormat,
    #[serde(rename = "format")]
    Format,
    #[serde(other)]
    Other,
}

/// Marks the probe's early exit; never shown.
const DECIDED: &str = "format decided";

struct Probe<'a>(&'a mut Clues);

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let clues = self.0;
        while let Some(member) = map.next_key::<Member>()? {
            match member {
                Member::Runs => clues.runs = true,
                Member::Version => clues.version = true,
                Member::Schema => {
                    let schema = map.next_value::<Loose>()?;
                    clues.sarif_schema |= schema
                        .as_str()
                        .is_some_and(|s| s.to_ascii_lowercase().contains("sarif"));
                    continue;
                }
                Member::BomFormat => {
                    if map.next_value::<Loose>()?.as_str() == Some("CycloneDX") {
                        clues.decided = Some(ReportFormat::CycloneDx);
                    }
                }
                Member::Format => {
                    if map.next_value::<Loose>()?.as_str() == Some("posture-native") {
                        clues.decided = Some(ReportFormat::Native);
                    }
                }
                Member::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            if clues.sarif() {
                clues.decided = Some(ReportFormat::Sarif);
            }
            if clues.decided.is_some() {
                return Err(de::Error::custom(DECIDED));
            }
            // `runs` and `version` carry values we have not consumed yet.
            if matches!(member, Member::Runs | Member::Version) {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// Detects the format of `text` from its top-level members.
pub(super) fn detect(text: &str) -> Result<ReportFormat, ReportError> {
    let mut clues = Clues::default();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let outcome = (&mut deserializer)
        .deserialize_map(Probe(&mut clues))
        .and_then(|()| deserializer.end());
    if let Some(format) = clues.decided {
        return Ok(format);
    }
    outcome.map_err(|error| ReportError::from_json(error, text))?;
    if clues.sarif() {
        return Ok(ReportFormat::Sarif);
    }
    Err(ReportError::new(
        ReportErrorKind::WrongFormat,
        "",
        "not a recognised report: expected a SARIF log (`version` and `runs`), a CycloneDX BOM \
         (`bomFormat`: \"CycloneDX\") or a native report (`format`: \"posture-native\")",
    ))
}
