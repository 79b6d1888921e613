//! The SNS HTTP(S) delivery envelope and its signature, without any I/O.
//!
//! SNS posts a JSON document whose `Type` is `SubscriptionConfirmation`,
//! `Notification` or `UnsubscribeConfirmation`. It signs a canonical text
//! of some of the fields: each field as its name, a newline, its value and
//! a newline, in byte order of the names — for a notification `Message`,
//! `MessageId`, `Subject` (only when present), `Timestamp`, `TopicArn`,
//! `Type`; for the two confirmations `Message`, `MessageId`,
//! `SubscribeURL`, `Timestamp`, `Token`, `TopicArn`, `Type`. The signature
//! is RSA PKCS#1 v1.5 with SHA-1 (`SignatureVersion` 1) or SHA-256
//! (`SignatureVersion` 2) under the key of the X.509 certificate at
//! `SigningCertURL`; fetching that certificate is [`super::certs`]' job.
//!
//! Fields outside the canonical text (`SigningCertURL`, `UnsubscribeURL`,
//! message attributes) are not covered by the signature, which is why the
//! certificate URL must be checked against an allow-list before use.

use base64::Engine;
use rustls_pki_types::{AlgorithmIdentifier, CertificateDer, InvalidSignature, alg_id};
use serde::Deserialize;

/// Why a delivery is not a valid SNS message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the body is not an SNS message: {0}")]
    Malformed(String),
    #[error("SNS message type `{0}` is not one this endpoint handles")]
    UnknownType(String),
    #[error("SignatureVersion `{0}` is not supported (1 and 2 are)")]
    SignatureVersion(String),
    #[error("the signing certificate cannot be read: {0}")]
    Certificate(String),
    #[error("the signature does not verify under the signing certificate")]
    Signature,
}

/// The kinds of SNS delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SubscriptionConfirmation,
    Notification,
    UnsubscribeConfirmation,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SubscriptionConfirmation => "SubscriptionConfirmation",
            Kind::Notification => "Notification",
            Kind::UnsubscribeConfirmation => "UnsubscribeConfirmation",
        }
    }
}

/// The envelope fields as they arrive (all strings in SNS's JSON).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Raw {
    #[serde(rename = "Type")]
    kind: String,
    message_id: String,
    topic_arn: String,
    message: String,
    timestamp: String,
    signature_version: String,
    signature: String,
    #[serde(rename = "SigningCertURL")]
    signing_cert_url: String,
    subject: Option<String>,
    #[serde(rename = "SubscribeURL")]
    subscribe_url: Option<String>,
    token: Option<String>,
}

/// A parsed SNS delivery; the signature is not checked yet.
#[derive(Debug, Clone)]
pub struct SnsMessage {
    pub kind: Kind,
    pub message_id: String,
    pub topic_arn: String,
    /// For a notification the published text (here: an S3 event).
    pub message: String,
    pub signing_cert_url: String,
    /// Confirmations only: the URL that confirms the subscription.
    pub subscribe_url: Option<String>,
    signature: Vec<u8>,
    sha256: bool,
    canonical: String,
}

impl SnsMessage {
    /// Reads the envelope and builds the text its signature covers.
    pub fn parse(body: &[u8]) -> Result<Self, MessageError> {
        let raw: Raw =
            serde_json::from_slice(body).map_err(|e| MessageError::Malformed(e.to_string()))?;
        let kind = match raw.kind.as_str() {
            "SubscriptionConfirmation" => Kind::SubscriptionConfirmation,
            "Notification" => Kind::Notification,
            "UnsubscribeConfirmation" => Kind::UnsubscribeConfirmation,
            other => return Err(MessageError::UnknownType(other.to_owned())),
        };
        let sha256 = match raw.signature_version.as_str() {
            "1" => false,
            "2" => true,
            other => return Err(MessageError::SignatureVersion(other.to_owned())),
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(raw.signature.as_bytes())
            .map_err(|e| MessageError::Malformed(format!("Signature is not base64: {e}")))?;
        let mut canonical = String::with_capacity(raw.message.len() + 512);
        let mut field = |name: &str, value: &str| {
            canonical.push_str(name);
            canonical.push('\n');
            canonical.push_str(value);
            canonical.push('\n');
        };
        let confirmation = kind != Kind::Notification;
        let missing = |f: &str| MessageError::Malformed(format!("{} without {f}", raw.kind));
        let subscribe_url = match (confirmation, raw.subscribe_url.as_deref()) {
            (true, None) => return Err(missing("SubscribeURL")),
            (_, url) => url,
        };
        let token = match (confirmation, raw.token.as_deref()) {
            (true, None) => return Err(missing("Token")),
            (_, token) => token,
        };
        field("Message", &raw.message);
        field("MessageId", &raw.message_id);
        if confirmation {
            field("SubscribeURL", subscribe_url.unwrap_or_default());
        } else if let Some(subject) = &raw.subject {
            field("Subject", subject);
        }
        field("Timestamp", &raw.timestamp);
        if confirmation {
            field("Token", token.unwrap_or_default());
        }
        field("TopicArn", &raw.topic_arn);
        field("Type", &raw.kind);
        Ok(SnsMessage {
            kind,
            message_id: raw.message_id,
            topic_arn: raw.topic_arn,
            message: raw.message,
            signing_cert_url: raw.signing_cert_url,
            subscribe_url: raw.subscribe_url,
            signature,
            sha256,
            canonical,
        })
    }

    /// The text the signature covers (see the module documentation).
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// Checks the signature under the key of `cert` (DER).
    pub fn verify(&self, cert: &CertificateDer<'_>) -> Result<(), MessageError> {
        let cert = webpki::EndEntityCert::try_from(cert)
            .map_err(|e| MessageError::Certificate(format!("{e:?}")))?;
        let alg: &dyn rustls_pki_types::SignatureVerificationAlgorithm = if self.sha256 {
            &RSA_PKCS1_SHA256
        } else {
            &RSA_PKCS1_SHA1
        };
        cert.verify_signature(alg, self.canonical.as_bytes(), &self.signature)
            .map_err(|_| MessageError::Signature)
    }
}

/// RSA PKCS#1 v1.5 verification by `ring` for a certificate's key. webpki
/// does not offer SHA-1 (rightly, for certificate chains), but SNS's
/// `SignatureVersion` 1 is SHA1withRSA over the message, so both hashes
/// are wired here the same way.
struct RsaPkcs1 {
    ring: &'static ring::signature::RsaParameters,
    signature_alg: AlgorithmIdentifier,
}

impl std::fmt::Debug for RsaPkcs1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaPkcs1")
    }
}

/// `sha1WithRSAEncryption` (1.2.840.113549.1.1.5) with NULL parameters,
/// the contents of its AlgorithmIdentifier as webpki compares them.
const SHA1_WITH_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
];

static RSA_PKCS1_SHA1: RsaPkcs1 = RsaPkcs1 {
    ring: &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
    signature_alg: AlgorithmIdentifier::from_slice(SHA1_WITH_RSA),
};

static RSA_PKCS1_SHA256: RsaPkcs1 = RsaPkcs1 {
    ring: &ring::signature::RSA_PKCS1_2048_8192_SHA256,
    signature_alg: alg_id::RSA_PKCS1_SHA256,
};

impl rustls_pki_types::SignatureVerificationAlgorithm for RsaPkcs1 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        ring::signature::UnparsedPublicKey::new(self.ring, public_key)
            .verify(message, signature)
            .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_ENCRYPTION
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.signature_alg
    }
}
