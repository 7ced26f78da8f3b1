//! The splitter on plain strings: every part, malformed calls, unterminated parts, and every
//! cut of the text into two pieces giving the same result as the whole.

use super::*;

const ALL: OutputParsing = OutputParsing {
    reasoning: true,
    starts_in_reasoning: false,
    tool_calls: true,
};

fn content(t: &str) -> Piece {
    Piece::Content(t.into())
}

fn call(name: &str, arguments: &str) -> Piece {
    Piece::ToolCall(ToolCall {
        name: name.into(),
        arguments: arguments.into(),
    })
}

/// `text` pushed in two pieces cut at every byte, pieces of the same kind merged.
fn every_cut(parsing: OutputParsing, text: &str) {
    let whole = split(parsing, text);
    for cut in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
        let mut parser = OutputParser::new(parsing);
        let mut pieces = Vec::new();
        for piece in parser
            .push(&text[..cut])
            .into_iter()
            .chain(parser.push(&text[cut..]))
            .chain(parser.finish())
        {
            push_text(&mut pieces, piece);
        }
        assert_eq!(pieces, whole, "cut at {cut} of {text:?}");
    }
}

#[test]
fn reasoning_then_content() {
    let text = "<think>\nadd them\n</think>\n\nThe sum is 15.";
    assert_eq!(
        split(ALL, text),
        vec![
            Piece::Reasoning("\nadd them\n".into()),
            content("The sum is 15.")
        ]
    );
    every_cut(ALL, text);
}

#[test]
fn a_prompt_that_opened_the_reasoning() {
    let parsing = OutputParsing {
        starts_in_reasoning: true,
        ..ALL
    };
    let text = "weighing it</think>Yes.";
    assert_eq!(
        split(parsing, text),
        vec![Piece::Reasoning("weighing it".into()), content("Yes.")]
    );
    every_cut(parsing, text);
}

#[test]
fn unterminated_reasoning_stays_reasoning() {
    let text = "<think>still thinking";
    assert_eq!(
        split(ALL, text),
        vec![Piece::Reasoning("still thinking".into())]
    );
    every_cut(ALL, text);
}

#[test]
fn several_calls_with_text_around_them() {
    let text = "Let me add.\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": \"{}\"}\n</tool_call>";
    assert_eq!(
        split(ALL, text),
        vec![
            content("Let me add.\n"),
            call("add", r#"{"a":1,"b":2}"#),
            content("\n"),
            call("now", "{}"),
        ]
    );
    every_cut(ALL, text);
}

#[test]
fn a_malformed_call_stays_text() {
    let text = "<tool_call>{\"name\": add}</tool_call> done";
    assert_eq!(
        split(ALL, text),
        vec![content("<tool_call>{\"name\": add}</tool_call> done")]
    );
    every_cut(ALL, text);
    let unterminated = "<tool_call>{\"name\": \"add\", \"arguments\": {\"a\": 1}}";
    assert_eq!(split(ALL, unterminated), vec![call("add", r#"{"a":1}"#)]);
    assert_eq!(
        split(ALL, "<tool_call>{\"na"),
        vec![content("<tool_call>{\"na")]
    );
    every_cut(ALL, unterminated);
}

#[test]
fn tags_stay_text_when_their_parser_is_off() {
    let text = "<think>x</think><tool_call>{\"name\": \"a\"}</tool_call>";
    assert_eq!(split(OutputParsing::default(), text), vec![content(text)]);
    every_cut(OutputParsing::default(), text);
    // A `<think>` after the answer began is text too.
    let late = "Answer <think>no</think>";
    assert_eq!(split(ALL, late), vec![content(late)]);
    every_cut(ALL, late);
}

#[test]
fn partial_tags_are_held_only_while_they_can_complete() {
    let mut parser = OutputParser::new(ALL);
    assert_eq!(parser.push("a <tool_"), vec![content("a ")]);
    assert_eq!(parser.push("box>"), vec![content("<tool_box>")]);
    assert_eq!(parser.push("é<"), vec![content("é")]);
    assert_eq!(parser.finish(), vec![content("<")]);
}
