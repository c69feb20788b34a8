//! Filter, sort and cursor to SQL. Everything user-supplied is a bind parameter (`$N`);
//! the only text spliced into SQL are column and index names from fixed tables here.

use crate::{LogFilter, LogStoreError, Order, Page, SortBy};

/// A bind value, independent of the backend so the same SQL text and binds can be
/// handed to SQLite or Postgres.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Real(f64),
    OptReal(Option<f64>),
    Bool(bool),
}

/// SQL text under construction plus its binds, numbered in push order.
#[derive(Debug, Default)]
pub struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
    /// Emit `?` instead of `$N`. SQLite resolves each named parameter (`$N` included)
    /// with a linear search, which makes a 13,500-parameter multi-row insert quadratic
    /// (about 1,200 rows/s instead of tens of thousands); anonymous `?` are bound by
    /// position. Binds are always pushed in text order, so both spellings agree.
    pub positional: bool,
    /// Replace NUL characters in text binds with U+FFFD: Postgres `TEXT` cannot hold
    /// them, and one stray NUL must not fail a whole batch.
    pub nul_free: bool,
}

impl Sql {
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Appends a placeholder for `b`.
    pub fn bind(&mut self, b: Bind) -> &mut Self {
        let b = match b {
            Bind::Text(s) if self.nul_free && s.contains('\0') => {
                Bind::Text(s.replace('\0', "\u{fffd}"))
            }
            Bind::OptText(Some(s)) if self.nul_free && s.contains('\0') => {
                Bind::OptText(Some(s.replace('\0', "\u{fffd}")))
            }
            other => other,
        };
        self.binds.push(b);
        if self.positional {
            self.text.push('?');
        } else {
            let n = self.binds.len();
            self.text.push('$');
            self.text.push_str(&n.to_string());
        }
        self
    }
}

/// How content search is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentIndex {
    /// SQLite FTS5 table `logs_fts` (rowid = `logs.seq`).
    Fts5,
    /// FTS5, written so it cannot drive the plan (`+seq IN (...)`): for a narrow time
    /// window, reading the window's rows in order and probing the search matches beats
    /// looking up every match across the whole table (SQLite, lacking statistics,
    /// otherwise always starts from the matches: 200 ms instead of 20 ms for "last 24 h"
    /// of 1M rows).
    Fts5Probe,
    /// No full-text index: `LIKE` over `log_content` (a full scan of the content).
    Like,
    /// Postgres: `log_search.search`, a `tsvector` with a GIN index, built from
    /// [`search_document`] and queried with [`ts_query`].
    TsVector,
}

pub fn sort_column(sort: SortBy) -> &'static str {
    match sort {
        SortBy::Timestamp => "ts",
        SortBy::Latency => "latency_ms",
        SortBy::Tokens => "total_tokens",
        SortBy::Cost => "cost",
    }
}

/// The index that yields rows in `sort` order (SQLite names).
pub fn sort_index(sort: SortBy) -> &'static str {
    match sort {
        SortBy::Timestamp => "logs_ts",
        SortBy::Latency => "logs_latency",
        SortBy::Tokens => "logs_tokens",
        SortBy::Cost => "logs_cost",
    }
}

/// `ORDER BY` for a sort. `seq` breaks ties so pages are stable; NULL costs (unpriced)
/// sort as the lowest value on every backend (explicit NULLS FIRST/LAST, which is also
/// SQLite's natural order, so its index still serves the sort).
pub fn order_by(page: &Page, prefix: &str) -> String {
    let col = sort_column(page.sort_by);
    let dir = page.order.as_str();
    let nulls = match (page.sort_by, page.order) {
        (SortBy::Cost, Order::Asc) => " NULLS FIRST",
        (SortBy::Cost, Order::Desc) => " NULLS LAST",
        _ => "",
    };
    format!(" ORDER BY {prefix}{col} {dir}{nulls}, {prefix}seq {dir}")
}

/// [`order_by`] on expressions no index provides (`ts + 0`): the same order, but the
/// planner must gather the matches first and sort them instead of walking a sort index.
pub fn order_by_unindexed(page: &Page) -> String {
    let col = sort_column(page.sort_by);
    let dir = page.order.as_str();
    let nulls = match (page.sort_by, page.order) {
        (SortBy::Cost, Order::Asc) => " NULLS FIRST",
        (SortBy::Cost, Order::Desc) => " NULLS LAST",
        _ => "",
    };
    format!(" ORDER BY {col} + 0 {dir}{nulls}, seq + 0 {dir}")
}

fn push_in(sql: &mut Sql, conds: &mut Vec<()>, col: &str, values: &[String]) {
    let values: Vec<&String> = values.iter().filter(|v| !v.is_empty()).collect();
    if values.is_empty() {
        return;
    }
    start_cond(sql, conds);
    sql.push(col);
    if let [one] = values.as_slice() {
        sql.push(" = ").bind(Bind::Text((*one).clone()));
    } else {
        sql.push(" IN (");
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(Bind::Text((*v).clone()));
        }
        sql.push(")");
    }
}

fn start_cond(sql: &mut Sql, conds: &mut Vec<()>) {
    sql.push(if conds.is_empty() { " WHERE " } else { " AND " });
    conds.push(());
}

fn clamp_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Turns free text into an FTS5 query: each whitespace-separated word becomes a quoted
/// prefix term (`"word"*`), all required. Quoting makes FTS5 syntax characters in user
/// input inert; a word the tokenizer splits further (`gpt-4o`) becomes a phrase.
pub fn fts_query(search: &str) -> Option<String> {
    let terms: Vec<String> = search
        .split_whitespace()
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .map(|w| format!("\"{}\"*", w.replace('"', "\"\"")))
        .collect();
    if terms.is_empty() {
        None
    } else {
        Some(terms.join(" "))
    }
}

/// Postgres content search mirrors FTS5 `unicode61` by tokenizing in Rust on both
/// sides, so neither the server's locale nor its text-search parser decides what a word
/// is: a token is a run of alphanumeric characters, lowercased, with the diacritics of
/// Latin letters removed (`Zürich` -> `zurich`). A row's document is its tokens joined
/// by spaces ([`search_document`], indexed as `to_tsvector('simple', ...)`, which then
/// only splits on those spaces); each search word becomes a prefix term (`'tok':*`) or,
/// when the word holds several tokens (`gpt-4o`), a phrase whose last token is a prefix
/// (`'gpt' <-> '4o':*`, the FTS5 query `"gpt-4o"*`), all required ([`ts_query`]).
///
/// Known differences from FTS5 (none of them reachable with ordinary prompt text):
/// - diacritics are folded for Latin-1 and Latin Extended-A letters only, where FTS5
///   folds every Latin letter with a decomposition (Vietnamese, for one);
/// - Postgres' parser drops symbols FTS5 keeps as tokens (`²`, `½`): a search made only
///   of such symbols matches nothing;
/// - input and output form one document, so a multi-token word can match across the
///   end of the input and the start of the output (FTS5 phrases stay in one column);
/// - only the first [`MAX_DOCUMENT_BYTES`] of a row's tokens are indexed (a `tsvector`
///   holds at most 1 MiB), a token over [`MAX_LEXEME_BYTES`] is not indexed (so a search
///   word that long matches nothing), and positions past 16,383 collapse into one, so a
///   phrase that deep into a text may fail to match.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Postgres' limit on one lexeme.
pub const MAX_LEXEME_BYTES: usize = 2047;

/// Latin letters (already lowercase) with a canonical decomposition into a base letter
/// and diacritics, by base letter: Latin-1 Supplement and Latin Extended-A.
const FOLDS: [(&str, char); 19] = [
    ("àáâãäåāăą", 'a'),
    ("çćĉċč", 'c'),
    ("ď", 'd'),
    ("èéêëēĕėęě", 'e'),
    ("ĝğġģ", 'g'),
    ("ĥ", 'h'),
    ("ìíîïĩīĭį", 'i'),
    ("ĵ", 'j'),
    ("ķ", 'k'),
    ("ĺļľ", 'l'),
    ("ñńņň", 'n'),
    ("òóôõöōŏő", 'o'),
    ("ŕŗř", 'r'),
    ("śŝşš", 's'),
    ("ţť", 't'),
    ("ùúûüũūŭůűų", 'u'),
    ("ŵ", 'w'),
    ("ýÿŷ", 'y'),
    ("źżž", 'z'),
];

/// Combining diacritical marks: part of the token they follow, and dropped from it.
fn is_combining_mark(c: char) -> bool {
    matches!(c, '\u{300}'..='\u{36f}')
}

fn fold_token(raw: &str) -> String {
    raw.chars()
        .flat_map(char::to_lowercase)
        .filter(|c| !is_combining_mark(*c))
        .map(|c| {
            if c.is_ascii() {
                return c;
            }
            FOLDS
                .iter()
                .find(|(from, _)| from.contains(c))
                .map_or(c, |(_, to)| *to)
        })
        .collect()
}

/// The search tokens of `text`, in order.
pub fn search_tokens(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || is_combining_mark(c)))
        .map(fold_token)
        .filter(|t| !t.is_empty())
}

/// The text a row's `tsvector` is built from: the tokens of input then output, joined
/// by single spaces, at most [`MAX_DOCUMENT_BYTES`].
pub fn search_document(input: Option<&str>, output: Option<&str>) -> String {
    let mut doc = String::new();
    for text in [input, output].into_iter().flatten() {
        for t in search_tokens(text) {
            if doc.len() + 1 + t.len() > MAX_DOCUMENT_BYTES {
                return doc;
            }
            if !doc.is_empty() {
                doc.push(' ');
            }
            doc.push_str(&t);
        }
    }
    doc
}

/// Turns free text into a Postgres `tsquery` (for `to_tsquery('simple', ...)`) with
/// the semantics of [`fts_query`]; `None` when nothing can match (no word with a
/// letter or digit, or a word too long to have been indexed).
pub fn ts_query(search: &str) -> Option<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in search.split_whitespace() {
        let tokens: Vec<String> = search_tokens(word).collect();
        if tokens.iter().any(|t| t.len() > MAX_LEXEME_BYTES) {
            return None;
        }
        let last = tokens.len().saturating_sub(1);
        let parts: Vec<String> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| {
                // Tokens are alphanumeric, so quoting is belt and braces.
                let t = t.replace('\\', "\\\\").replace('\'', "''");
                if i == last {
                    format!("'{t}':*")
                } else {
                    format!("'{t}'")
                }
            })
            .collect();
        match parts.len() {
            0 => {}
            1 => terms.extend(parts),
            _ => terms.push(format!("({})", parts.join(" <-> "))),
        }
    }
    if terms.is_empty() {
        None
    } else {
        Some(terms.join(" & "))
    }
}

/// Escapes `%`, `_` and `\` for `LIKE ... ESCAPE '\'`.
fn like_pattern(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// Appends `WHERE ...` for `filter` (nothing for an empty filter). Columns are
/// qualified with `prefix` (e.g. `"l."`, or `""`).
pub fn push_where(sql: &mut Sql, filter: &LogFilter, content: ContentIndex, prefix: &str) {
    let mut conds: Vec<()> = Vec::new();
    let c = |name: &str| format!("{prefix}{name}");
    push_in(sql, &mut conds, &c("provider"), &filter.providers);
    push_in(sql, &mut conds, &c("model"), &filter.models);
    push_in(sql, &mut conds, &c("status"), &filter.status);
    push_in(sql, &mut conds, &c("object"), &filter.objects);
    push_in(
        sql,
        &mut conds,
        &c("virtual_key_id"),
        &filter.virtual_key_ids,
    );
    push_in(sql, &mut conds, &c("team_id"), &filter.team_ids);
    push_in(sql, &mut conds, &c("customer_id"), &filter.customer_ids);
    push_in(sql, &mut conds, &c("key_id"), &filter.selected_key_ids);
    push_in(sql, &mut conds, &c("id"), &filter.ids);
    let request_id = filter.request_id.as_deref().filter(|s| !s.is_empty());
    if let Some(id) = request_id {
        start_cond(sql, &mut conds);
        sql.push(&c("id"))
            .push(" = ")
            .bind(Bind::Text(id.to_owned()));
    } else {
        // Bifrost drops the window for an explicit request id; do the same.
        if let Some(t) = filter.start_time {
            start_cond(sql, &mut conds);
            sql.push(&c("ts")).push(" >= ").bind(Bind::Int(t));
        }
        if let Some(t) = filter.end_time {
            start_cond(sql, &mut conds);
            sql.push(&c("ts")).push(" <= ").bind(Bind::Int(t));
        }
    }
    let ranges: [(&str, &str, Option<Bind>); 6] = [
        ("latency_ms", ">=", filter.min_latency.map(Bind::Real)),
        ("latency_ms", "<=", filter.max_latency.map(Bind::Real)),
        (
            "total_tokens",
            ">=",
            filter.min_tokens.map(|v| Bind::Int(clamp_u64(v))),
        ),
        (
            "total_tokens",
            "<=",
            filter.max_tokens.map(|v| Bind::Int(clamp_u64(v))),
        ),
        ("cost", ">=", filter.min_cost.map(Bind::Real)),
        ("cost", "<=", filter.max_cost.map(Bind::Real)),
    ];
    for (col, op, bind) in ranges {
        if let Some(b) = bind {
            start_cond(sql, &mut conds);
            sql.push(&c(col)).push(" ").push(op).push(" ").bind(b);
        }
    }
    if let Some(search) = filter.content_search.as_deref().map(str::trim)
        && !search.is_empty()
    {
        match content {
            ContentIndex::Fts5 | ContentIndex::Fts5Probe => {
                start_cond(sql, &mut conds);
                match fts_query(search) {
                    Some(q) => {
                        if content == ContentIndex::Fts5Probe {
                            sql.push("+");
                        }
                        sql.push(&c("seq"))
                            .push(" IN (SELECT rowid FROM logs_fts WHERE logs_fts MATCH ")
                            .bind(Bind::Text(q))
                            .push(")");
                    }
                    // Only punctuation: nothing the tokenizer indexes can match.
                    None => {
                        sql.push("1 = 0");
                    }
                }
            }
            ContentIndex::TsVector => {
                start_cond(sql, &mut conds);
                match ts_query(search) {
                    Some(q) => {
                        sql.push(&c("seq"))
                            .push(" IN (SELECT seq FROM log_search WHERE search @@ to_tsquery('simple', ")
                            .bind(Bind::Text(q))
                            .push("))");
                    }
                    None => {
                        sql.push("1 = 0");
                    }
                }
            }
            ContentIndex::Like => {
                start_cond(sql, &mut conds);
                let pat = like_pattern(search);
                sql.push(&c("seq"))
                    .push(" IN (SELECT seq FROM log_content WHERE input LIKE ")
                    .bind(Bind::Text(pat.clone()))
                    .push(" ESCAPE '\\' OR output LIKE ")
                    .bind(Bind::Text(pat))
                    .push(" ESCAPE '\\')");
            }
        }
    }
}

/// A decoded keyset cursor: the sort value and `seq` of the last row of a page.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub sort: SortBy,
    pub order: Order,
    /// `None` only for an unpriced row under the cost sort.
    pub value: Option<Bind>,
    pub seq: i64,
}

impl Cursor {
    /// `sort.order.value.seq`, with `~` for NULL. Opaque to clients.
    pub fn encode(&self) -> String {
        let v = match &self.value {
            None => "~".to_owned(),
            Some(Bind::Int(i)) => format!("i{i}"),
            Some(Bind::Real(f)) => format!("r{f:?}"),
            // Cursors are only built from integer and real sort keys.
            Some(Bind::Text(_) | Bind::OptText(_) | Bind::OptReal(_) | Bind::Bool(_)) => {
                "~".to_owned()
            }
        };
        format!(
            "{}.{}.{}.{}",
            self.sort.as_str(),
            self.order.as_str(),
            v,
            self.seq
        )
    }

    pub fn decode(s: &str) -> Result<Cursor, LogStoreError> {
        let bad = || LogStoreError::InvalidCursor(s.to_owned());
        let mut parts = s.splitn(3, '.');
        let sort = parts.next().and_then(SortBy::parse).ok_or_else(bad)?;
        let order = parts.next().and_then(Order::parse).ok_or_else(bad)?;
        let rest = parts.next().ok_or_else(bad)?;
        let (v, seq) = rest.rsplit_once('.').ok_or_else(bad)?;
        let seq: i64 = seq.parse().map_err(|_| bad())?;
        let value = if v == "~" {
            None
        } else if let Some(i) = v.strip_prefix('i') {
            Some(Bind::Int(i.parse().map_err(|_| bad())?))
        } else if let Some(f) = v.strip_prefix('r') {
            let f: f64 = f.parse().map_err(|_| bad())?;
            if !f.is_finite() {
                return Err(bad());
            }
            Some(Bind::Real(f))
        } else {
            return Err(bad());
        };
        if value.is_none() && sort != SortBy::Cost {
            return Err(bad());
        }
        Ok(Cursor {
            sort,
            order,
            value,
            seq,
        })
    }
}

/// Appends the keyset condition "strictly after the cursor row" (joined with AND, or
/// starting the WHERE clause when `has_where` is false).
pub fn push_after(sql: &mut Sql, cursor: &Cursor, has_where: bool, prefix: &str) {
    sql.push(if has_where { " AND " } else { " WHERE " });
    let col = format!("{prefix}{}", sort_column(cursor.sort));
    let seq = format!("{prefix}seq");
    let (cmp, null_last) = match cursor.order {
        Order::Desc => ("<", true),
        Order::Asc => (">", false),
    };
    match &cursor.value {
        Some(v) => {
            // `col <= v AND (col < v OR seq < s)` rather than the textbook
            // `col < v OR (col = v AND seq < s)`: the leading bound is a range the sort
            // index can seek to, where a top-level OR makes SQLite scan from the start.
            let cmp_eq = if null_last { "<=" } else { ">=" };
            sql.push("((")
                .push(&col)
                .push(&format!(" {cmp_eq} "))
                .bind(v.clone())
                .push(" AND (")
                .push(&col)
                .push(&format!(" {cmp} "))
                .bind(v.clone())
                .push(&format!(" OR {seq} {cmp} "))
                .bind(Bind::Int(cursor.seq))
                .push("))");
            // Descending cost puts unpriced rows last: they all follow a priced cursor.
            if null_last && cursor.sort == SortBy::Cost {
                sql.push(" OR ").push(&col).push(" IS NULL");
            }
            sql.push(")");
        }
        None => {
            // Cursor on an unpriced row (cost sort only).
            sql.push("((")
                .push(&col)
                .push(&format!(" IS NULL AND {seq} {cmp} "))
                .bind(Bind::Int(cursor.seq))
                .push(")");
            // Ascending cost puts unpriced rows first: every priced row follows.
            if !null_last {
                sql.push(" OR ").push(&col).push(" IS NOT NULL");
            }
            sql.push(")");
        }
    }
}

/// Does the filter pin an equality column whose `(column, ts)` index already yields
/// rows newest-first (one value, no content search)? Then the planner's own choice is
/// best for the timestamp sort and needs no hint.
pub fn has_ordered_equality(filter: &LogFilter) -> bool {
    let single = |v: &Vec<String>| v.len() == 1;
    single(&filter.providers)
        || single(&filter.models)
        || single(&filter.status)
        || single(&filter.objects)
        || single(&filter.virtual_key_ids)
        || single(&filter.team_ids)
        || single(&filter.customer_ids)
        || single(&filter.selected_key_ids)
        || filter.request_id.as_deref().is_some_and(|s| !s.is_empty())
        || !filter.ids.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let cases = [
            Cursor {
                sort: SortBy::Timestamp,
                order: Order::Desc,
                value: Some(Bind::Int(-5)),
                seq: 7,
            },
            Cursor {
                sort: SortBy::Latency,
                order: Order::Asc,
                value: Some(Bind::Real(1.25e-3)),
                seq: 1,
            },
            Cursor {
                sort: SortBy::Cost,
                order: Order::Desc,
                value: None,
                seq: 99,
            },
        ];
        for c in cases {
            assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
        for bad in [
            "",
            "x.desc.i1.1",
            "timestamp.up.i1.1",
            "timestamp.desc.~.1",
            "latency.asc.rNaN.1",
            "timestamp.desc.i1",
        ] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fts_query_quotes_terms() {
        assert_eq!(fts_query("hello wor").unwrap(), "\"hello\"* \"wor\"*");
        assert_eq!(fts_query("a\"b OR").unwrap(), "\"a\"\"b\"* \"OR\"*");
        assert_eq!(fts_query("  -- !! "), None);
    }

    #[test]
    fn ts_query_mirrors_fts5_terms() {
        assert_eq!(ts_query("hello wor").unwrap(), "'hello':* & 'wor':*");
        assert_eq!(ts_query("ZÜRICH").unwrap(), "'zurich':*");
        assert_eq!(ts_query("gpt-4o").unwrap(), "('gpt' <-> '4o':*)");
        assert_eq!(ts_query("a'b\\c").unwrap(), "('a' <-> 'b' <-> 'c':*)");
        assert_eq!(ts_query("\"quota\" OR").unwrap(), "'quota':* & 'or':*");
        assert_eq!(ts_query("  -- !! "), None);
        assert_eq!(ts_query(&"x".repeat(3000)), None);
        assert_eq!(
            search_document(
                Some("What's the Weather in Zu\u{308}rich?"),
                Some("Sunny, 21°C")
            ),
            "what s the weather in zurich sunny 21 c"
        );
        let big = "word ".repeat(MAX_DOCUMENT_BYTES);
        assert!(search_document(Some(&big), None).len() <= MAX_DOCUMENT_BYTES);
    }

    #[test]
    fn where_clause_binds_everything() {
        let f = LogFilter {
            providers: vec!["openai".into(), "anthropic".into()],
            status: vec!["error".into()],
            start_time: Some(10),
            min_cost: Some(0.5),
            content_search: Some("x' OR 1=1".into()),
            ..Default::default()
        };
        let mut sql = Sql::default();
        push_where(&mut sql, &f, ContentIndex::Like, "");
        assert!(!sql.text.contains("OR 1=1"));
        assert_eq!(sql.binds.len(), 7);
        assert!(
            sql.text
                .starts_with(" WHERE provider IN ($1, $2) AND status = $3")
        );
    }
}
