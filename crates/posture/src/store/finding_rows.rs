//! A finding as the statements that read findings return it: owned
//! ([`FindingRecord`]) or borrowed from its row ([`FindingRow`], which the
//! findings list writes as JSON without copying a string first).

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgRow, PgTypeInfo};
use uuid::Uuid;

/// Declares [`FindingRecord`], [`FindingRow`], the column list their
/// statements select ([`FINDING_COLUMNS`]) and their decoding, from one list
/// of fields, so the columns are read by position — the order cannot drift
/// from the list — and not by name (a name lookup per column and row was a
/// tenth of a page's CPU time on the server).
///
/// The columns' types are checked against the fields' once per result, on
/// its first row — every row of a result has the same columns — and the
/// values decoded without sqlx's check of each one (`try_get` compares the
/// column's type with every type a field accepts, six for a `String`: under
/// callgrind two thirds of decoding a page, a fifth of the server's
/// instructions for it).
macro_rules! finding_record {
    ($($field:ident: $type:ty),+ $(,)?) => {
        /// A finding as stored.
        #[derive(Debug, Clone)]
        pub struct FindingRecord {
            $(pub $field: $type,)+
        }

        /// A finding borrowed from the row it was read from: its text points
        /// into the row's buffer (lists of text excepted: sqlx decodes arrays
        /// only into owned values).
        #[derive(Debug)]
        pub struct FindingRow<'r> {
            $(pub $field: <$type as Borrowed<'r>>::Form,)+
        }

        /// The columns of a finding, in its fields' order.
        pub(super) const FINDING_COLUMNS: &str = finding_columns!($($field),+);

        /// The columns' names, Rust types and type checks.
        const FIELDS: &[(&str, &str, fn(&PgTypeInfo) -> bool)] = &[$(
            (
                stringify!($field),
                stringify!($type),
                <$type as sqlx::Type<sqlx::Postgres>>::compatible,
            ),
        )+];

        impl FindingRecord {
            /// Decodes a row whose columns [`check_columns`] accepted (or
            /// those of another row of the same result).
            fn decode_checked_row(row: &PgRow) -> Result<FindingRecord, sqlx::Error> {
                use sqlx::Row;
                let mut column = 0..;
                let mut next = || column.next().unwrap_or_default();
                Ok(FindingRecord {
                    $($field: row.try_get_unchecked(next())?,)+
                })
            }

            /// The record as a [`FindingRow`] borrowed from it.
            pub fn as_row(&self) -> FindingRow<'_> {
                FindingRow {
                    $($field: Borrowed::borrowed(&self.$field),)+
                }
            }
        }

        impl<'r> FindingRow<'r> {
            /// Decodes a row whose columns [`check_columns`] accepted (or
            /// those of another row of the same result).
            fn decode_checked_row(row: &'r PgRow) -> Result<FindingRow<'r>, sqlx::Error> {
                use sqlx::Row;
                let mut column = 0..;
                let mut next = || column.next().unwrap_or_default();
                Ok(FindingRow {
                    $($field: row.try_get_unchecked(next())?,)+
                })
            }
        }
    };
}

/// `"a, b, c"` from the field names `a, b, c`.
macro_rules! finding_columns {
    ($first:ident $(, $field:ident)*) => {
        concat!(stringify!($first) $(, ", ", stringify!($field))*)
    };
}

finding_record! {
    id: Uuid,
    asset_id: Uuid,
    fingerprint: String,
    tool_name: String,
    rule_id: String,
    title: String,
    description: Option<String>,
    severity: String,
    cwe_ids: Vec<i32>,
    vulnerability_ids: Vec<String>,
    location_uri: Option<String>,
    location_line: Option<i32>,
    package_purl: Option<String>,
    package_name: Option<String>,
    package_version: Option<String>,
    status: String,
    status_reason: Option<String>,
    accepted_until: Option<DateTime<Utc>>,
    first_seen_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    sla_due_at: Option<DateTime<Utc>>,
    last_scan_id: Option<Uuid>,
}

/// The form of a field's type in a [`FindingRow`] (text borrowed, the rest
/// as it is), and how a [`FindingRecord`]'s field lends itself as that form.
pub trait Borrowed<'r> {
    /// The borrowed form.
    type Form;
    /// This value in the borrowed form.
    fn borrowed(&'r self) -> Self::Form;
}

impl<'r> Borrowed<'r> for String {
    type Form = &'r str;
    fn borrowed(&'r self) -> &'r str {
        self
    }
}

impl<'r> Borrowed<'r> for Option<String> {
    type Form = Option<&'r str>;
    fn borrowed(&'r self) -> Option<&'r str> {
        self.as_deref()
    }
}

/// Types whose borrowed form is the type itself.
macro_rules! borrowed_as_is {
    ($($type:ty),+) => {$(
        impl<'r> Borrowed<'r> for $type {
            type Form = $type;
            fn borrowed(&'r self) -> $type {
                self.clone()
            }
        }
    )+};
}

borrowed_as_is!(
    Uuid,
    Option<Uuid>,
    Option<i32>,
    Vec<i32>,
    Vec<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>
);

/// Whether `row`'s columns are those of a finding, in number and types.
fn check_columns(row: &PgRow) -> Result<(), sqlx::Error> {
    use sqlx::{Column, Row, TypeInfo};
    let columns = row.columns();
    if columns.len() != FIELDS.len() {
        return Err(sqlx::Error::Protocol(format!(
            "a finding has {} columns, the statement returned {}",
            FIELDS.len(),
            columns.len()
        )));
    }
    for (column, (field, rust_type, compatible)) in columns.iter().zip(FIELDS) {
        if !compatible(column.type_info()) {
            return Err(sqlx::Error::ColumnDecode {
                index: (*field).to_owned(),
                source: format!(
                    "a {} column cannot be read as {rust_type}",
                    column.type_info().name()
                )
                .into(),
            });
        }
    }
    Ok(())
}

impl<'r> sqlx::FromRow<'r, PgRow> for FindingRecord {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        check_columns(row)?;
        FindingRecord::decode_checked_row(row)
    }
}

/// The rows of a statement that selected [`FINDING_COLUMNS`], their columns
/// checked.
#[derive(Debug)]
pub struct FindingRows {
    rows: Vec<PgRow>,
}

impl FindingRows {
    /// Checks the columns of `rows` (on the first: all have the same).
    pub(super) fn checked(rows: Vec<PgRow>) -> Result<FindingRows, sqlx::Error> {
        if let Some(first) = rows.first() {
            check_columns(first)?;
        }
        Ok(FindingRows { rows })
    }

    /// The findings, borrowed from the rows.
    pub fn decode(&self) -> Result<Vec<FindingRow<'_>>, sqlx::Error> {
        self.decode_each(FindingRow::decode_checked_row)
    }

    /// The findings, owned.
    pub fn into_records(self) -> Result<Vec<FindingRecord>, sqlx::Error> {
        self.decode_each(FindingRecord::decode_checked_row)
    }

    /// Every row through `decode`, into a vector allocated once: collecting
    /// the `Result`s instead grows it from nothing (the iterator cannot say
    /// how many will succeed), and a finding is a few hundred bytes, so a
    /// page's findings were copied four times over on the way (under
    /// callgrind 14,600 instructions a page).
    fn decode_each<'r, T>(
        &'r self,
        decode: impl Fn(&'r PgRow) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, sqlx::Error> {
        let mut decoded = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            decoded.push(decode(row)?);
        }
        Ok(decoded)
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}
