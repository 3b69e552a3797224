//! Findings: applying a processed scan (bulk, set-based) and reading them back.

use super::TenantTx;
use chrono::{DateTime, Duration, Utc};
use posture_domain::finding::{NormalizedFinding, Severity};
use posture_domain::ids::{AssetId, FindingId, ScanId};
use posture_domain::Fingerprint;
use std::collections::hash_map::{Entry, HashMap};
use uuid::Uuid;

use super::scans::ScanCounts;

/// Separator of list values packed into one text per row for UNNEST (Postgres
/// arrays must be rectangular, so per-row arrays travel as delimited text).
const LIST_SEPARATOR: &str = "\u{1f}";

/// Findings per write statement. Rows are written in batches so that memory
/// stays bounded whatever the report's size: sqlx encodes a statement's
/// parameters twice (the arguments, then the wire message), which for 100,000
/// new findings in one INSERT came to more than 100 MB. Batches of this size
/// keep each under a few MB (and Postgres's UNNEST within `work_mem`), while
/// round trips stay negligible (20 per statement kind for 100,000 findings).
const WRITE_BATCH: usize = 5_000;

/// SLA days by severity, from the tenant's settings.
#[derive(Debug, Clone, Copy)]
pub struct SlaPolicy {
    pub critical_days: i32,
    pub high_days: i32,
    pub medium_days: i32,
    pub low_days: i32,
}

impl Default for SlaPolicy {
    fn default() -> Self {
        SlaPolicy {
            critical_days: 7,
            high_days: 30,
            medium_days: 90,
            low_days: 180,
        }
    }
}

impl SlaPolicy {
    /// The due date of a finding first seen at `first_seen`; none for info.
    pub fn due(&self, severity: Severity, first_seen: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let days = match severity {
            Severity::Critical => self.critical_days,
            Severity::High => self.high_days,
            Severity::Medium => self.medium_days,
            Severity::Low => self.low_days,
            Severity::Info => return None,
        };
        Some(first_seen + Duration::days(i64::from(days)))
    }
}

/// The tenant's SLA policy (defaults when it has set none).
pub async fn sla_policy(tx: &mut TenantTx) -> Result<SlaPolicy, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let row: Option<(i32, i32, i32, i32)> = sqlx::query_as(
        "SELECT sla_critical_days, sla_high_days, sla_medium_days, sla_low_days
         FROM tenant_settings WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(tx.conn())
    .await?;
    Ok(row.map_or_else(
        SlaPolicy::default,
        |(critical_days, high_days, medium_days, low_days)| SlaPolicy {
            critical_days,
            high_days,
            medium_days,
            low_days,
        },
    ))
}

/// What one scan brings to apply.
pub struct ScanApplication<'a> {
    pub asset_id: AssetId,
    pub scan_id: ScanId,
    pub tool_name: &'a str,
    /// A full scan resolves this tool's findings on the asset that it no longer reports.
    pub full: bool,
    pub findings: Vec<NormalizedFinding>,
    pub now: DateTime<Utc>,
    pub sla: SlaPolicy,
}

#[derive(sqlx::FromRow)]
struct ExistingRow {
    id: Uuid,
    /// 1-based position of the finding in the scan's list.
    position: i64,
    status: String,
    severity: String,
    accepted_until: Option<DateTime<Utc>>,
}

/// What applying a scan did: the counts, and the findings it created or
/// reopened (for `finding.created` / `finding.reopened` webhooks; the store
/// reads their titles only for the few that are sent).
#[derive(Debug, Default)]
pub struct AppliedScan {
    pub counts: ScanCounts,
    /// Created findings with their severity, in report order.
    pub created: Vec<(Uuid, Severity)>,
    /// Reopened findings with their severity and the status they left
    /// (`resolved`, or `accepted_risk` whose acceptance expired).
    pub reopened: Vec<(Uuid, Severity, &'static str)>,
}

/// One history entry to write.
struct Event {
    finding_id: Uuid,
    kind: &'static str,
    from_status: Option<String>,
    to_status: Option<String>,
    reason: Option<String>,
}

/// Applies a scan's findings to the asset: inserts new findings, refreshes seen
/// ones (reopening resolved ones and expired risk acceptances), records this
/// tool's sightings, and — for a full scan — resolves what the tool no longer
/// reports. Every statement is set-based (UNNEST): a report of any size costs a
/// fixed number of round trips per [`WRITE_BATCH`] findings. Triage decisions
/// (false positive, accepted risk) survive rescans.
#[tracing::instrument(level = "debug", skip_all, fields(findings = application.findings.len()))]
pub async fn apply_scan(
    tx: &mut TenantTx,
    application: ScanApplication<'_>,
) -> Result<AppliedScan, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let ScanApplication {
        asset_id,
        scan_id,
        tool_name,
        full,
        findings,
        now,
        sla,
    } = application;

    // One scan of an asset at a time: concurrent scans of one asset would race on
    // the same findings and sightings (unique violations, deadlocks, each other's
    // resolutions). Transaction-scoped, so it is released at commit or rollback.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2::text, 0))")
        .bind(tenant_id)
        .bind(asset_id.as_uuid())
        .execute(tx.conn())
        .await?;
    // Sightings are keyed by the tool's name as fingerprints use it (trimmed,
    // lowercase), so "Trivy" and "trivy" are one tool.
    let tool_key = tool_name.trim().to_lowercase();
    let tool_key = tool_key.as_str();
    // An older full scan applied after a newer one (a retry that waited out its
    // backoff) must not undo the newer one's resolutions: it only refreshes.
    let full = full && !newer_full_scan_applied(tx, tenant_id, asset_id, scan_id, tool_key).await?;

    // De-duplicate within the report: the same fingerprint twice is one finding.
    let findings = distinct(findings);

    // The asset's existing findings among these, locked, matched back by position.
    // A join with UNNEST rather than `fingerprint = ANY($3)`: under a generic plan
    // (which Postgres may pick for a prepared statement after five runs) the
    // array is a parameter and `= ANY` a linear search per row, quadratic in the
    // report's size (measured: 9 s for 5,000 fingerprints on a 100,000-finding
    // asset); the join is a hash join either way.
    let fingerprints: Vec<String> = findings
        .iter()
        .map(|finding| finding.fingerprint.to_string())
        .collect();
    let rows: Vec<ExistingRow> = sqlx::query_as(
        "SELECT f.id, u.position, f.status, f.severity, f.accepted_until
         FROM UNNEST($3::text[]) WITH ORDINALITY AS u(fingerprint, position)
         JOIN findings f ON f.tenant_id = $1 AND f.asset_id = $2 AND f.fingerprint = u.fingerprint
         FOR UPDATE OF f",
    )
    .bind(tenant_id)
    .bind(asset_id.as_uuid())
    .bind(&fingerprints)
    .fetch_all(tx.conn())
    .await?;
    drop(fingerprints);
    let mut existing: Vec<Option<ExistingRow>> = Vec::with_capacity(findings.len());
    existing.resize_with(findings.len(), || None);
    for row in rows {
        let at = usize::try_from(row.position - 1)
            .map_err(|_| sqlx::Error::Protocol("UNNEST ordinality out of range".into()))?;
        if let Some(slot) = existing.get_mut(at) {
            *slot = Some(row);
        }
    }

    let mut counts = ScanCounts {
        total: findings.len() as i32,
        ..ScanCounts::default()
    };
    let mut seen = SeenRows::default();
    let mut created: Vec<(Uuid, Severity)> = Vec::new();
    let mut reopened: Vec<(Uuid, Severity, &'static str)> = Vec::new();

    for (batch, batch_existing) in findings
        .chunks(WRITE_BATCH)
        .zip(existing.chunks(WRITE_BATCH))
    {
        let mut events: Vec<Event> = Vec::new();
        let mut new_rows = NewRows::default();
        let mut sighted: Vec<Uuid> = Vec::with_capacity(batch.len());
        for (finding, existing) in batch.iter().zip(batch_existing) {
            match existing {
                None => {
                    let id = FindingId::new().as_uuid();
                    new_rows.push(id, finding, sla.due(finding.severity, now));
                    events.push(Event {
                        finding_id: id,
                        kind: "created",
                        from_status: None,
                        to_status: Some("open".into()),
                        reason: None,
                    });
                    sighted.push(id);
                    created.push((id, finding.severity));
                    counts.new += 1;
                }
                Some(row) => {
                    let status = match row.status.as_str() {
                        "resolved" => {
                            counts.reopened += 1;
                            reopened.push((row.id, finding.severity, "resolved"));
                            events.push(Event {
                                finding_id: row.id,
                                kind: "reopened",
                                from_status: Some(row.status.clone()),
                                to_status: Some("reopened".into()),
                                reason: None,
                            });
                            "reopened".to_owned()
                        }
                        "accepted_risk" if row.accepted_until.is_some_and(|until| until <= now) => {
                            counts.reopened += 1;
                            reopened.push((row.id, finding.severity, "accepted_risk"));
                            events.push(Event {
                                finding_id: row.id,
                                kind: "risk_expired",
                                from_status: Some(row.status.clone()),
                                to_status: Some("reopened".into()),
                                reason: None,
                            });
                            "reopened".to_owned()
                        }
                        other => {
                            counts.unchanged += 1;
                            other.to_owned()
                        }
                    };
                    if row.severity != finding.severity.as_str() {
                        events.push(Event {
                            finding_id: row.id,
                            kind: "severity_changed",
                            from_status: None,
                            to_status: None,
                            reason: Some(format!(
                                "severity {} -> {}",
                                row.severity, finding.severity
                            )),
                        });
                    }
                    seen.push(row.id, finding, status);
                    sighted.push(row.id);
                }
            }
        }
        new_rows
            .insert(tx, tenant_id, asset_id, scan_id, tool_name, now)
            .await?;
        record_sightings(tx, tenant_id, tool_key, asset_id, scan_id, now, &sighted).await?;
        insert_events(tx, tenant_id, scan_id, &events, now).await?;
    }
    // One statement for all seen findings: in batches, each UPDATE would read
    // all of the asset's findings again whenever Postgres joins by hash (it does
    // while statistics are stale; measured: a 100,000-finding rescan went from
    // 4.4 s to 6.8 s), and its parameters are a fraction of the INSERT's. What
    // it needs is copied into `seen`: the findings can go first.
    drop((findings, existing));
    seen.update(tx, tenant_id, asset_id, scan_id, now, sla)
        .await?;

    if full {
        // Sightings of this tool on this asset not renewed by this scan are gone;
        // a finding no tool reports any more is resolved (triaged ones keep their
        // triage status).
        // Also resolved: live findings of the asset that no tool reports at all
        // any more (their sightings went while they were triaged, and they were
        // reopened since), so nothing can stay open without a reporter.
        let resolved: Vec<Uuid> = sqlx::query_scalar(
            "WITH dropped AS (
                 DELETE FROM finding_sightings
                 WHERE tenant_id = $1 AND asset_id = $2 AND tool_name = $3 AND last_scan_id <> $4
                 RETURNING finding_id
             )
             UPDATE findings f SET status = 'resolved', resolved_at = $5
             WHERE f.tenant_id = $1 AND f.asset_id = $2 AND f.status IN ('open', 'reopened')
               AND (f.id IN (SELECT finding_id FROM dropped)
                    OR NOT EXISTS (SELECT 1 FROM finding_sightings s
                                   WHERE s.tenant_id = $1 AND s.finding_id = f.id))
               AND NOT EXISTS (SELECT 1 FROM finding_sightings s
                               WHERE s.tenant_id = $1 AND s.finding_id = f.id AND s.tool_name <> $3)
             RETURNING f.id",
        )
        .bind(tenant_id)
        .bind(asset_id.as_uuid())
        .bind(tool_key)
        .bind(scan_id.as_uuid())
        .bind(now)
        .fetch_all(tx.conn())
        .await?;
        counts.resolved = resolved.len() as i32;
        let reason = format!("no longer reported by {tool_name}");
        let events: Vec<Event> = resolved
            .into_iter()
            .map(|finding_id| Event {
                finding_id,
                kind: "resolved",
                from_status: None,
                to_status: Some("resolved".into()),
                reason: Some(reason.clone()),
            })
            .collect();
        insert_events(tx, tenant_id, scan_id, &events, now).await?;
    }
    Ok(AppliedScan {
        counts,
        created,
        reopened,
    })
}

/// Whether a full scan of the same asset and tool, submitted after `scan_id`,
/// has already been applied.
async fn newer_full_scan_applied(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    asset_id: AssetId,
    scan_id: ScanId,
    tool_key: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (
             SELECT 1 FROM scans newer, scans this
             WHERE this.tenant_id = $1 AND this.id = $3
               AND newer.tenant_id = $1 AND newer.asset_id = $2 AND newer.id <> $3
               AND lower(btrim(newer.tool_name)) = $4 AND newer.scope = 'full' AND newer.status = 'succeeded'
               AND newer.submitted_at > this.submitted_at)",
    )
    .bind(tenant_id)
    .bind(asset_id.as_uuid())
    .bind(scan_id.as_uuid())
    .bind(tool_key)
    .fetch_one(tx.conn())
    .await
}

/// The findings with distinct fingerprints, in order: a repeated fingerprint is
/// merged into its first occurrence. In place, without a second copy of the
/// findings (the parsers already merge duplicates, so this rarely finds any).
fn distinct(mut findings: Vec<NormalizedFinding>) -> Vec<NormalizedFinding> {
    let mut positions: HashMap<Fingerprint, usize> = HashMap::with_capacity(findings.len());
    let mut kept = 0;
    for read in 0..findings.len() {
        match positions.entry(findings[read].fingerprint) {
            Entry::Occupied(first) => {
                let duplicate = findings[read].clone();
                findings[*first.get()].merge(duplicate);
            }
            Entry::Vacant(slot) => {
                slot.insert(kept);
                findings.swap(kept, read);
                kept += 1;
            }
        }
    }
    findings.truncate(kept);
    findings
}

/// Records that this tool reports these findings on this asset as of this scan.
async fn record_sightings(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    tool_name: &str,
    asset_id: AssetId,
    scan_id: ScanId,
    now: DateTime<Utc>,
    finding_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    if finding_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO finding_sightings (tenant_id, finding_id, tool_name, asset_id, last_scan_id, last_seen_at)
         SELECT $1, finding_id, $2, $3, $4, $5 FROM UNNEST($6::uuid[]) AS finding_id
         ON CONFLICT (tenant_id, finding_id, tool_name)
         DO UPDATE SET last_scan_id = EXCLUDED.last_scan_id, last_seen_at = EXCLUDED.last_seen_at",
    )
    .bind(tenant_id)
    .bind(tool_name)
    .bind(asset_id.as_uuid())
    .bind(scan_id.as_uuid())
    .bind(now)
    .bind(finding_ids)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Columns of new findings, one vector per column, for one UNNEST insert.
#[derive(Default)]
struct NewRows {
    ids: Vec<Uuid>,
    fingerprints: Vec<String>,
    rule_ids: Vec<String>,
    titles: Vec<String>,
    descriptions: Vec<Option<String>>,
    severities: Vec<&'static str>,
    cwe_ids: Vec<String>,
    vulnerability_ids: Vec<String>,
    uris: Vec<Option<String>>,
    lines: Vec<Option<i32>>,
    purls: Vec<Option<String>>,
    package_names: Vec<Option<String>>,
    package_versions: Vec<Option<String>>,
    sla_due: Vec<Option<DateTime<Utc>>>,
}

impl NewRows {
    fn push(&mut self, id: Uuid, finding: &NormalizedFinding, sla_due: Option<DateTime<Utc>>) {
        self.ids.push(id);
        self.fingerprints.push(finding.fingerprint.to_string());
        self.rule_ids.push(finding.rule_id.clone());
        self.titles.push(finding.title.clone());
        self.descriptions.push(finding.description.clone());
        self.severities.push(finding.severity.as_str());
        self.cwe_ids
            .push(join_list(finding.cwe_ids.iter().map(u32::to_string)));
        self.vulnerability_ids
            .push(join_list(finding.vulnerability_ids.iter().cloned()));
        self.uris
            .push(finding.location.as_ref().map(|l| l.uri.clone()));
        self.lines.push(
            finding
                .location
                .as_ref()
                .and_then(|l| l.start_line)
                .and_then(|line| i32::try_from(line).ok()),
        );
        self.purls
            .push(finding.package.as_ref().and_then(|p| p.purl.clone()));
        self.package_names
            .push(finding.package.as_ref().map(|p| p.name.clone()));
        self.package_versions
            .push(finding.package.as_ref().and_then(|p| p.version.clone()));
        self.sla_due.push(sla_due);
    }

    async fn insert(
        &self,
        tx: &mut TenantTx,
        tenant_id: Uuid,
        asset_id: AssetId,
        scan_id: ScanId,
        tool_name: &str,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        if self.ids.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO findings (tenant_id, id, asset_id, fingerprint, tool_name, rule_id, title, description,
                                   severity, cwe_ids, vulnerability_ids, location_uri, location_line,
                                   package_purl, package_name, package_version, status, first_seen_at,
                                   last_seen_at, sla_due_at, last_scan_id)
             SELECT $1, u.id, $2, u.fingerprint, $3, u.rule_id, u.title, u.description, u.severity,
                    COALESCE(string_to_array(NULLIF(u.cwe_ids, ''), $19)::integer[], '{}'),
                    COALESCE(string_to_array(NULLIF(u.vulnerability_ids, ''), $19), '{}'),
                    u.uri, u.line, u.purl, u.package_name, u.package_version, 'open', $4, $4, u.sla_due, $5
             FROM UNNEST($6::uuid[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                         $13::text[], $14::text[], $15::integer[], $16::text[], $17::text[], $18::text[],
                         $20::timestamptz[])
                  AS u(id, fingerprint, rule_id, title, description, severity, cwe_ids, vulnerability_ids,
                       uri, line, purl, package_name, package_version, sla_due)",
        )
        .bind(tenant_id)
        .bind(asset_id.as_uuid())
        .bind(tool_name)
        .bind(now)
        .bind(scan_id.as_uuid())
        .bind(&self.ids)
        .bind(&self.fingerprints)
        .bind(&self.rule_ids)
        .bind(&self.titles)
        .bind(&self.descriptions)
        .bind(&self.severities)
        .bind(&self.cwe_ids)
        .bind(&self.vulnerability_ids)
        .bind(&self.uris)
        .bind(&self.lines)
        .bind(&self.purls)
        .bind(&self.package_names)
        .bind(&self.package_versions)
        .bind(LIST_SEPARATOR)
        .bind(&self.sla_due)
        .execute(tx.conn())
        .await?;
        Ok(())
    }
}

/// Columns of findings seen again, for one UNNEST update.
#[derive(Default)]
struct SeenRows {
    ids: Vec<Uuid>,
    statuses: Vec<String>,
    severities: Vec<&'static str>,
    titles: Vec<String>,
    /// The package version as last reported: a dependency finding's identity
    /// leaves the version out, so an upgrade that is still vulnerable keeps the
    /// finding (and its triage) while the version shown stays current.
    package_versions: Vec<Option<String>>,
}

impl SeenRows {
    fn push(&mut self, id: Uuid, finding: &NormalizedFinding, status: String) {
        self.ids.push(id);
        self.statuses.push(status);
        self.severities.push(finding.severity.as_str());
        self.titles.push(finding.title.clone());
        self.package_versions
            .push(finding.package.as_ref().and_then(|p| p.version.clone()));
    }

    async fn update(
        &self,
        tx: &mut TenantTx,
        tenant_id: Uuid,
        asset_id: AssetId,
        scan_id: ScanId,
        now: DateTime<Utc>,
        sla: SlaPolicy,
    ) -> Result<(), sqlx::Error> {
        if self.ids.is_empty() {
            return Ok(());
        }
        // A changed severity moves the due date: first seen + the new severity's days.
        sqlx::query(
            "UPDATE findings f
             SET last_seen_at = $2, last_scan_id = $3, status = u.status, severity = u.severity, title = u.title,
                 sla_due_at = CASE
                     WHEN u.severity = f.severity THEN f.sla_due_at
                     WHEN u.severity = 'info' THEN NULL
                     ELSE f.first_seen_at + make_interval(days => CASE u.severity
                         WHEN 'critical' THEN $10 WHEN 'high' THEN $11 WHEN 'medium' THEN $12 ELSE $13 END)
                 END,
                 package_version = COALESCE(u.package_version, f.package_version),
                 resolved_at = CASE WHEN u.status = 'reopened' THEN NULL ELSE f.resolved_at END,
                 accepted_until = CASE WHEN u.status = 'reopened' THEN NULL ELSE f.accepted_until END
             FROM UNNEST($4::uuid[], $5::text[], $6::text[], $7::text[], $8::text[])
                  AS u(id, status, severity, title, package_version)
             WHERE f.tenant_id = $1 AND f.asset_id = $9 AND f.id = u.id",
        )
        .bind(tenant_id)
        .bind(now)
        .bind(scan_id.as_uuid())
        .bind(&self.ids)
        .bind(&self.statuses)
        .bind(&self.severities)
                .bind(&self.titles)
        .bind(&self.package_versions)
        // Redundant (the ids are the asset's), but it lets Postgres read only the
        // asset's findings when it joins by hash rather than all of the tenant's.
        .bind(asset_id.as_uuid())
        .bind(sla.critical_days)
        .bind(sla.high_days)
        .bind(sla.medium_days)
        .bind(sla.low_days)
        .execute(tx.conn())
        .await?;
        Ok(())
    }
}

async fn insert_events(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    scan_id: ScanId,
    events: &[Event],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    for batch in events.chunks(WRITE_BATCH) {
        insert_event_batch(tx, tenant_id, scan_id, batch, now).await?;
    }
    Ok(())
}

async fn insert_event_batch(
    tx: &mut TenantTx,
    tenant_id: Uuid,
    scan_id: ScanId,
    events: &[Event],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = events.iter().map(|_| Uuid::now_v7()).collect();
    let finding_ids: Vec<Uuid> = events.iter().map(|e| e.finding_id).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let from: Vec<Option<String>> = events.iter().map(|e| e.from_status.clone()).collect();
    let to: Vec<Option<String>> = events.iter().map(|e| e.to_status.clone()).collect();
    let reasons: Vec<Option<String>> = events.iter().map(|e| e.reason.clone()).collect();
    sqlx::query(
        "INSERT INTO finding_events (tenant_id, id, finding_id, occurred_at, kind, from_status, to_status,
                                     scan_id, actor, reason)
         SELECT $1, u.id, u.finding_id, $2, u.kind, u.from_status, u.to_status, $3, 'scan', u.reason
         FROM UNNEST($4::uuid[], $5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[])
              AS u(id, finding_id, kind, from_status, to_status, reason)",
    )
    .bind(tenant_id)
    .bind(now)
    .bind(scan_id.as_uuid())
    .bind(&ids)
    .bind(&finding_ids)
    .bind(&kinds)
    .bind(&from)
    .bind(&to)
    .bind(&reasons)
    .execute(tx.conn())
    .await?;
    Ok(())
}

fn join_list(values: impl Iterator<Item = String>) -> String {
    values.collect::<Vec<_>>().join(LIST_SEPARATOR)
}
