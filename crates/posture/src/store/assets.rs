//! Assets of the transaction's tenant: what gets scanned, unique per kind and name.

use super::TenantTx;
use chrono::{DateTime, Utc};
use posture_domain::asset::{AssetKind, AssetName, Criticality};
use posture_domain::ids::AssetId;
use uuid::Uuid;

/// The unique constraint on `(tenant_id, kind, name)` (Postgres's default name).
const NAME_CONSTRAINT: &str = "assets_tenant_id_kind_name_key";

/// An asset as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetRecord {
    pub id: AssetId,
    pub kind: AssetKind,
    pub name: String,
    pub criticality: Criticality,
    /// Normalized: trimmed, de-duplicated, sorted.
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An asset to insert, from validated input.
#[derive(Debug)]
pub struct NewAsset<'a> {
    pub kind: AssetKind,
    pub name: &'a AssetName,
    pub criticality: Criticality,
    /// Already normalized with `parse_tags`.
    pub tags: &'a [String],
}

/// What an update sets; `None` leaves the column as it is.
#[derive(Debug, Default)]
pub struct AssetChanges {
    pub name: Option<AssetName>,
    pub criticality: Option<Criticality>,
    /// Already normalized with `parse_tags`; `Some(vec![])` clears the tags.
    pub tags: Option<Vec<String>>,
}

/// Narrows a listing; every filter that is set must match.
#[derive(Debug, Default, Clone)]
pub struct AssetFilters {
    pub kind: Option<AssetKind>,
    /// An asset matches when this is one of its tags (exact, normalized).
    pub tag: Option<String>,
}

/// Position after the last asset of a page: assets are listed newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetPageCursor {
    pub created_at: DateTime<Utc>,
    pub id: AssetId,
}

/// Why a write was refused.
#[derive(Debug, thiserror::Error)]
pub enum AssetWriteError {
    /// Another asset of the tenant has this kind and name.
    #[error("an asset of this kind with this name already exists")]
    NameTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl AssetWriteError {
    /// A unique violation on the name becomes [`AssetWriteError::NameTaken`];
    /// anything else stays a database error.
    fn from_database(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db)
                if db.is_unique_violation() && db.constraint() == Some(NAME_CONSTRAINT) =>
            {
                AssetWriteError::NameTaken
            }
            _ => AssetWriteError::Database(error),
        }
    }
}

const ASSET_COLUMNS: &str = "id, kind, name, criticality, tags, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct AssetRow {
    id: Uuid,
    kind: String,
    name: String,
    criticality: String,
    tags: Vec<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn decode_error(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("stored {what} is not valid").into())
}

impl TryFrom<AssetRow> for AssetRecord {
    type Error = sqlx::Error;

    fn try_from(row: AssetRow) -> Result<Self, Self::Error> {
        Ok(AssetRecord {
            id: AssetId::from_uuid(row.id),
            kind: row.kind.parse().map_err(|_| decode_error("asset kind"))?,
            name: row.name,
            criticality: row
                .criticality
                .parse()
                .map_err(|_| decode_error("criticality"))?,
            tags: row.tags,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// Stores a new asset; [`AssetWriteError::NameTaken`] if the tenant already has
/// one of that kind and name.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn insert(
    tx: &mut TenantTx,
    asset: &NewAsset<'_>,
) -> Result<AssetRecord, AssetWriteError> {
    let tenant_id = tx.tenant_id().as_uuid();
    let row: AssetRow = sqlx::query_as(&format!(
        "INSERT INTO assets (tenant_id, id, kind, name, criticality, tags)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING {ASSET_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(AssetId::new().as_uuid())
    .bind(asset.kind.as_str())
    .bind(asset.name.as_str())
    .bind(asset.criticality.as_str())
    .bind(asset.tags)
    .fetch_one(tx.conn())
    .await
    .map_err(AssetWriteError::from_database)?;
    Ok(row.try_into()?)
}

/// The asset of this kind and name, created (criticality medium, no tags) if the
/// tenant has none yet. Scan submission names assets this way.
///
/// Safe against a concurrent creator: `ON CONFLICT DO NOTHING` waits for the other
/// transaction and then skips the insert, and the `SELECT` that follows is a new
/// statement, so under READ COMMITTED its snapshot includes the row just committed.
/// (One statement combining both would not see it.) Should that row be deleted in
/// between, the insert is simply tried again.
#[tracing::instrument(level = "debug", skip_all, fields(kind = %kind))]
pub async fn find_or_create(
    tx: &mut TenantTx,
    kind: AssetKind,
    name: &AssetName,
) -> Result<AssetRecord, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    // Each round either inserts, or finds a row that was committed; losing both
    // races three times in a row would need a pathological create/delete loop.
    for _attempt in 0..3 {
        let inserted: Option<AssetRow> = sqlx::query_as(&format!(
            "INSERT INTO assets (tenant_id, id, kind, name, criticality)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, kind, name) DO NOTHING
             RETURNING {ASSET_COLUMNS}"
        ))
        .bind(tenant_id)
        .bind(AssetId::new().as_uuid())
        .bind(kind.as_str())
        .bind(name.as_str())
        .bind(Criticality::Medium.as_str())
        .fetch_optional(tx.conn())
        .await?;
        if let Some(row) = inserted {
            return row.try_into();
        }
        let existing: Option<AssetRow> = sqlx::query_as(&format!(
            "SELECT {ASSET_COLUMNS} FROM assets WHERE tenant_id = $1 AND kind = $2 AND name = $3"
        ))
        .bind(tenant_id)
        .bind(kind.as_str())
        .bind(name.as_str())
        .fetch_optional(tx.conn())
        .await?;
        if let Some(row) = existing {
            return row.try_into();
        }
    }
    Err(sqlx::Error::Protocol(
        "asset was deleted concurrently on every attempt to find or create it".into(),
    ))
}

/// One asset by id.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn get(tx: &mut TenantTx, id: AssetId) -> Result<Option<AssetRecord>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let row: Option<AssetRow> = sqlx::query_as(&format!(
        "SELECT {ASSET_COLUMNS} FROM assets WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant_id)
    .bind(id.as_uuid())
    .fetch_optional(tx.conn())
    .await?;
    row.map(AssetRecord::try_from).transpose()
}

/// Up to `limit` assets matching `filters`, newest first, after `cursor`.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn list(
    tx: &mut TenantTx,
    cursor: Option<&AssetPageCursor>,
    limit: u32,
    filters: &AssetFilters,
) -> Result<Vec<AssetRecord>, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    // The row comparison against constants (the cursor, or +infinity and the
    // largest UUID on the first page) stays a bound on `assets_by_created`.
    let rows: Vec<AssetRow> = sqlx::query_as(&format!(
        "SELECT {ASSET_COLUMNS} FROM assets
         WHERE tenant_id = $1
           AND (created_at, id) < (COALESCE($2, 'infinity'::timestamptz),
                                   COALESCE($3, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid))
           AND ($4::text IS NULL OR kind = $4)
           AND ($5::text IS NULL OR tags @> ARRAY[$5::text])
         ORDER BY created_at DESC, id DESC
         LIMIT $6"
    ))
    .bind(tenant_id)
    .bind(cursor.map(|c| c.created_at))
    .bind(cursor.map(|c| c.id.as_uuid()))
    .bind(filters.kind.map(AssetKind::as_str))
    .bind(filters.tag.as_deref())
    .bind(i64::from(limit))
    .fetch_all(tx.conn())
    .await?;
    rows.into_iter().map(AssetRecord::try_from).collect()
}

/// Applies `changes` and bumps `updated_at`; `Ok(None)` if no such asset,
/// [`AssetWriteError::NameTaken`] if the new name collides.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn update(
    tx: &mut TenantTx,
    id: AssetId,
    changes: &AssetChanges,
) -> Result<Option<AssetRecord>, AssetWriteError> {
    let tenant_id = tx.tenant_id().as_uuid();
    let row: Option<AssetRow> = sqlx::query_as(&format!(
        "UPDATE assets
         SET name = COALESCE($3, name),
             criticality = COALESCE($4, criticality),
             tags = COALESCE($5, tags),
             updated_at = now()
         WHERE tenant_id = $1 AND id = $2
         RETURNING {ASSET_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id.as_uuid())
    .bind(changes.name.as_ref().map(AssetName::as_str))
    .bind(changes.criticality.map(Criticality::as_str))
    .bind(changes.tags.as_deref())
    .fetch_optional(tx.conn())
    .await
    .map_err(AssetWriteError::from_database)?;
    Ok(row.map(AssetRecord::try_from).transpose()?)
}

/// Deletes an asset; its scans (with their reports and jobs) and findings go with
/// it through `ON DELETE CASCADE`. `false` if no such asset.
#[tracing::instrument(level = "debug", skip_all)]
pub async fn delete(tx: &mut TenantTx, id: AssetId) -> Result<bool, sqlx::Error> {
    let tenant_id = tx.tenant_id().as_uuid();
    let result = sqlx::query("DELETE FROM assets WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(id.as_uuid())
        .execute(tx.conn())
        .await?;
    Ok(result.rows_affected() == 1)
}
