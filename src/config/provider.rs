//! The API a node speaks, and what a Bedrock node signs with (see
//! `docs/providers.md`).

use schemars::JsonSchema;
use serde::Deserialize;

/// The wire format a node speaks; requests and answers are translated
/// from and to OpenAI's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// OpenAI's, as OpenAI and every OpenAI-compatible server speak it.
    #[default]
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic's Messages API (`/v1/messages`, `x-api-key`, `anthropic-version`).
    Anthropic,
    /// Google's Gemini API (`generateContent`, `streamGenerateContent`, `x-goog-api-key`).
    Gemini,
    /// Azure OpenAI (`/openai/deployments/{model}/…`, `api-key`, `api-version`).
    Azure,
    /// Amazon Bedrock's Converse API, signed with AWS Signature Version 4.
    Bedrock,
}

impl Api {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Azure => "azure",
            Self::Bedrock => "bedrock",
        }
    }

    /// The API a `provider` names, if it names one.
    pub fn of_provider(provider: &str) -> Option<Self> {
        [Self::OpenAi, Self::Anthropic, Self::Gemini, Self::Azure, Self::Bedrock]
            .into_iter()
            .find(|a| provider.eq_ignore_ascii_case(a.as_str()))
    }

    /// Whether a node speaking it serves `endpoint`: translated APIs serve
    /// chat completions (and Anthropic clients' messages, which go as chat
    /// to all but Anthropic's own) only; Azure OpenAI serves what OpenAI
    /// does but the Responses API.
    pub fn serves(self, endpoint: crate::facts::Endpoint) -> bool {
        use crate::facts::Endpoint;
        match self {
            Self::OpenAi => true,
            Self::Azure => endpoint != Endpoint::Responses && endpoint != Endpoint::ResponseById,
            Self::Anthropic | Self::Gemini | Self::Bedrock => {
                !endpoint.is_api() || matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Messages)
            }
        }
    }
}

/// Where a Bedrock node's AWS credentials are: names of environment
/// variables (or Worker secrets), never the values.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsCredentialsEnv {
    /// The access key id's variable.
    #[serde(default = "default_access_key_env")]
    pub access_key_id: String,
    /// The secret access key's variable.
    #[serde(default = "default_secret_key_env")]
    pub secret_access_key: String,
    /// The session token's variable (temporary credentials), if any.
    #[serde(default = "default_session_token_env")]
    pub session_token: Option<String>,
}

impl Default for AwsCredentialsEnv {
    fn default() -> Self {
        Self {
            access_key_id: default_access_key_env(),
            secret_access_key: default_secret_key_env(),
            session_token: default_session_token_env(),
        }
    }
}

fn default_access_key_env() -> String {
    "AWS_ACCESS_KEY_ID".into()
}

fn default_secret_key_env() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}

fn default_session_token_env() -> Option<String> {
    Some("AWS_SESSION_TOKEN".into())
}
