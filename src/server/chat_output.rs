//! A chat answer's text split into what OpenAI clients read apart: `reasoning_content`
//! (between `<think>` and `</think>`, the Qwen3 / SDAR-Chat form), `tool_calls` (each
//! `<tool_call>{"name": …, "arguments": …}</tool_call>`, the Hermes form those templates ask for)
//! and `content` (the rest). Pure and incremental: text goes in as the engine commits it, in
//! pieces of any size, and comes out as [`Piece`]s as soon as no tag can still be forming; the
//! split never depends on where the pieces were cut.
//!
//! A call whose body is not a JSON object with a string `name` stays text, tags included (never
//! an error). Reasoning left open at the end (the answer was cut while thinking) stays reasoning.

use serde_json::Value;

const THINK: &str = "<think>";
const THINK_END: &str = "</think>";
const CALL: &str = "<tool_call>";
const CALL_END: &str = "</tool_call>";

/// `--tool-call-parser`: how tool calls are found in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ToolCallParser {
    /// Hermes `<tool_call>` JSON when the chat template writes calls that way.
    #[default]
    Auto,
    /// Hermes `<tool_call>` JSON whatever the template.
    Hermes,
    /// Never: calls stay text.
    None,
}

/// `--reasoning-parser`: how reasoning is found in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReasoningParser {
    /// Qwen3 `<think>…</think>` when the chat template is a thinking one.
    #[default]
    Auto,
    /// Qwen3 `<think>…</think>` whatever the template.
    Qwen3,
    /// Never: reasoning stays content.
    None,
}

/// The server's parser choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Parsers {
    /// Tool calls.
    pub tool_calls: ToolCallParser,
    /// Reasoning.
    pub reasoning: ReasoningParser,
}

impl Parsers {
    /// Whether to split reasoning, given whether the template thinks.
    pub fn reasoning(&self, template_thinks: bool) -> bool {
        match self.reasoning {
            ReasoningParser::Auto => template_thinks,
            ReasoningParser::Qwen3 => true,
            ReasoningParser::None => false,
        }
    }

    /// Whether to parse tool calls, given whether the template writes Hermes calls.
    pub fn tool_calls(&self, template_writes_calls: bool) -> bool {
        match self.tool_calls {
            ToolCallParser::Auto => template_writes_calls,
            ToolCallParser::Hermes => true,
            ToolCallParser::None => false,
        }
    }
}

/// Which parts to split out of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputParsing {
    /// Split `<think>…</think>` into reasoning.
    pub reasoning: bool,
    /// The prompt already opened `<think>`: the answer starts inside the reasoning.
    pub starts_in_reasoning: bool,
    /// Parse `<tool_call>…</tool_call>` into tool calls.
    pub tool_calls: bool,
}

/// One parsed tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// `function.name`.
    pub name: String,
    /// `function.arguments`: a JSON text.
    pub arguments: String,
}

/// A part of the answer, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text for `content`.
    Content(String),
    /// Text for `reasoning_content`.
    Reasoning(String),
    /// One tool call.
    ToolCall(ToolCall),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Content,
    Reasoning,
    ToolCall,
}

/// The incremental splitter of one answer.
#[derive(Debug)]
pub struct OutputParser {
    parsing: OutputParsing,
    mode: Mode,
    pending: String,
    /// Content has been emitted (a later `<think>` is then plain text).
    wrote_content: bool,
    /// Drop the newlines that follow `</think>`.
    after_reasoning: bool,
}

impl OutputParser {
    /// A parser for one answer.
    pub fn new(parsing: OutputParsing) -> Self {
        let starts_inside = parsing.reasoning && parsing.starts_in_reasoning;
        Self {
            parsing,
            mode: if starts_inside {
                Mode::Reasoning
            } else {
                Mode::Content
            },
            pending: String::new(),
            wrote_content: false,
            after_reasoning: false,
        }
    }

    /// Takes the next `text` of the answer; returns what is settled.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        self.pending.push_str(text);
        let mut out = Vec::new();
        while self.step(&mut out) {}
        out
    }

    /// The end of the answer: whatever is still held.
    pub fn finish(&mut self) -> Vec<Piece> {
        let rest = std::mem::take(&mut self.pending);
        let mut out = Vec::new();
        match self.mode {
            Mode::Reasoning => push_text(&mut out, Piece::Reasoning(rest)),
            Mode::Content => self.content(&mut out, rest),
            Mode::ToolCall => match parse_call(&rest) {
                Some(call) => out.push(Piece::ToolCall(call)),
                None => self.content(&mut out, format!("{CALL}{rest}")),
            },
        }
        self.mode = Mode::Content;
        out
    }

    /// Settles what it can of `pending`; true if it should run again.
    fn step(&mut self, out: &mut Vec<Piece>) -> bool {
        match self.mode {
            Mode::Reasoning => match self.pending.find(THINK_END) {
                Some(at) => {
                    let reasoning = self.take(at, THINK_END.len());
                    push_text(out, Piece::Reasoning(reasoning));
                    self.mode = Mode::Content;
                    self.after_reasoning = true;
                    true
                }
                None => {
                    let settled = self.take_settled(&[THINK_END]);
                    push_text(out, Piece::Reasoning(settled));
                    false
                }
            },
            Mode::ToolCall => match self.pending.find(CALL_END) {
                Some(at) => {
                    let body = self.take(at, CALL_END.len());
                    match parse_call(&body) {
                        Some(call) => out.push(Piece::ToolCall(call)),
                        None => self.content(out, format!("{CALL}{body}{CALL_END}")),
                    }
                    self.mode = Mode::Content;
                    true
                }
                None => false,
            },
            Mode::Content => {
                let tags = self.open_tags();
                let first = tags
                    .iter()
                    .filter_map(|tag| self.pending.find(tag).map(|at| (at, *tag)))
                    // Reasoning opens only before any content.
                    .filter(|&(at, tag)| tag != THINK || self.pending[..at].trim().is_empty())
                    .min();
                match first {
                    Some((at, tag)) => {
                        let before = self.take(at, tag.len());
                        self.content(out, before);
                        self.mode = if tag == THINK {
                            Mode::Reasoning
                        } else {
                            Mode::ToolCall
                        };
                        true
                    }
                    None => {
                        let settled = self.take_settled(&tags);
                        self.content(out, settled);
                        false
                    }
                }
            }
        }
    }

    /// The tags that open a part from content now.
    fn open_tags(&self) -> Vec<&'static str> {
        let mut tags = Vec::with_capacity(2);
        if self.parsing.reasoning && !self.wrote_content && !self.after_reasoning {
            tags.push(THINK);
        }
        if self.parsing.tool_calls {
            tags.push(CALL);
        }
        tags
    }

    /// Removes `pending[..at]` and the `skip` bytes after it; returns the former.
    fn take(&mut self, at: usize, skip: usize) -> String {
        let rest = self.pending.split_off(at + skip);
        let mut before = std::mem::replace(&mut self.pending, rest);
        before.truncate(at);
        before
    }

    /// Removes and returns `pending` but for its longest end that could still begin one of
    /// `tags`.
    fn take_settled(&mut self, tags: &[&str]) -> String {
        let held = tags
            .iter()
            .map(|tag| partial_tag_len(&self.pending, tag))
            .max()
            .unwrap_or(0);
        let at = self.pending.len() - held;
        self.take(at, 0)
    }

    /// Emits `text` as content (less the newlines right after a reasoning part).
    fn content(&mut self, out: &mut Vec<Piece>, text: String) {
        let text = if self.after_reasoning {
            let kept = text.trim_start_matches(['\n', '\r']);
            if kept.is_empty() {
                return;
            }
            self.after_reasoning = false;
            kept.to_string()
        } else {
            text
        };
        if !text.is_empty() {
            self.wrote_content |= !text.trim().is_empty();
            push_text(out, Piece::Content(text));
        }
    }
}

/// Appends a text piece unless empty, merging it into the previous piece of the same kind.
fn push_text(out: &mut Vec<Piece>, piece: Piece) {
    match (out.last_mut(), piece) {
        (_, Piece::Content(t) | Piece::Reasoning(t)) if t.is_empty() => {}
        (Some(Piece::Content(last)), Piece::Content(t)) => last.push_str(&t),
        (Some(Piece::Reasoning(last)), Piece::Reasoning(t)) => last.push_str(&t),
        (_, piece) => out.push(piece),
    }
}

/// Length of the longest end of `text` that is a proper beginning of `tag`.
fn partial_tag_len(text: &str, tag: &str) -> usize {
    (1..tag.len())
        .rev()
        .find(|&n| {
            text.len() >= n && text.is_char_boundary(text.len() - n) && text.ends_with(&tag[..n])
        })
        .unwrap_or(0)
}

/// `{"name": …, "arguments": …}` (arguments an object or a JSON text) as a call.
fn parse_call(body: &str) -> Option<ToolCall> {
    let value: Value = serde_json::from_str(body.trim()).ok()?;
    let name = value.get("name")?.as_str()?.to_string();
    let arguments = match value.get("arguments").or_else(|| value.get("parameters")) {
        None | Some(Value::Null) => "{}".to_string(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    };
    Some(ToolCall { name, arguments })
}

/// The whole answer `text` split at once.
pub fn split(parsing: OutputParsing, text: &str) -> Vec<Piece> {
    let mut parser = OutputParser::new(parsing);
    let mut pieces = parser.push(text);
    for piece in parser.finish() {
        push_text(&mut pieces, piece);
    }
    pieces
}

#[cfg(test)]
#[path = "chat_output_tests.rs"]
mod tests;
