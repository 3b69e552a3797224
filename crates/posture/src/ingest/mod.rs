//! Scan ingestion shared by the API and the workers: report parsing off the
//! async threads, and report compression for storage.

pub mod process;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use posture_domain::report::{parse_report, ParsedReport, ReportError, ReportFormat};
use std::io::{Read, Write};
use std::sync::Arc;

/// The name of a format as stored and shown (`sarif`, `cyclonedx`, `native`).
pub fn format_name(format: ReportFormat) -> &'static str {
    match format {
        ReportFormat::Sarif => "sarif",
        ReportFormat::CycloneDx => "cyclonedx",
        ReportFormat::Native => "native",
    }
}

/// The format of a stored name.
pub fn format_from_name(name: &str) -> Option<ReportFormat> {
    match name {
        "sarif" => Some(ReportFormat::Sarif),
        "cyclonedx" => Some(ReportFormat::CycloneDx),
        "native" => Some(ReportFormat::Native),
        _ => None,
    }
}

/// Parses a report on a blocking thread: parsing a large report is CPU work that
/// would stall the async executor (and must never run inside a transaction).
pub async fn parse_off_thread(
    report: Arc<[u8]>,
    declared: Option<ReportFormat>,
    tool_hint: Option<String>,
) -> Result<Result<ParsedReport, ReportError>, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || parse_report(&report, declared, tool_hint.as_deref())).await
}

/// Gzip-compresses a report for storage (fast level: reports are written once
/// and read once or twice).
pub fn compress(report: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(report.len() / 4), Compression::fast());
    // Writing into a Vec cannot fail.
    encoder.write_all(report).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// Decompresses a stored report, refusing more than `limit` bytes (a stored
/// report was size-checked on the way in; this guards against a corrupt row).
pub fn decompress(stored: &[u8], limit: usize) -> std::io::Result<Vec<u8>> {
    let mut report = Vec::new();
    GzDecoder::new(stored)
        .take(limit as u64 + 1)
        .read_to_end(&mut report)?;
    if report.len() > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stored report exceeds the size limit",
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_through_compression_within_the_limit() {
        let report = br#"{"version":"2.1.0","runs":[]}"#.repeat(100);
        let stored = compress(&report);
        assert!(stored.len() < report.len());
        assert_eq!(decompress(&stored, report.len()).unwrap(), report);
        assert!(decompress(&stored, report.len() - 1).is_err());
    }

    #[test]
    fn format_names_round_trip() {
        for format in [
            ReportFormat::Sarif,
            ReportFormat::CycloneDx,
            ReportFormat::Native,
        ] {
            assert_eq!(format_from_name(format_name(format)), Some(format));
        }
    }
}
