//! Chat requests (pure apart from the template render): the chat-only fields of a body
//! (`messages`, `tools`, `tool_choice`, `chat_template_kwargs`), OpenAI messages to template
//! messages, the rendered prompt, and what the answer splits into ([`output_parsing`]).

use serde_json::{Map, Value};

use super::chat_output::{OutputParsing, Parsers};
use super::error::ApiError;
use super::schema::{ChatInput, InputMessage, MessageContent};
use super::tool_choice::ToolChoice;
use super::validate::{parse_field, parse_optional_field};
use crate::model::tokenizer::{ChatMessage, RenderOptions};
use crate::model::TextTokenizer;

/// Body fields only the chat endpoint accepts.
pub const CHAT_FIELDS: [&str; 4] = ["messages", "tools", "tool_choice", "chat_template_kwargs"];

/// Most tool definitions per request.
pub const MAX_TOOLS: usize = 128;

/// Reads the chat-only fields of a checked body.
pub fn chat_input(body: &Value) -> Result<ChatInput, ApiError> {
    let tools: Option<Vec<Value>> = parse_optional_field(body, "tools")?;
    if let Some(tools) = &tools {
        check_tools(tools)?;
    }
    let tool_choice = ToolChoice::parse(body.get("tool_choice"), tools.as_deref())?;
    Ok(ChatInput {
        messages: parse_field(body, "messages")?,
        tools,
        template_kwargs: parse_optional_field::<Map<String, Value>>(body, "chat_template_kwargs")?,
        tool_choice,
    })
}

fn check_tools(tools: &[Value]) -> Result<(), ApiError> {
    if tools.len() > MAX_TOOLS {
        return Err(ApiError::invalid(
            "tools",
            format!("at most {MAX_TOOLS} tools"),
        ));
    }
    for (i, tool) in tools.iter().enumerate() {
        let named = tool["function"]["name"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        if tool["type"] != "function" || !named {
            return Err(ApiError::invalid(
                "tools",
                format!(
                    "tools[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\": …}}}}"
                ),
            ));
        }
        let name = tool["function"]["name"].as_str().unwrap_or_default();
        let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if name.len() > 64 || !name.chars().all(allowed) {
            return Err(ApiError::invalid(
                "tools",
                format!("tools[{i}]: a function name is 1 to 64 of a-z, A-Z, 0-9, _ and -"),
            ));
        }
    }
    Ok(())
}

/// What an answer to `input` splits into, given its rendered `prompt`: `<think>` reasoning if
/// the parsers say so (for `auto`: the template knows it; the answer starts inside it if the
/// prompt opened it), tool calls if the request gave tools, did not say `tool_choice: "none"`,
/// and the parsers say so (for `auto`: the template writes calls in the `<tool_call>` form).
pub fn output_parsing(
    tokenizer: &TextTokenizer,
    parsers: &Parsers,
    input: &ChatInput,
    prompt: &str,
) -> OutputParsing {
    let (thinks, writes_calls) = tokenizer.chat_template_conventions();
    let reasoning = parsers.reasoning(thinks);
    OutputParsing {
        reasoning,
        starts_in_reasoning: reasoning && prompt.trim_end().ends_with("<think>"),
        tool_calls: parsers.tool_calls(writes_calls)
            && input.tool_choice != ToolChoice::None
            && input.tools.as_ref().is_some_and(|t| !t.is_empty()),
    }
}

/// The prompt of `input` for a model whose answers `parsing` splits, and the text the answer is
/// made to start with (the head of a call `tool_choice` forces; empty otherwise). A forced call
/// needs a tool-call parser.
pub fn forced_call(
    input: &ChatInput,
    mut prompt: String,
    parsing: &mut OutputParsing,
) -> Result<(String, String), ApiError> {
    if !input.tool_choice.forces_a_call() {
        return Ok((prompt, String::new()));
    }
    if !parsing.tool_calls {
        return Err(ApiError::invalid(
            "tool_choice",
            "this model's answers are not parsed for tool calls (see --tool-call-parser)",
        ));
    }
    prompt.push_str(&input.tool_choice.prompt_suffix(&prompt));
    parsing.starts_in_reasoning = false;
    Ok((prompt, input.tool_choice.call_head()))
}

/// The prompt text of `input` under `tokenizer`'s chat template.
pub fn render(tokenizer: &TextTokenizer, input: &ChatInput) -> Result<String, ApiError> {
    if input.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages",
            "`messages` must not be empty",
        ));
    }
    if input.tools.is_some() && !tokenizer.chat_template_renders_tools() {
        return Err(ApiError::invalid(
            "tools",
            "this model's chat template does not render tools",
        ));
    }
    let messages = input
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| template_message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let opts = RenderOptions {
        add_generation_prompt: true,
        tools: input.tools.as_deref(),
        kwargs: input.template_kwargs.as_ref(),
    };
    tokenizer
        .render_chat(&messages, &opts)
        .map_err(|e| ApiError::invalid("messages", e.to_string()))
}

/// One OpenAI message as the template sees it (`developer` is rendered as `system`).
fn template_message(i: usize, m: &InputMessage) -> Result<ChatMessage, ApiError> {
    let role = match m.role.as_str() {
        "developer" => "system",
        r @ ("system" | "user" | "assistant" | "tool") => r,
        other => {
            return Err(ApiError::invalid(
                "messages",
                format!(
                "messages[{i}].role `{other}` must be system, developer, user, assistant or tool"
            ),
            ))
        }
    };
    let content = match &m.content {
        Some(MessageContent::Text(t)) => t.clone(),
        Some(MessageContent::Parts(parts)) => {
            if let Some(p) = parts.iter().find(|p| p.kind != "text") {
                return Err(ApiError::invalid(
                    "messages",
                    format!("content parts of type `{}` are not supported", p.kind),
                ));
            }
            parts.iter().map(|p| p.text.as_str()).collect()
        }
        None if role == "assistant" && m.tool_calls.is_some() => String::new(),
        None => {
            return Err(ApiError::invalid(
                "messages",
                format!("messages[{i}].content is required"),
            ))
        }
    };
    if m.tool_calls.is_some() && role != "assistant" {
        return Err(ApiError::invalid(
            "messages",
            format!("messages[{i}]: only assistant messages carry tool_calls"),
        ));
    }
    Ok(ChatMessage {
        role: role.into(),
        content,
        reasoning_content: m.reasoning_content.clone(),
        tool_calls: m.tool_calls.clone(),
        tool_call_id: m.tool_call_id.clone(),
        name: m.name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_fields_are_read_and_checked() {
        let body = json!({"messages": [{"role": "user", "content": "hi"}],
                          "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
                          "tool_choice": "auto", "chat_template_kwargs": {"enable_thinking": false}});
        let input = chat_input(&body).unwrap();
        assert_eq!(input.messages, vec![InputMessage::text("user", "hi")]);
        assert_eq!(input.tools.as_ref().map(Vec::len), Some(1));
        assert_eq!(
            input.template_kwargs.unwrap()["enable_thinking"],
            json!(false)
        );
        let bad = [
            (
                json!({"messages": [], "tools": [{"type": "function"}]}),
                "tools",
            ),
            (
                json!({"messages": [], "tools": {"type": "function"}}),
                "tools",
            ),
            (
                json!({"messages": [], "tool_choice": "required"}),
                "tool_choice",
            ),
            (
                json!({"messages": [], "tools": [{"type": "function", "function": {"name": "f"}}],
                       "tool_choice": {"type": "function", "function": {"name": "g"}}}),
                "tool_choice",
            ),
            (
                json!({"messages": [], "chat_template_kwargs": [1]}),
                "chat_template_kwargs",
            ),
            (json!({"messages": [{"role": "user"}]}), "messages"),
        ];
        for (body, param) in bad {
            let err = chat_input(&body)
                .and_then(|i| template_message(0, &i.messages[0]).map(|_| i))
                .unwrap_err();
            assert_eq!(err.param.as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn openai_messages_become_template_messages() {
        let call =
            json!({"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}});
        let assistant: InputMessage = serde_json::from_value(json!(
            {"role": "assistant", "content": null, "tool_calls": [call], "reasoning_content": "think"}))
        .unwrap();
        let m = template_message(0, &assistant).unwrap();
        assert_eq!(
            (m.content.as_str(), m.reasoning_content.as_deref()),
            ("", Some("think"))
        );
        let developer = template_message(0, &InputMessage::text("developer", "be brief")).unwrap();
        assert_eq!(developer.role, "system");
        let tool: InputMessage =
            serde_json::from_value(json!({"role": "tool", "content": "21", "tool_call_id": "c1"}))
                .unwrap();
        assert_eq!(
            template_message(1, &tool).unwrap().tool_call_id.as_deref(),
            Some("c1")
        );
        let err = template_message(2, &InputMessage::text("robot", "x")).unwrap_err();
        assert!(err.message.contains("messages[2].role"), "{}", err.message);
        let mut user_call = InputMessage::text("user", "x");
        user_call.tool_calls = Some(vec![]);
        assert!(template_message(0, &user_call).is_err());
    }
}
