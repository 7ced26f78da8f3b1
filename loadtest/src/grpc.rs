//! The same load over gRPC: each HTTP body the generator makes becomes the equivalent
//! `t3d.v1.GenerateRequest`, sent as a streaming `Generate`; time to first block is the first
//! block message, tokens come from the final usage.

use std::time::Instant;

use serde_json::Value;

use crate::stats::Sample;

/// Code generated from `proto/t3d/v1/generation.proto` (client only).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("t3d.v1");
}

use pb::generation_client::GenerationClient;

/// A connected client (cloned per worker; one HTTP/2 connection is shared).
pub type Client = GenerationClient<tonic::transport::Channel>;

/// Connects to `url` (`http://127.0.0.1:PORT`).
pub async fn connect(url: String) -> anyhow::Result<Client> {
    Ok(GenerationClient::connect(url).await?)
}

/// The gRPC request of an HTTP completion or chat body.
pub fn request_of(body: &Value) -> pb::GenerateRequest {
    use pb::generate_request::Prompt;
    let prompt = match (&body["prompt"], &body["messages"]) {
        (Value::String(text), _) => Prompt::Text(text.clone()),
        (Value::Array(ids), _) => Prompt::TokenIds(pb::TokenIds {
            ids: ids.iter().filter_map(Value::as_i64).collect(),
        }),
        (_, Value::Array(messages)) => Prompt::Chat(pb::ChatMessages {
            messages: messages
                .iter()
                .map(|m| pb::ChatMessage {
                    role: m["role"].as_str().unwrap_or_default().into(),
                    content: m["content"].as_str().unwrap_or_default().into(),
                    name: String::new(),
                })
                .collect(),
        }),
        _ => Prompt::Text(String::new()),
    };
    let uint = |k: &str| body[k].as_u64().map(|v| v as u32);
    pb::GenerateRequest {
        prompt: Some(prompt),
        max_tokens: uint("max_tokens"),
        temperature: body["temperature"].as_f64(),
        block_size: uint("block_size"),
        steps_per_block: uint("steps_per_block"),
        ignore_eos: body["ignore_eos"].as_bool(),
        remasking: body["remasking"].as_str().map(str::to_string),
        ..Default::default()
    }
}

/// One streaming `Generate` call.
pub async fn one_request(client: &mut Client, body: &Value, api_key: Option<&str>) -> Sample {
    let start = Instant::now();
    let failed = |why: String| Sample::failed(start.elapsed(), why);
    let mut request = tonic::Request::new(request_of(body));
    if let Some(key) = api_key {
        match format!("Bearer {key}").parse() {
            Ok(value) => {
                request.metadata_mut().insert("authorization", value);
            }
            Err(_) => return failed("bad API key".into()),
        }
    }
    let mut stream = match client.generate(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return failed(format!("gRPC {:?}", status.code())),
    };
    let (mut first, mut tokens) = (None, 0);
    loop {
        match stream.message().await {
            Ok(Some(message)) => match message.event {
                Some(pb::generate_response::Event::Block(_)) if first.is_none() => {
                    first = Some(start.elapsed());
                }
                Some(pb::generate_response::Event::Usage(u)) => {
                    tokens = u.completion_tokens as usize
                }
                _ => {}
            },
            Ok(None) => break,
            Err(status) => return failed(format!("gRPC {:?}", status.code())),
        }
    }
    Sample::ok(
        first.unwrap_or_else(|| start.elapsed()),
        start.elapsed(),
        tokens,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn http_bodies_become_the_same_grpc_requests() {
        let r = request_of(
            &json!({"prompt": [1, 2, 3], "max_tokens": 64, "temperature": 0,
            "steps_per_block": 4, "ignore_eos": true}),
        );
        assert_eq!(
            r.prompt,
            Some(pb::generate_request::Prompt::TokenIds(pb::TokenIds {
                ids: vec![1, 2, 3]
            }))
        );
        assert_eq!((r.max_tokens, r.temperature), (Some(64), Some(0.0)));
        assert_eq!((r.steps_per_block, r.ignore_eos), (Some(4), Some(true)));
        let chat = request_of(&json!({"messages": [{"role": "user", "content": "1+2"}]}));
        match chat.prompt {
            Some(pb::generate_request::Prompt::Chat(c)) => assert_eq!(c.messages[0].content, "1+2"),
            other => panic!("{other:?}"),
        }
    }
}
