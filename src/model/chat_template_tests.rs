use super::*;
use serde_json::json;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn the_jinja_file_wins_over_tokenizer_config_which_wins_over_the_built_in() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = [ChatMessage::new("user", "hi")];
    let opts = RenderOptions::default();
    let builtin = ChatTemplate::find(dir.path(), &json!({}), "</s>").unwrap();
    assert_eq!(builtin.source(), TemplateSource::BuiltIn);
    assert_eq!(
        builtin.render(&msgs, &opts).unwrap(),
        "<|im_start|>user\nhi<|im_end|>\n"
    );

    let named = json!({"chat_template": [{"name": "tool_use", "template": "T"},
                                         {"name": "default", "template": "D{{ messages[0].content }}"}]});
    let from_list = ChatTemplate::find(dir.path(), &named, "</s>").unwrap();
    assert_eq!(from_list.source(), TemplateSource::TokenizerConfig);
    assert_eq!(from_list.render(&msgs, &opts).unwrap(), "Dhi");

    write(
        dir.path(),
        CHAT_TEMPLATE_FILE,
        "F{{ messages[0].content }}{{ eos_token }}",
    );
    let config = json!({"chat_template": "C"});
    let from_file = ChatTemplate::find(dir.path(), &config, "</s>").unwrap();
    assert_eq!(from_file.source(), TemplateSource::File);
    assert_eq!(from_file.render(&msgs, &opts).unwrap(), "Fhi</s>");
}

#[test]
fn blocks_trim_and_strip_whitespace_as_transformers_sets_jinja2() {
    // jinja2 with trim_blocks + lstrip_blocks: the newline after a block tag goes, and so does
    // the indentation before a block tag that starts a line.
    let text = "{% for m in messages %}\n    {% if m.role == 'user' %}\n  [{{ m.content }}]\n    {% endif %}\n{% endfor %}\nend";
    let tmpl = ChatTemplate::compile(text.into(), TemplateSource::File, "").unwrap();
    let msgs = [
        ChatMessage::new("user", "a"),
        ChatMessage::new("system", "b"),
    ];
    assert_eq!(
        tmpl.render(&msgs, &RenderOptions::default()).unwrap(),
        "  [a]\nend"
    );
}

#[test]
fn tojson_writes_what_python_json_dumps_writes() {
    let value = json!({"name": "get_weather", "parameters": {"type": "object", "required": ["city"],
                       "properties": {"city": {"type": "string", "description": "Zürich <or> \"Bern\""}}},
                       "strict": false, "n": 1.5, "none": null, "empty": {}, "list": []});
    let mut compact = String::new();
    python_dumps(&value, None, 0, &mut compact);
    // json.dumps(value, ensure_ascii=False), by hand.
    assert_eq!(
        compact,
        r#"{"name": "get_weather", "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string", "description": "Zürich <or> \"Bern\""}}}, "strict": false, "n": 1.5, "none": null, "empty": {}, "list": []}"#
    );
    let mut indented = String::new();
    python_dumps(
        &json!({"a": [1, {"b": null}], "c": {}}),
        Some(2),
        0,
        &mut indented,
    );
    assert_eq!(
        indented,
        "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": {}\n}"
    );
    let tmpl = ChatTemplate::compile(
        "{% for t in tools %}{{ t | tojson }}|{{ t | tojson(indent=1) }}{% endfor %}".into(),
        TemplateSource::File,
        "",
    )
    .unwrap();
    let tools = [json!({"type": "function", "function": {"name": "f"}})];
    let opts = RenderOptions {
        tools: Some(&tools),
        ..RenderOptions::default()
    };
    assert_eq!(
        tmpl.render(&[], &opts).unwrap(),
        "{\"type\": \"function\", \"function\": {\"name\": \"f\"}}|{\n \"type\": \"function\",\n \"function\": {\n  \"name\": \"f\"\n }\n}"
    );
    assert!(tmpl.renders_tools());
}

#[test]
fn kwargs_and_optional_message_fields_reach_the_template() {
    let text = "{% for m in messages %}{{ m.role }}:{% if m.reasoning_content is defined %}<think>{{ m.reasoning_content }}</think>{% endif %}{{ m.content }}{% if m.tool_calls %}{{ m.tool_calls[0].function.name }}{% endif %};{% endfor %}{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>{% endif %}";
    let tmpl = ChatTemplate::compile(text.into(), TemplateSource::File, "").unwrap();
    let mut assistant = ChatMessage::new("assistant", "4");
    assistant.reasoning_content = Some("2+2".into());
    assistant.tool_calls = Some(vec![
        json!({"type": "function", "function": {"name": "calc", "arguments": "{}"}}),
    ]);
    let msgs = [ChatMessage::new("user", "2+2?"), assistant];
    let kwargs: Map<String, Value> = [("enable_thinking".to_string(), json!(false))]
        .into_iter()
        .collect();
    let opts = RenderOptions {
        kwargs: Some(&kwargs),
        ..RenderOptions::default()
    };
    assert_eq!(
        tmpl.render(&msgs, &opts).unwrap(),
        "user:2+2?;assistant:<think>2+2</think>4calc;<think>\n\n</think>"
    );
    assert_eq!(
        tmpl.render(&msgs, &RenderOptions::default()).unwrap(),
        "user:2+2?;assistant:<think>2+2</think>4calc;"
    );
    assert!(!tmpl.renders_tools());
}

#[test]
fn raise_exception_becomes_an_error_naming_the_template() {
    let tmpl = ChatTemplate::compile(
        "{{ raise_exception('roles must alternate') }}".into(),
        TemplateSource::File,
        "",
    )
    .unwrap();
    let e = tmpl
        .render(&[], &RenderOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("chat template") && e.contains("roles must alternate"),
        "{e}"
    );
}
