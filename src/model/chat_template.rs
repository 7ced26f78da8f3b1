//! Chat templates: where a checkpoint keeps one (`chat_template.jinja`, then
//! `tokenizer_config.json` as a string or the named-list form, then a built-in Qwen-style
//! template) and rendering it with minijinja configured the way `transformers` configures jinja2
//! (`trim_blocks`, `lstrip_blocks`, loop controls, Python string methods, `raise_exception`, and
//! a `tojson` that writes what Python's `json.dumps` writes), so prompts match token for token.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ModelError;

/// The file current `transformers` saves a checkpoint's template to.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// A Qwen-style template, used when a checkpoint ships none.
pub const DEFAULT_CHAT_TEMPLATE: &str = "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// One chat message as the template sees it; absent optional fields are undefined there.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The message text.
    pub content: String,
    /// An assistant turn's reasoning (rendered inside `<think>` by Qwen3-style templates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// An assistant turn's tool calls (OpenAI form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
    /// The call a `tool` message answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    /// A plain message.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            ..Self::default()
        }
    }
}

/// What a render needs besides the messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions<'a> {
    /// End with the assistant header.
    pub add_generation_prompt: bool,
    /// Tool definitions (OpenAI form), passed as `tools`.
    pub tools: Option<&'a [Value]>,
    /// Extra template variables (`chat_template_kwargs`, e.g. `enable_thinking`).
    pub kwargs: Option<&'a Map<String, Value>>,
}

/// Where a template came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateSource {
    /// `chat_template.jinja`.
    File,
    /// `tokenizer_config.json`'s `chat_template`.
    TokenizerConfig,
    /// [`DEFAULT_CHAT_TEMPLATE`].
    BuiltIn,
}

impl std::fmt::Display for TemplateSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::File => CHAT_TEMPLATE_FILE,
            Self::TokenizerConfig => "tokenizer_config.json",
            Self::BuiltIn => "built-in",
        })
    }
}

/// A compiled chat template.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Arc<minijinja::Environment<'static>>,
    source: TemplateSource,
    renders_tools: bool,
    /// The template writes `<think>` (a reasoning model) and `<tool_call>` (Hermes-form calls).
    thinks: bool,
    writes_tool_calls: bool,
    eos_token: String,
}

fn err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(format!("chat template: {e}"))
}

impl ChatTemplate {
    /// The template of the checkpoint in `dir` (`tokenizer_config` is its parsed
    /// `tokenizer_config.json`), compiled.
    pub fn find(dir: &Path, tokenizer_config: &Value, eos_token: &str) -> Result<Self, ModelError> {
        let file = dir.join(CHAT_TEMPLATE_FILE);
        let (text, source) = if file.exists() {
            let text = std::fs::read_to_string(&file).map_err(|e| ModelError::io(&file, e))?;
            (text, TemplateSource::File)
        } else {
            match &tokenizer_config["chat_template"] {
                Value::String(s) => (s.clone(), TemplateSource::TokenizerConfig),
                Value::Array(list) => match list
                    .iter()
                    .find(|t| t["name"] == "default")
                    .and_then(|t| t["template"].as_str())
                {
                    Some(t) => (t.to_string(), TemplateSource::TokenizerConfig),
                    None => (DEFAULT_CHAT_TEMPLATE.into(), TemplateSource::BuiltIn),
                },
                _ => (DEFAULT_CHAT_TEMPLATE.into(), TemplateSource::BuiltIn),
            }
        };
        Self::compile(text, source, eos_token)
    }

    /// Compiles `text`.
    pub fn compile(
        text: String,
        source: TemplateSource,
        eos_token: &str,
    ) -> Result<Self, ModelError> {
        let renders_tools = text.contains("tools");
        let (thinks, writes_tool_calls) = (text.contains("<think>"), text.contains("<tool_call>"));
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", python_tojson);
        env.add_template_owned("chat", text).map_err(err)?;
        Ok(Self {
            env: Arc::new(env),
            source,
            renders_tools,
            thinks,
            writes_tool_calls,
            eos_token: eos_token.into(),
        })
    }

    /// Where the template came from.
    pub fn source(&self) -> TemplateSource {
        self.source
    }

    /// Whether the template knows `<think>` reasoning.
    pub fn thinks(&self) -> bool {
        self.thinks
    }

    /// Whether the template writes tool calls as `<tool_call>` JSON (the Hermes form).
    pub fn writes_tool_calls(&self) -> bool {
        self.writes_tool_calls
    }

    /// Whether the template reads `tools` at all.
    pub fn renders_tools(&self) -> bool {
        self.renders_tools
    }

    /// Renders `messages`.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        opts: &RenderOptions,
    ) -> Result<String, ModelError> {
        let mut ctx: Map<String, Value> = opts.kwargs.cloned().unwrap_or_default();
        ctx.insert(
            "messages".into(),
            serde_json::to_value(messages).map_err(err)?,
        );
        ctx.insert(
            "add_generation_prompt".into(),
            opts.add_generation_prompt.into(),
        );
        ctx.insert("eos_token".into(), self.eos_token.clone().into());
        match opts.tools {
            Some(tools) => ctx.insert("tools".into(), Value::Array(tools.to_vec())),
            None => ctx.remove("tools"),
        };
        let tmpl = self.env.get_template("chat").map_err(err)?;
        tmpl.render(minijinja::Value::from_serialize(&ctx))
            .map_err(err)
    }
}

fn raise_exception(msg: String) -> Result<String, minijinja::Error> {
    Err(minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        msg,
    ))
}

/// `tojson` as `transformers` defines it: Python's `json.dumps` (key order kept, `", "` and
/// `": "` separators, non-ASCII written as is, `indent` honoured).
// minijinja hands keyword arguments over by value.
#[allow(clippy::needless_pass_by_value)]
fn python_tojson(
    value: &minijinja::Value,
    kwargs: minijinja::value::Kwargs,
) -> Result<String, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(value).map_err(|e| {
        minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
    })?;
    let mut out = String::new();
    python_dumps(&json, indent, 0, &mut out);
    Ok(out)
}

/// Writes `value` as Python's `json.dumps(value, ensure_ascii=False, indent=indent)` does.
pub fn python_dumps(value: &Value, indent: Option<usize>, depth: usize, out: &mut String) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(width) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(width * depth));
        }
    };
    let item_sep = if indent.is_some() { "," } else { ", " };
    match value {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                python_dumps(item, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                python_dumps(item, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        Value::Null => out.push_str("null"),
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
#[path = "chat_template_tests.rs"]
mod tests;
