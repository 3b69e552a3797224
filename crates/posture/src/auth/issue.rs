//! Issuing and revoking API keys: shared by the HTTP API and the admin CLI, so
//! both store the same thing and write the same audit entries.

use crate::store::api_keys::{self, ApiKeyRecord, NewApiKey};
use crate::store::audit::{self, AuditEntry};
use crate::store::{notifications, TenantTx};
use chrono::{DateTime, Utc};
use posture_domain::{ApiKeyId, ApiKeyToken, Scope, Scopes};
use serde_json::json;

/// What a new key should be.
#[derive(Debug, Clone)]
pub struct KeyRequest {
    /// What it is for (already validated: 1–100 characters).
    pub name: String,
    /// Its scopes.
    pub scopes: Scopes,
    /// Optional expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

/// One invalid field of a key request: a JSON pointer and what is wrong.
pub type KeyFieldError = (String, String);

impl KeyRequest {
    /// Validates a request as a client sends it. Errors name the field by JSON
    /// pointer (`/name`, `/scopes/1`, `/expires_at`).
    pub fn parse(
        name: &str,
        scope_names: &[String],
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<KeyRequest, Vec<KeyFieldError>> {
        let mut errors = Vec::new();
        let name = name.trim().to_owned();
        if !(1..=100).contains(&name.chars().count()) || name.chars().any(char::is_control) {
            errors.push((
                "/name".into(),
                "must be 1 to 100 characters without control characters".into(),
            ));
        }
        let mut scopes = Vec::new();
        for (index, text) in scope_names.iter().enumerate() {
            match text.parse::<Scope>() {
                Ok(scope) => scopes.push(scope),
                Err(error) => errors.push((format!("/scopes/{index}"), error.to_string())),
            }
        }
        if scope_names.is_empty() {
            errors.push(("/scopes".into(), "at least one scope is required".into()));
        }
        if expires_at.is_some_and(|expiry| expiry <= now) {
            errors.push(("/expires_at".into(), "must be in the future".into()));
        }
        match Scopes::new(scopes) {
            Ok(scopes) if errors.is_empty() => Ok(KeyRequest {
                name,
                scopes,
                expires_at,
            }),
            _ => Err(errors),
        }
    }
}

/// Generates a key for the transaction's tenant, stores its hash and audits it.
/// The returned token is the only copy of the secret.
pub async fn issue_api_key(
    tx: &mut TenantTx,
    request: &KeyRequest,
    actor: &str,
    request_id: Option<&str>,
) -> Result<(ApiKeyRecord, ApiKeyToken), sqlx::Error> {
    let token = ApiKeyToken::generate(tx.tenant_id(), &mut rand::rngs::OsRng);
    let record = api_keys::insert(
        tx,
        &NewApiKey {
            key_id: token.key_id(),
            name: &request.name,
            secret_hash: &token.secret_hash(),
            scopes: request.scopes,
            created_by: actor,
            expires_at: request.expires_at,
        },
    )
    .await?;
    audit::record(
        tx,
        AuditEntry {
            actor,
            action: "api_key.created",
            target: Some(&record.key_id.to_string()),
            details: json!({ "name": request.name, "scopes": request.scopes.names() }),
            request_id,
        },
    )
    .await?;
    Ok((record, token))
}

/// Revokes a key of the transaction's tenant and audits it; `None` if no such key.
pub async fn revoke_api_key(
    tx: &mut TenantTx,
    key_id: &ApiKeyId,
    actor: &str,
    request_id: Option<&str>,
) -> Result<Option<ApiKeyRecord>, sqlx::Error> {
    let Some(record) = api_keys::revoke(tx, key_id).await? else {
        return Ok(None);
    };
    audit::record(
        tx,
        AuditEntry {
            actor,
            action: "api_key.revoked",
            target: Some(&record.key_id.to_string()),
            details: json!({ "name": record.name }),
            request_id,
        },
    )
    .await?;
    let tenant_id = tx.tenant_id();
    notifications::account_changed(tx.conn(), tenant_id).await?;
    Ok(Some(record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn valid_requests_are_trimmed_and_parsed() {
        let request =
            KeyRequest::parse("  ci ", &names(&["read", "write"]), None, Utc::now()).unwrap();
        assert_eq!(request.name, "ci");
        assert_eq!(request.scopes.names(), ["read", "write"]);
    }

    #[test]
    fn every_invalid_field_is_reported_with_its_pointer() {
        let past = Utc::now() - chrono::Duration::hours(1);
        let errors =
            KeyRequest::parse("", &names(&["read", "root"]), Some(past), Utc::now()).unwrap_err();
        let pointers: Vec<_> = errors.iter().map(|(pointer, _)| pointer.as_str()).collect();
        assert_eq!(pointers, ["/name", "/scopes/1", "/expires_at"]);
        let errors = KeyRequest::parse("ci", &[], None, Utc::now()).unwrap_err();
        assert_eq!(errors[0].0, "/scopes");
    }
}
