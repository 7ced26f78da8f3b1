//! A chat answer's text as OpenAI's `message` (whole responses) and `delta`s (streams):
//! `content`, `reasoning_content` and `tool_calls` from [`super::chat_output`]. A response with
//! a tool call finishes with `finish_reason: "tool_calls"` where the text would have said `stop`.

use serde_json::{json, Value};

use super::chat_output::{split, OutputParser, OutputParsing, Piece, ToolCall};

fn call_json(index: usize, call: &ToolCall) -> Value {
    json!({
        "index": index,
        "id": format!("call_{}", uuid::Uuid::new_v4().simple()),
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    })
}

/// The finish reason once `calls` tool calls were made.
pub fn finish_reason(finish: &str, calls: usize) -> &str {
    if calls > 0 && finish == "stop" {
        "tool_calls"
    } else {
        finish
    }
}

/// The whole answer `text` as a `message`, and its finish reason.
pub fn message(parsing: OutputParsing, text: &str, finish: &str) -> (Value, String) {
    let (mut content, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
    for piece in split(parsing, text) {
        match piece {
            Piece::Content(t) => content.push_str(&t),
            Piece::Reasoning(t) => reasoning.push_str(&t),
            Piece::ToolCall(call) => calls.push(call_json(calls.len(), &call)),
        }
    }
    let mut message = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        if content.trim().is_empty() {
            message["content"] = Value::Null;
        }
        message["tool_calls"] = json!(calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    let finish = finish_reason(finish, calls.len()).to_string();
    (message, finish)
}

/// One streamed answer: its parser and the calls made so far.
#[derive(Debug)]
pub struct DeltaStream {
    parser: OutputParser,
    /// Tool calls sent so far.
    pub calls: usize,
}

impl DeltaStream {
    /// The stream of one answer that was made to start with `prefix` (the head of a forced
    /// call: it opens a call, so reading it settles nothing to send).
    pub fn new(parsing: OutputParsing, prefix: &str) -> Self {
        let mut parser = OutputParser::new(parsing);
        parser.push(prefix);
        Self { parser, calls: 0 }
    }

    /// The `delta`s for the answer's next `text`; with `last`, everything still held too.
    pub fn deltas(&mut self, text: &str, last: bool) -> Vec<Value> {
        let mut pieces = self.parser.push(text);
        if last {
            pieces.extend(self.parser.finish());
        }
        pieces
            .into_iter()
            .map(|piece| match piece {
                Piece::Content(t) => json!({"content": t}),
                Piece::Reasoning(t) => json!({"reasoning_content": t}),
                Piece::ToolCall(call) => {
                    self.calls += 1;
                    json!({"tool_calls": [call_json(self.calls - 1, &call)]})
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: OutputParsing = OutputParsing {
        reasoning: true,
        starts_in_reasoning: false,
        tool_calls: true,
    };
    const ANSWER: &str = "<think>need add</think>\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1}}\n</tool_call>";

    #[test]
    fn a_whole_answer_becomes_openai_s_message() {
        let (message, finish) = message(ALL, ANSWER, "stop");
        assert_eq!(finish, "tool_calls");
        assert_eq!(message["content"], Value::Null);
        assert_eq!(message["reasoning_content"], "need add");
        let call = &message["tool_calls"][0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "add");
        assert_eq!(call["function"]["arguments"], r#"{"a":1}"#);
        assert!(call["id"].as_str().unwrap().starts_with("call_"));
        let (plain, finish) = super::message(OutputParsing::default(), ANSWER, "length");
        assert_eq!(
            (plain["content"].as_str(), finish.as_str()),
            (Some(ANSWER), "length")
        );
        assert!(plain.get("tool_calls").is_none() && plain.get("reasoning_content").is_none());
    }

    #[test]
    fn a_streamed_answer_becomes_the_same_deltas_in_order() {
        let mut stream = DeltaStream::new(ALL, "");
        let mut deltas = Vec::new();
        for chunk in ANSWER.as_bytes().chunks(5) {
            deltas.extend(stream.deltas(std::str::from_utf8(chunk).unwrap(), false));
        }
        deltas.extend(stream.deltas("", true));
        let reasoning: String = deltas
            .iter()
            .filter_map(|d| d["reasoning_content"].as_str())
            .collect();
        assert_eq!(reasoning, "need add");
        let calls: Vec<&Value> = deltas
            .iter()
            .filter(|d| d.get("tool_calls").is_some())
            .collect();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["tool_calls"][0]["function"]["name"], "add");
        assert_eq!(stream.calls, 1);
        assert!(
            deltas.iter().all(|d| d.get("content").is_none()),
            "{deltas:?}"
        );
    }
}
