//! `tool_choice` and how an answer is made to call a tool: `auto` (the model decides), `none`
//! (calls stay text), `required` and a named function. The last two are enforced by writing the
//! start of the call into the prompt, after the template's generation prompt (closing a
//! `<think>` it opened): `<tool_call>\n{"name": "` for `required`, and the whole head up to the
//! arguments for a named function. The model then writes the rest of the call, and the answer's
//! parser starts inside it. Pure.

use serde_json::Value;

use super::error::ApiError;

/// What a request's `tool_choice` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// The model decides (OpenAI's default when tools are given).
    #[default]
    Auto,
    /// No call: tool-call text stays `content`.
    None,
    /// At least one call, to any tool.
    Required,
    /// A call to this function.
    Named(String),
}

impl ToolChoice {
    /// Reads `tool_choice` (absent or `null`: `auto`), checking a named function is among
    /// `tools` and that `required` / named come with tools.
    pub fn parse(value: Option<&Value>, tools: Option<&[Value]>) -> Result<Self, ApiError> {
        let choice = match value {
            None | Some(Value::Null) => Self::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "auto" => Self::Auto,
                "none" => Self::None,
                "required" => Self::Required,
                other => return Err(invalid(format!("unknown tool_choice `{other}`"))),
            },
            Some(v) if v["type"] == "function" && v["function"]["name"].is_string() => {
                Self::Named(v["function"]["name"].as_str().unwrap_or_default().into())
            }
            Some(_) => {
                return Err(invalid(
                    "tool_choice must be `auto`, `none`, `required` or {\"type\": \"function\", \"function\": {\"name\": …}}".into(),
                ))
            }
        };
        let names: Vec<&str> = tools
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t["function"]["name"].as_str())
            .collect();
        match &choice {
            Self::Required | Self::Named(_) if names.is_empty() => Err(invalid(
                "tool_choice `required` or a named function needs `tools`".into(),
            )),
            Self::Named(name) if !names.contains(&name.as_str()) => Err(invalid(format!(
                "tool_choice names `{name}`, which is not among the tools"
            ))),
            _ => Ok(choice),
        }
    }

    /// Whether the answer must call a tool (so the prompt is given the call's start).
    pub fn forces_a_call(&self) -> bool {
        matches!(self, Self::Required | Self::Named(_))
    }

    /// The start of the call the answer is made to begin with (empty unless one is forced).
    pub fn call_head(&self) -> String {
        match self {
            Self::Required => "<tool_call>\n{\"name\": \"".into(),
            Self::Named(name) => {
                let name = Value::String(name.clone());
                format!("<tool_call>\n{{\"name\": {name}, \"arguments\": ")
            }
            Self::Auto | Self::None => String::new(),
        }
    }

    /// What goes after the rendered `prompt` so the answer starts with [`Self::call_head`]:
    /// an open `<think>` is closed first (a forced call skips reasoning).
    pub fn prompt_suffix(&self, prompt: &str) -> String {
        if !self.forces_a_call() {
            return String::new();
        }
        let close_think = if prompt.trim_end().ends_with("<think>") {
            "\n\n</think>\n\n"
        } else {
            ""
        };
        format!("{close_think}{}", self.call_head())
    }
}

fn invalid(message: String) -> ApiError {
    ApiError::invalid("tool_choice", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> Vec<Value> {
        vec![json!({"type": "function", "function": {"name": "add"}})]
    }

    #[test]
    fn every_form_of_tool_choice_is_read_and_checked() {
        let parse = |v: Value| ToolChoice::parse(Some(&v), Some(&tools()));
        assert_eq!(parse(json!("auto")).unwrap(), ToolChoice::Auto);
        assert_eq!(parse(json!("none")).unwrap(), ToolChoice::None);
        assert_eq!(parse(json!("required")).unwrap(), ToolChoice::Required);
        let named = json!({"type": "function", "function": {"name": "add"}});
        assert_eq!(parse(named).unwrap(), ToolChoice::Named("add".into()));
        assert_eq!(ToolChoice::parse(None, None).unwrap(), ToolChoice::Auto);
        for bad in [
            json!("always"),
            json!({"type": "function", "function": {"name": "mul"}}),
            json!({"type": "function"}),
            json!(3),
        ] {
            let err = parse(bad.clone()).unwrap_err();
            assert_eq!(err.param.as_deref(), Some("tool_choice"), "{bad}");
        }
        assert!(ToolChoice::parse(Some(&json!("required")), None).is_err());
    }

    #[test]
    fn a_forced_call_starts_the_answer_after_any_open_think() {
        let named = ToolChoice::Named("add".into());
        assert_eq!(
            named.prompt_suffix("<|im_start|>assistant\n"),
            "<tool_call>\n{\"name\": \"add\", \"arguments\": "
        );
        assert_eq!(
            ToolChoice::Required.prompt_suffix("assistant\n<think>\n"),
            "\n\n</think>\n\n<tool_call>\n{\"name\": \""
        );
        assert_eq!(ToolChoice::Auto.prompt_suffix("x"), "");
        assert_eq!(ToolChoice::None.call_head(), "");
    }
}
