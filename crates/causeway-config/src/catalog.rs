//! The providers Causeway knows by name: wire family, default origin, where their OpenAI-style
//! paths live, and the environment variable that usually holds their key.

/// How a provider's HTTP API is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// OpenAI Chat Completions and friends.
    OpenAi,
    /// Anthropic Messages API.
    Anthropic,
}

impl Family {
    pub fn parse(s: &str) -> Option<Family> {
        match s {
            "openai" => Some(Family::OpenAi),
            "anthropic" => Some(Family::Anthropic),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ProviderSpec {
    pub name: &'static str,
    pub family: Family,
    /// Origin as in Bifrost's `network_config.base_url` (no `/v1`); `None` = must be configured.
    pub default_base_url: Option<&'static str>,
    /// Prefix before `/chat/completions` etc. (`/v1` for almost everyone).
    pub api_prefix: &'static str,
    /// No API key is needed (local servers).
    pub keyless: bool,
    /// Environment variable that auto-configures this provider when no config exists.
    pub env_key: Option<&'static str>,
    /// Accepts `stream_options.include_usage`, so the gateway can always ask for stream usage
    /// (budgets and logs need it) and hide it from clients that did not.
    pub stream_usage_option: bool,
}

const fn compat(name: &'static str, base: &'static str, env_key: &'static str) -> ProviderSpec {
    ProviderSpec {
        name,
        family: Family::OpenAi,
        default_base_url: Some(base),
        api_prefix: "/v1",
        keyless: false,
        env_key: Some(env_key),
        stream_usage_option: true,
    }
}

pub const PROVIDERS: &[ProviderSpec] = &[
    compat("openai", "https://api.openai.com", "OPENAI_API_KEY"),
    ProviderSpec {
        name: "anthropic",
        family: Family::Anthropic,
        default_base_url: Some("https://api.anthropic.com"),
        api_prefix: "/v1",
        keyless: false,
        env_key: Some("ANTHROPIC_API_KEY"),
        stream_usage_option: false,
    },
    compat("groq", "https://api.groq.com/openai", "GROQ_API_KEY"),
    ProviderSpec {
        // Mistral sends usage in its last chunk unasked and does not document stream_options.
        stream_usage_option: false,
        ..compat("mistral", "https://api.mistral.ai", "MISTRAL_API_KEY")
    },
    compat("deepseek", "https://api.deepseek.com", "DEEPSEEK_API_KEY"),
    compat(
        "openrouter",
        "https://openrouter.ai/api",
        "OPENROUTER_API_KEY",
    ),
    compat("xai", "https://api.x.ai", "XAI_API_KEY"),
    compat("cerebras", "https://api.cerebras.ai", "CEREBRAS_API_KEY"),
    compat(
        "fireworks",
        "https://api.fireworks.ai/inference",
        "FIREWORKS_API_KEY",
    ),
    ProviderSpec {
        // Perplexity serves its OpenAI-compatible API at the root, without `/v1`.
        api_prefix: "",
        ..compat(
            "perplexity",
            "https://api.perplexity.ai",
            "PERPLEXITY_API_KEY",
        )
    },
    compat("together", "https://api.together.xyz", "TOGETHER_API_KEY"),
    ProviderSpec {
        name: "ollama",
        family: Family::OpenAi,
        default_base_url: Some("http://localhost:11434"),
        api_prefix: "/v1",
        keyless: true,
        env_key: None,
        stream_usage_option: false,
    },
    ProviderSpec {
        name: "vllm",
        family: Family::OpenAi,
        default_base_url: None,
        api_prefix: "/v1",
        keyless: true,
        env_key: None,
        stream_usage_option: true,
    },
];

pub fn builtin_spec(name: &str) -> Option<&'static ProviderSpec> {
    PROVIDERS.iter().find(|p| p.name == name)
}

/// Names of all built-in providers, for error messages.
pub fn builtin_names() -> String {
    PROVIDERS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}
