//! Allow/deny lists (`allowed_models`, `blacklisted_models`, `key_ids`) and management-API
//! permissions: how they are validated and how they match. Model patterns are exact names,
//! `*`, or `regex:<re>` (full match, case-insensitive); exact names also compare ignoring
//! ASCII case, so a blacklist cannot be sidestepped by writing `GPT-4o`.

use regex::{Regex, RegexBuilder};

use crate::model::VirtualKey;

/// Compiled regexes are capped so a stored pattern cannot make snapshot building slow or
/// memory-hungry (the regex crate is linear-time, so matching itself is always bounded).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Why a list is invalid; rendered after `invalid <field> for provider <p>: `.
pub fn check_list(values: &[String], allow_regex: bool) -> Result<(), String> {
    let mut seen: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        if value.trim().is_empty() {
            return Err("empty value".to_owned());
        }
        if value == "*" && values.len() > 1 {
            return Err("\"*\" cannot be combined with other values".to_owned());
        }
        let folded = value.to_ascii_lowercase();
        if seen.contains(&folded) {
            return Err(format!("duplicate value '{value}'"));
        }
        seen.push(folded);
        if allow_regex && let Some(re) = value.strip_prefix("regex:") {
            compile_full_match(re)
                .map_err(|e| format!("invalid regex '{value}': {}", summarize(&e)))?;
        }
    }
    Ok(())
}

/// The last meaningful line of a regex error (the crate's syntax errors span several lines
/// with a caret diagram; the API error must stay one line).
fn summarize(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("does not compile")
        .trim_start_matches("error: ")
        .to_owned()
}

fn compile_full_match(re: &str) -> Result<Regex, regex::Error> {
    // Compile the pattern alone first: wrapping an unbalanced pattern such as `a)|(b` in
    // `^(?:…)$` would make it valid but no longer anchored on both sides.
    RegexBuilder::new(re).size_limit(REGEX_SIZE_LIMIT).build()?;
    RegexBuilder::new(&format!("^(?:{re})$"))
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// A compiled model list.
#[derive(Debug, Clone, Default)]
pub struct ModelList {
    any: bool,
    exact: Vec<String>,
    regexes: Vec<Regex>,
}

impl ModelList {
    /// Compiles stored patterns. A stored pattern that does not compile (data that skipped
    /// validation) is reported in the second value and matches nothing; callers decide
    /// whether that should fail closed.
    pub fn compile(patterns: &[String]) -> (ModelList, Vec<String>) {
        let mut list = ModelList::default();
        let mut broken = Vec::new();
        for p in patterns {
            if p == "*" {
                list.any = true;
            } else if let Some(re) = p.strip_prefix("regex:") {
                match compile_full_match(re) {
                    Ok(r) => list.regexes.push(r),
                    Err(_) => broken.push(p.clone()),
                }
            } else {
                list.exact.push(p.to_ascii_lowercase());
            }
        }
        (list, broken)
    }

    pub fn matches(&self, model: &str) -> bool {
        self.any
            || self.exact.iter().any(|e| e.eq_ignore_ascii_case(model))
            || self.regexes.iter().any(|r| r.is_match(model))
    }
}

/// `key_ids` as a filter: `None` = any key (`[]` or `["*"]`), otherwise only these.
pub fn key_filter(key_ids: &[String]) -> Option<Vec<String>> {
    if key_ids.is_empty() || key_ids.iter().any(|k| k == "*") {
        None
    } else {
        Some(key_ids.to_vec())
    }
}

/// Resources a management-API permission can name (`<resource>:read|write|*`).
pub const PERMISSION_RESOURCES: &[&str] = &[
    "plugins",
    "providers",
    "keys",
    "governance",
    "config",
    "logs",
    "mcp",
    "cache",
    "models",
];

const PERMISSION_ACTIONS: &[&str] = &["read", "write", "*"];

/// `*`, or `<resource>:<read|write|*>` with a resource from [`PERMISSION_RESOURCES`].
pub fn is_known_permission(permission: &str) -> bool {
    if permission == "*" {
        return true;
    }
    permission
        .split_once(':')
        .is_some_and(|(resource, action)| {
            PERMISSION_RESOURCES.contains(&resource) && PERMISSION_ACTIONS.contains(&action)
        })
}

/// Whether an active virtual key may use a management-API permission. `*` grants
/// everything, `<resource>:*` every action on the resource, and `write` implies `read`.
/// Expiry needs a clock: check [`crate::VirtualKey`]'s `expires_at` with
/// [`crate::is_expired`] first. Unknown permissions are never granted.
pub fn permits(vk: &VirtualKey, permission: &str) -> bool {
    if !vk.is_active || !is_known_permission(permission) {
        return false;
    }
    let granted = |p: &str| vk.permissions.iter().any(|g| g == p);
    if granted("*") {
        return true;
    }
    // Only `*` itself has no resource, and it was not granted.
    let Some((resource, action)) = permission.split_once(':') else {
        return false;
    };
    granted(permission)
        || granted(&format!("{resource}:*"))
        || (action == "read" && granted(&format!("{resource}:write")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn validates_lists() {
        assert_eq!(check_list(&strings(&["*"]), true), Ok(()));
        assert_eq!(check_list(&[], true), Ok(()));
        assert_eq!(
            check_list(&strings(&["*", "gpt-4o"]), true),
            Err("\"*\" cannot be combined with other values".to_owned())
        );
        assert_eq!(
            check_list(&strings(&["gpt-4o", "GPT-4o"]), true),
            Err("duplicate value 'GPT-4o'".to_owned())
        );
        assert_eq!(
            check_list(&strings(&[" "]), true),
            Err("empty value".to_owned())
        );
        assert_eq!(
            check_list(&strings(&["regex:gpt-(4o"]), true),
            Err("invalid regex 'regex:gpt-(4o': unclosed group".to_owned())
        );
        assert_eq!(check_list(&strings(&["regex:gpt-(4o"]), false), Ok(()));
    }

    #[test]
    fn matches_exact_star_and_full_regex() {
        let (l, broken) = ModelList::compile(&strings(&["gpt-4o", "regex:claude-3-.*"]));
        assert!(broken.is_empty());
        assert!(l.matches("gpt-4o"));
        assert!(l.matches("GPT-4O"));
        assert!(!l.matches("gpt-4o-mini"));
        assert!(l.matches("Claude-3-Opus"));
        // Full match: a prefix or suffix is not enough.
        assert!(!l.matches("x-claude-3-opus"));
        let (alt, _) = ModelList::compile(&strings(&["regex:a|ab"]));
        assert!(alt.matches("ab"));
        assert!(!alt.matches("abc"));
        assert!(ModelList::compile(&strings(&["*"])).0.matches("anything"));
        assert!(!ModelList::default().matches("anything"));
        let (bad, broken) = ModelList::compile(&strings(&["regex:(", "ok"]));
        assert_eq!(broken, ["regex:("]);
        assert!(bad.matches("ok") && !bad.matches("("));
    }

    #[test]
    fn key_filters() {
        assert_eq!(key_filter(&[]), None);
        assert_eq!(key_filter(&strings(&["*"])), None);
        assert_eq!(key_filter(&strings(&["k1"])), Some(strings(&["k1"])));
    }

    fn vk(perms: &[&str]) -> VirtualKey {
        VirtualKey {
            id: "v".into(),
            name: "n".into(),
            description: String::new(),
            value_hash: String::new(),
            value_hint: String::new(),
            is_active: true,
            team_id: None,
            customer_id: None,
            allow_all_providers: None,
            disable_content_logging: None,
            provider_configs: vec![],
            budgets: vec![],
            rate_limit: None,
            permissions: strings(perms),
            expires_at: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn permissions() {
        assert!(is_known_permission("*"));
        assert!(is_known_permission("plugins:read"));
        assert!(is_known_permission("governance:*"));
        assert!(!is_known_permission("plugins:delete"));
        assert!(!is_known_permission("root"));

        let reader = vk(&["plugins:read"]);
        assert!(permits(&reader, "plugins:read"));
        assert!(!permits(&reader, "plugins:write"));
        assert!(!permits(&reader, "providers:read"));

        let writer = vk(&["plugins:write"]);
        assert!(permits(&writer, "plugins:read"));
        assert!(permits(&writer, "plugins:write"));
        assert!(!permits(&writer, "plugins:*"));

        let res_all = vk(&["providers:*"]);
        assert!(permits(&res_all, "providers:write"));
        assert!(permits(&res_all, "providers:*"));
        assert!(!permits(&res_all, "*"));

        let admin = vk(&["*"]);
        assert!(permits(&admin, "governance:write"));
        assert!(permits(&admin, "*"));
        assert!(!permits(&admin, "unknown:read"));

        assert!(!permits(&vk(&[]), "plugins:read"));
        let mut inactive = vk(&["*"]);
        inactive.is_active = false;
        assert!(!permits(&inactive, "plugins:read"));
    }
}
