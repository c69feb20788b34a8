//! What one successful inference answer consists of, independent of the API dialect that will
//! render it: ids, echoed model, token counts and either text or a tool call.

use crate::config::PreparedText;

pub(crate) struct Reply<'a> {
    /// Per-server request sequence number, used in response ids.
    pub(crate) id: u64,
    /// Unix seconds.
    pub(crate) created: u64,
    /// The requested model as a JSON string literal.
    pub(crate) model: String,
    pub(crate) prompt_tokens: usize,
    pub(crate) text: &'a PreparedText,
    /// The first offered tool's name as a JSON string literal, when the request had tools.
    pub(crate) tool: Option<String>,
    pub(crate) tool_arguments: &'a PreparedText,
}

impl Reply<'_> {
    pub(crate) fn completion_tokens(&self) -> usize {
        if self.tool.is_some() {
            self.tool_arguments.words
        } else {
            self.text.words
        }
    }
}
