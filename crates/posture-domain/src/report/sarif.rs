//! SARIF 2.1.0 (<https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html>).
//!
//! The log and each run are read by hand-written visitors so that results
//! stream: when a run's `tool` precedes its `results` (as every tool writes
//! it), each result becomes a finding the moment it is read and the raw
//! result is dropped. Otherwise results are buffered until the run ends.

use super::error::{ReportError, ReportErrorKind};
use super::json::{EachElement, Loose};
use super::sarif_model::{RawResult, RunIndex, Taxonomy, Tool};
use super::sarif_result::draft;
use super::{no_tool_name, Sink};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

const SUPPORTED_VERSION: &str = "2.1.0";

/// Parses a SARIF log into `sink`; returns the tool name and version.
pub(super) fn parse(
    text: &str,
    hint: Option<&str>,
    sink: &mut Sink,
) -> Result<(String, Option<String>), ReportError> {
    let mut log = LogState {
        sink,
        hint,
        stash: None,
        version: None,
        runs: false,
        first_tool: None,
    };
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let outcome = (&mut deserializer)
        .deserialize_map(LogVisitor(&mut log))
        .and_then(|()| deserializer.end());
    let failure = match (log.stash.take(), outcome) {
        (Some(error), _) => Some(error),
        (None, Err(error)) => Some(ReportError::from_json(error, text)),
        (None, Ok(())) => None,
    };
    if let Some(error) = failure {
        // Another SARIF version may fail on fields 2.1.0 defines differently;
        // the version is then the real problem.
        let field_error = matches!(
            error.kind,
            ReportErrorKind::Invalid | ReportErrorKind::WrongFormat
        );
        if log.runs && field_error && matches!(&log.version, Some(Loose::Str(_))) {
            check_version(log.version.as_ref())?;
        }
        return Err(error);
    }
    if !log.runs {
        return Err(ReportError::new(
            ReportErrorKind::WrongFormat,
            "",
            "not a SARIF log: expected `version` and a `runs` array",
        ));
    }
    check_version(log.version.as_ref())?;
    match log.first_tool {
        Some(tool) => Ok(tool),
        None => hint
            .map(|h| (h.to_owned(), None))
            .ok_or_else(|| no_tool_name("/runs/0/tool/driver/name")),
    }
}

fn check_version(version: Option<&Loose>) -> Result<(), ReportError> {
    match version {
        Some(Loose::Str(v)) if v == SUPPORTED_VERSION => Ok(()),
        Some(Loose::Str(v)) => Err(ReportError::new(
            ReportErrorKind::UnsupportedVersion,
            "/version",
            format!("SARIF version {v:?} is not supported; expected \"{SUPPORTED_VERSION}\""),
        )),
        Some(_) => Err(ReportError::invalid(
            "/version",
            "`version` must be the string \"2.1.0\"",
        )),
        None => Err(ReportError::invalid(
            "/version",
            "the SARIF log has no `version`",
        )),
    }
}

struct LogState<'a> {
    sink: &'a mut Sink,
    hint: Option<&'a str>,
    stash: Option<ReportError>,
    version: Option<Loose>,
    runs: bool,
    first_tool: Option<(String, Option<String>)>,
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum LogMember {
    #[serde(rename = "version")]
    Version,
    #[serde(rename = "runs")]
    Runs,
    #[serde(other)]
    Other,
}

struct LogVisitor<'s, 'a>(&'s mut LogState<'a>);

impl<'de> Visitor<'de> for LogVisitor<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a SARIF log object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let log = self.0;
        while let Some(member) = map.next_key::<LogMember>()? {
            match member {
                LogMember::Version => log.version = Some(map.next_value::<Loose>()?),
                LogMember::Runs => {
                    log.runs = true;
                    map.next_value_seed(RunsSeed(log))?;
                }
                LogMember::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct RunsSeed<'s, 'a>(&'s mut LogState<'a>);

impl<'de> DeserializeSeed<'de> for RunsSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RunsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of runs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut run = 0;
        while seq
            .next_element_seed(RunSeed {
                log: &mut *self.0,
                run,
            })?
            .is_some()
        {
            run += 1;
        }
        Ok(())
    }
}

struct RunSeed<'s, 'a> {
    log: &'s mut LogState<'a>,
    run: usize,
}

#[derive(Deserialize)]
#[serde(field_identifier)]
enum RunMember {
    #[serde(rename = "tool")]
    Tool,
    #[serde(rename = "taxonomies")]
    Taxonomies,
    #[serde(rename = "results")]
    Results,
    #[serde(other)]
    Other,
}

impl<'de> DeserializeSeed<'de> for RunSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RunSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a run object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (log, run) = (self.log, self.run);
        let mut tool: Option<Tool> = None;
        let mut taxonomies: Vec<Taxonomy> = Vec::new();
        let mut index: Option<RunIndex> = None;
        let mut buffered: Vec<(usize, RawResult)> = Vec::new();
        let fail = |log: &mut LogState, error: ReportError| {
            log.stash = Some(error);
            de::Error::custom(super::json::STASHED)
        };
        while let Some(member) = map.next_key::<RunMember>()? {
            match member {
                RunMember::Tool => tool = Some(map.next_value()?),
                RunMember::Taxonomies => {
                    taxonomies = map
                        .next_value::<Option<Vec<Taxonomy>>>()?
                        .unwrap_or_default();
                }
                RunMember::Results => {
                    if index.is_none() {
                        if let Some(tool) = tool.take() {
                            let built =
                                build_index(log, run, tool, std::mem::take(&mut taxonomies));
                            index = Some(built.map_err(|e| fail(log, e))?);
                        }
                    }
                    let LogState { sink, stash, .. } = &mut *log;
                    let pointer = |i: usize| format!("/runs/{run}/results/{i}");
                    map.next_value_seed(EachElement::new(stash, |i, raw: RawResult| {
                        sink.admit(|| pointer(i))?;
                        match &index {
                            Some(index) => emit(index, sink, raw, &pointer(i)),
                            None => {
                                buffered.push((i, raw));
                                Ok(())
                            }
                        }
                    }))?;
                }
                RunMember::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let index = match index {
            Some(index) => index,
            None => build_index(log, run, tool.unwrap_or_default(), taxonomies)
                .map_err(|e| fail(log, e))?,
        };
        for (i, raw) in buffered {
            let pointer = format!("/runs/{run}/results/{i}");
            emit(&index, log.sink, raw, &pointer).map_err(|e| fail(log, e))?;
        }
        Ok(())
    }
}

/// Names the run's tool (falling back to the hint) and indexes its rules.
fn build_index(
    log: &mut LogState,
    run: usize,
    mut tool: Tool,
    taxonomies: Vec<Taxonomy>,
) -> Result<RunIndex, ReportError> {
    let driver = tool.driver.get_or_insert_with(Default::default);
    let name = driver
        .name
        .take()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    let version = driver
        .version
        .take()
        .or_else(|| driver.semantic_version.take());
    let name = match (name, log.hint) {
        (Some(name), _) => name,
        (None, Some(hint)) => hint.to_owned(),
        (None, None) => return Err(no_tool_name(&format!("/runs/{run}/tool/driver/name"))),
    };
    if log.first_tool.is_none() {
        log.first_tool = Some((name.clone(), version));
    }
    Ok(RunIndex::new(name, tool, taxonomies))
}

fn emit(
    index: &RunIndex,
    sink: &mut Sink,
    raw: RawResult,
    pointer: &str,
) -> Result<(), ReportError> {
    if let Some(draft) = draft(index, raw, pointer)? {
        sink.push(&index.tool_name, draft);
    }
    Ok(())
}
