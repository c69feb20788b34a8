//! Model prices (USD per 1M tokens) and the cost of a call: the bundled table
//! (`pricing.json`, with its sources), config overrides on top, and model-name
//! normalisation so dated snapshots (`gpt-4o-2024-08-06`, `claude-3-5-haiku-20241022`) and
//! `-latest` aliases find their family's price.

use std::collections::HashMap;

use causeway_core::Usage;
use serde::{Deserialize, Serialize};

use crate::estimate::Estimate;

const BUNDLED: &str = include_str!("../pricing.json");

/// Prices of one model in USD per 1M tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelPrice {
    pub input: f64,
    pub output: f64,
    /// Prompt-cache reads; `None` = billed at the input price.
    #[serde(default)]
    pub cached_input: Option<f64>,
}

/// A configured price that replaces (or adds to) the bundled table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceOverride {
    pub provider: String,
    pub model: String,
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cached_input: Option<f64>,
}

#[derive(Deserialize)]
struct PriceFile {
    models: Vec<PriceOverride>,
}

#[derive(Debug, Clone, Default)]
pub struct Pricing {
    /// provider (lowercase) → model (lowercase) → price.
    table: HashMap<String, HashMap<String, ModelPrice>>,
}

impl Pricing {
    pub fn empty() -> Pricing {
        Pricing::default()
    }

    /// The table shipped with the crate (`pricing.json`).
    pub fn bundled() -> Pricing {
        match Pricing::from_json(BUNDLED) {
            Ok(p) => p,
            Err(e) => {
                // A unit test parses the file, so this is unreachable in a tested build;
                // an empty table leaves every model unpriced rather than crashing.
                tracing::error!(error = %e, "bundled pricing.json does not parse");
                Pricing::empty()
            }
        }
    }

    /// A table in `pricing.json`'s format: `{"models": [{provider, model, input, output,
    /// cached_input?}, …]}` (other fields are ignored).
    pub fn from_json(json: &str) -> Result<Pricing, serde_json::Error> {
        let file: PriceFile = serde_json::from_str(json)?;
        Ok(Pricing::empty().with_overrides(file.models))
    }

    /// Adds or replaces prices. Non-finite or negative numbers are ignored (logged), since a
    /// negative price would credit budgets.
    pub fn with_overrides(mut self, overrides: Vec<PriceOverride>) -> Pricing {
        for o in overrides {
            let valid = |v: f64| v.is_finite() && v >= 0.0;
            if !(valid(o.input) && valid(o.output) && o.cached_input.is_none_or(valid)) {
                tracing::warn!(provider = %o.provider, model = %o.model, "ignoring invalid price");
                continue;
            }
            self.table
                .entry(o.provider.to_ascii_lowercase())
                .or_default()
                .insert(
                    o.model.to_ascii_lowercase(),
                    ModelPrice {
                        input: o.input,
                        output: o.output,
                        cached_input: o.cached_input,
                    },
                );
        }
        self
    }

    /// The price of a model: the exact name first, then its normalised forms.
    pub fn price(&self, provider: &str, model: &str) -> Option<&ModelPrice> {
        let models = self.table.get(&provider.to_ascii_lowercase())?;
        let mut name = model.to_ascii_lowercase();
        loop {
            if let Some(p) = models.get(&name) {
                return Some(p);
            }
            name = strip_version(&name)?.to_owned();
        }
    }

    /// The cost of a finished call; `None` when the model has no price. Cached prompt tokens
    /// (a subset of `prompt_tokens`, as OpenAI reports them) are billed at the cached price.
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Option<f64> {
        let p = self.price(provider, model)?;
        let cached = usage.cached_tokens.min(usage.prompt_tokens);
        let uncached = usage.prompt_tokens - cached;
        Some(
            (uncached as f64 * p.input
                + cached as f64 * p.cached_input.unwrap_or(p.input)
                + usage.completion_tokens as f64 * p.output)
                / 1e6,
        )
    }

    /// The most a call could cost (no cache discount, every allowed output token); 0 for an
    /// unpriced model, which budgets then cannot restrict before the call.
    pub fn estimate(&self, provider: &str, model: &str, estimate: Estimate) -> f64 {
        self.price(provider, model).map_or(0.0, |p| {
            (estimate.prompt_tokens as f64 * p.input + estimate.max_output_tokens as f64 * p.output)
                / 1e6
        })
    }
}

fn ends_with_digits(s: &str, sep: char, digits: usize) -> Option<&str> {
    let cut = s.len().checked_sub(digits + 1)?;
    let (head, tail) = s.split_at_checked(cut)?;
    let mut chars = tail.chars();
    (chars.next() == Some(sep) && chars.all(|c| c.is_ascii_digit())).then_some(head)
}

/// One step of normalisation: drops `-latest`, `@<version>`, `-YYYY-MM-DD`, `-YYYYMMDD` or
/// `-MMDD` from the end. `None` when nothing is left to strip.
fn strip_version(name: &str) -> Option<&str> {
    if let Some(base) = name.strip_suffix("-latest") {
        return Some(base);
    }
    if let Some((base, _)) = name.rsplit_once('@') {
        return Some(base);
    }
    if let Some(base) = name.len().checked_sub(11).and_then(|cut| {
        let (head, tail) = name.split_at_checked(cut)?;
        let b = tail.as_bytes();
        let shape = b[0] == b'-'
            && b[5] == b'-'
            && b[8] == b'-'
            && [1, 2, 3, 4, 6, 7, 9, 10]
                .iter()
                .all(|&i| b[i].is_ascii_digit());
        shape.then_some(head)
    }) {
        return Some(base);
    }
    ends_with_digits(name, '-', 8).or_else(|| ends_with_digits(name, '-', 4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt: u64, completion: u64, cached: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            cached_tokens: cached,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn bundled_table_parses_and_is_sane() {
        let file: PriceFile = serde_json::from_str(BUNDLED).unwrap();
        assert!(file.models.len() >= 50);
        let mut seen = std::collections::HashSet::new();
        for m in &file.models {
            assert!(m.input >= 0.0 && m.output >= 0.0, "{}", m.model);
            if let Some(c) = m.cached_input {
                assert!(c <= m.input, "{}: cached above input", m.model);
            }
            assert!(
                seen.insert((m.provider.clone(), m.model.clone())),
                "duplicate {}/{}",
                m.provider,
                m.model
            );
        }
        let p = Pricing::bundled();
        for (provider, model) in [
            ("openai", "gpt-4o"),
            ("openai", "gpt-4o-mini"),
            ("openai", "gpt-4.1"),
            ("openai", "gpt-4.1-mini"),
            ("openai", "gpt-4.1-nano"),
            ("openai", "o3"),
            ("openai", "o4-mini"),
            ("openai", "gpt-3.5-turbo"),
            ("openai", "text-embedding-3-small"),
            ("openai", "text-embedding-3-large"),
            ("anthropic", "claude-3-5-haiku"),
            ("anthropic", "claude-3-5-sonnet"),
            ("anthropic", "claude-3-7-sonnet"),
            ("anthropic", "claude-sonnet-4"),
            ("anthropic", "claude-opus-4"),
            ("groq", "llama-3.3-70b-versatile"),
            ("mistral", "mistral-large-latest"),
            ("deepseek", "deepseek-chat"),
        ] {
            assert!(p.price(provider, model).is_some(), "{provider}/{model}");
        }
    }

    #[test]
    fn normalises_dated_and_latest_names() {
        let p = Pricing::bundled();
        let base = p.price("openai", "gpt-4o").copied();
        assert_eq!(p.price("openai", "gpt-4o-2024-08-06").copied(), base);
        assert_eq!(p.price("OpenAI", "GPT-4o").copied(), base);
        assert_eq!(
            p.price("openai", "gpt-4o-mini-2024-07-18").map(|x| x.input),
            Some(0.15)
        );
        assert_eq!(
            p.price("openai", "gpt-3.5-turbo-0125").map(|x| x.input),
            Some(0.5)
        );
        assert_eq!(
            p.price("anthropic", "claude-3-5-haiku-20241022")
                .map(|x| x.input),
            Some(0.8)
        );
        assert_eq!(
            p.price("anthropic", "claude-3-5-sonnet-latest")
                .map(|x| x.input),
            Some(3.0)
        );
        assert_eq!(
            p.price("anthropic", "claude-sonnet-4-20250514")
                .map(|x| x.output),
            Some(15.0)
        );
        assert_eq!(
            p.price("anthropic", "claude-opus-4-1-20250805")
                .map(|x| x.input),
            Some(15.0)
        );
        assert_eq!(
            p.price("anthropic", "claude-3-7-sonnet@20250219")
                .map(|x| x.input),
            Some(3.0)
        );
        // An exact entry wins over normalisation.
        assert_eq!(
            p.price("mistral", "mistral-large-2411").map(|x| x.input),
            Some(2.0)
        );
        assert_eq!(p.price("openai", "gpt-9"), None);
        assert_eq!(p.price("nope", "gpt-4o"), None);
        // Names that merely contain digits are not stripped.
        assert_eq!(strip_version("llama-3.1-8b-instant"), None);
        assert_eq!(strip_version("o3"), None);
        assert_eq!(strip_version("o1-2024-12-17"), Some("o1"));
    }

    #[test]
    fn costs_with_cache_and_overrides() {
        let p = Pricing::bundled();
        // gpt-4o: 2.5 in, 1.25 cached, 10 out.
        let c = p
            .cost("openai", "gpt-4o", &usage(1_000_000, 100_000, 400_000))
            .unwrap();
        assert!(close(c, 0.6 * 2.5 + 0.4 * 1.25 + 0.1 * 10.0), "{c}");
        // No cached price: cached tokens at the input price.
        let c = p.cost("openai", "gpt-4", &usage(1_000, 0, 500)).unwrap();
        assert!(close(c, 0.03));
        assert_eq!(p.cost("openai", "unknown-model", &usage(1, 1, 0)), None);
        // Cached beyond prompt is clamped.
        let c = p.cost("openai", "gpt-4o", &usage(10, 0, 99)).unwrap();
        assert!(close(c, 10.0 * 1.25 / 1e6));

        let p = p.with_overrides(vec![
            PriceOverride {
                provider: "openai".into(),
                model: "gpt-4o".into(),
                input: 1.0,
                output: 2.0,
                cached_input: None,
            },
            PriceOverride {
                provider: "local".into(),
                model: "llama".into(),
                input: 0.0,
                output: 0.0,
                cached_input: None,
            },
            PriceOverride {
                provider: "bad".into(),
                model: "neg".into(),
                input: -1.0,
                output: 0.0,
                cached_input: None,
            },
        ]);
        assert_eq!(
            p.price("openai", "gpt-4o-2024-11-20").map(|x| x.input),
            Some(1.0)
        );
        assert_eq!(p.cost("local", "llama", &usage(5, 5, 0)), Some(0.0));
        assert_eq!(p.price("bad", "neg"), None);
    }

    #[test]
    fn estimates() {
        let p = Pricing::bundled();
        let e = Estimate {
            prompt_tokens: 1_000,
            max_output_tokens: 1_000,
        };
        assert!(close(
            p.estimate("openai", "gpt-4o-mini", e),
            (150.0 + 600.0) / 1e6
        ));
        assert_eq!(p.estimate("openai", "mystery", e), 0.0);
    }
}
