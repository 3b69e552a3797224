//! The event types a webhook can subscribe to.

use std::fmt;
use std::str::FromStr;

/// One kind of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    ScanCompleted,
    ScanFailed,
    /// A new finding at or above the endpoint's severity threshold.
    FindingCreated,
    FindingReopened,
    /// The score moved by at least the endpoint's threshold.
    PostureScoreChanged,
    ComplianceControlFailed,
    /// 80 % of the day's or month's quota used.
    QuotaWarning,
    QuotaExceeded,
    /// The platform disabled one of the organization's endpoints (it answered
    /// 410 Gone, or its deliveries failed for days).
    WebhookDisabled,
}

impl EventType {
    /// Every type, in documentation order.
    pub const ALL: [EventType; 9] = [
        EventType::ScanCompleted,
        EventType::ScanFailed,
        EventType::FindingCreated,
        EventType::FindingReopened,
        EventType::PostureScoreChanged,
        EventType::ComplianceControlFailed,
        EventType::QuotaWarning,
        EventType::QuotaExceeded,
        EventType::WebhookDisabled,
    ];

    /// The name in subscriptions and payloads.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::ScanCompleted => "scan.completed",
            EventType::ScanFailed => "scan.failed",
            EventType::FindingCreated => "finding.created",
            EventType::FindingReopened => "finding.reopened",
            EventType::PostureScoreChanged => "posture.score_changed",
            EventType::ComplianceControlFailed => "compliance.control_failed",
            EventType::QuotaWarning => "quota.warning",
            EventType::QuotaExceeded => "quota.exceeded",
            EventType::WebhookDisabled => "webhook.disabled",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text names no event type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {0:?}")]
pub struct UnknownEventType(pub String);

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownEventType(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in EventType::ALL {
            assert_eq!(kind.as_str().parse::<EventType>(), Ok(kind));
        }
        assert!("scan.exploded".parse::<EventType>().is_err());
    }
}
