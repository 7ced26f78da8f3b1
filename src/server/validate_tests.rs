use super::*;
use crate::engine::Remasking;
use serde_json::json;

fn limits() -> Limits {
    Limits {
        served_model: "m".into(),
        max_input_tokens: 100,
        max_total_tokens: 128,
        decoding: DenoiseParams::default(),
        sampling: SamplingDefaults::default(),
        eos_ids: vec![2, 0],
        added_tokens: [("<|im_end|>".to_string(), 2), ("<think>".to_string(), 7)].into(),
        vocab_size: 50,
    }
}

fn params(body: Value) -> Result<Validated, ApiError> {
    check_fields(&body, &["prompt"])?;
    let p: CommonParams = parse(body)?;
    validate(&p, 10, &limits())
}

#[test]
fn defaults_follow_openai_and_the_model() {
    let v = params(json!({"model": "m"})).unwrap();
    assert_eq!(v.params.sampling.temperature, 1.0);
    assert_eq!(
        v.params.stop.max_tokens, 118,
        "the room left, capped at 256"
    );
    assert_eq!(
        (
            v.params.denoise.block_size,
            v.params.denoise.steps_per_block
        ),
        (4, 4)
    );
    assert_eq!((v.n, v.stream, v.include_usage), (1, false, false));
    let v = params(
        json!({"block_size": 2, "steps_per_block": 1, "remasking": "low_confidence_dynamic",
                          "stream": true, "stream_options": {"include_usage": true}, "top_k": -1,
                          "stop": "#", "seed": 3, "n": 2, "presence_penalty": 0, "logprobs": null}),
    )
    .unwrap();
    assert_eq!(v.params.denoise.remasking, Remasking::LowConfidenceDynamic);
    assert_eq!(v.params.stop.stop_strings, vec!["#".to_string()]);
    assert_eq!(
        (v.n, v.stream, v.include_usage, v.params.sampling.top_k),
        (2, true, true, 0)
    );
}

#[test]
fn the_models_recommended_decoding_is_the_default_and_requests_override_it() {
    let mut limits = limits();
    limits.decoding = DenoiseParams {
        remasking: Remasking::LowConfidenceDynamic,
        confidence_threshold: 0.7,
        ..DenoiseParams::default()
    };
    let with = |body: Value| {
        let p: CommonParams = parse(body).unwrap();
        validate(&p, 10, &limits).unwrap().params.denoise
    };
    let d = with(json!({}));
    assert_eq!(
        (d.remasking, d.confidence_threshold, d.steps_per_block),
        (Remasking::LowConfidenceDynamic, 0.7, 4)
    );
    let d = with(
        json!({"remasking": "low_confidence_static", "steps_per_block": 2,
                        "confidence_threshold": 0.95}),
    );
    assert_eq!(
        (d.remasking, d.confidence_threshold, d.steps_per_block),
        (Remasking::LowConfidenceStatic, 0.95, 2)
    );
}

#[test]
fn bad_values_name_their_parameter() {
    let cases = [
        (json!({"temperature": 3.0}), "temperature"),
        (json!({"temperature": "hot"}), "temperature"),
        (json!({"max_tokens": -1}), "max_tokens"),
        (json!({"max_tokens": 119}), "max_tokens"),
        (json!({"top_p": 0}), "top_p"),
        (json!({"n": 9}), "n"),
        (json!({"block_size": 3}), "block_size"),
        (json!({"steps_per_block": 8}), "steps_per_block"),
        (json!({"remasking": "magic"}), "remasking"),
        (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
        (json!({"stop": [""]}), "stop"),
        (json!({"logprobs": 21}), "logprobs"),
        (json!({"logprobs": "yes"}), "logprobs"),
        (json!({"top_logprobs": 3}), "top_logprobs"),
        (
            json!({"logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
        ),
        (json!({"min_p": 1.5}), "min_p"),
        (json!({"presence_penalty": 2.5}), "presence_penalty"),
        (json!({"repetition_penalty": 0}), "repetition_penalty"),
        (json!({"entropy_bound": -1}), "entropy_bound"),
        (json!({"echo": true}), "echo"),
        (json!({"tools": [{"type": "function"}]}), "tools"),
        (
            json!({"response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (json!({"frequency_penalty": -3}), "frequency_penalty"),
        (json!({"temprature": 0.5}), "temprature"),
        (
            json!({"stream_options": {"include_usage": true}}),
            "stream_options",
        ),
        (
            json!({"stream": false, "stream_options": {}}),
            "stream_options",
        ),
    ];
    for (body, param) in cases {
        let err = params(body.clone()).unwrap_err();
        assert_eq!(err.status, 400, "{body}");
        assert_eq!(err.param.as_deref(), Some(param), "{body}: {}", err.message);
    }
}

#[test]
fn unknown_models_and_long_prompts_are_refused() {
    let err = params(json!({"model": "gpt-4"})).unwrap_err();
    assert_eq!(
        (err.status.as_u16(), err.code),
        (404, Some("model_not_found"))
    );
    let p = CommonParams::default();
    assert_eq!(
        validate(&p, 101, &limits()).unwrap_err().param.as_deref(),
        Some("prompt")
    );
    assert_eq!(
        validate(&p, 0, &limits()).unwrap_err().param.as_deref(),
        Some("prompt")
    );
    assert!(check_fields(&json!([1, 2]), &[]).is_err());
}

#[test]
fn every_eos_stops_unless_ignored_and_special_token_stops_become_ids() {
    let v = params(json!({})).unwrap();
    assert_eq!(
        v.params.stop.stop_token_ids,
        vec![2, 0],
        "the model's EOS list"
    );
    let v = params(json!({"stop_token_ids": [9, 2], "stop": ["<think>", "##"]})).unwrap();
    assert_eq!(v.params.stop.stop_token_ids, vec![9, 2, 7, 0]);
    assert_eq!(v.params.stop.stop_strings, vec!["##".to_string()]);
    let v = params(json!({"ignore_eos": true, "stop": "<|im_end|>"})).unwrap();
    assert_eq!(
        v.params.stop.stop_token_ids,
        vec![2],
        "ignore_eos drops the EOS ids, not what the request asks for"
    );
    for bad in [
        json!({"stop_token_ids": [50]}),
        json!({"stop_token_ids": [-1]}),
        json!({"stop_token_ids": vec![1; 17]}),
        json!({"stop_token_ids": "2"}),
    ] {
        let err = params(bad.clone()).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("stop_token_ids"), "{bad}");
    }
}

#[test]
fn the_model_sampling_defaults_apply_to_fields_left_out() {
    let mut l = limits();
    l.sampling = SamplingDefaults {
        temperature: 0.6,
        top_p: 0.95,
        top_k: 20,
    };
    let p: CommonParams = parse(json!({"top_p": 0.5})).unwrap();
    let s = validate(&p, 10, &l).unwrap().params.sampling;
    assert_eq!((s.temperature, s.top_p, s.top_k), (0.6, 0.5, 20));
}

#[test]
fn logprobs_penalties_min_p_and_entropy_bound_reach_the_engine() {
    let v = params(json!({"logprobs": 3})).unwrap();
    assert_eq!(v.params.sampling.logprobs, Some(3), "completions' count");
    let v = params(json!({"logprobs": true, "top_logprobs": 5, "logprob_steps": true})).unwrap();
    assert_eq!(
        (v.params.sampling.logprobs, v.logprob_steps),
        (Some(5), true)
    );
    assert_eq!(
        params(json!({"logprobs": true}))
            .unwrap()
            .params
            .sampling
            .logprobs,
        Some(0)
    );
    assert_eq!(
        params(json!({"logprobs": false}))
            .unwrap()
            .params
            .sampling
            .logprobs,
        None
    );
    let v = params(
        json!({"min_p": 0.1, "presence_penalty": 0.5, "frequency_penalty": -0.25,
                          "repetition_penalty": 1.2, "entropy_bound": 0.8,
                          "remasking": "entropy_bounded"}),
    )
    .unwrap();
    let s = &v.params.sampling;
    assert_eq!(s.min_p, 0.1);
    assert_eq!(
        (
            s.penalties.presence,
            s.penalties.frequency,
            s.penalties.repetition
        ),
        (0.5, -0.25, 1.2)
    );
    assert_eq!(v.params.denoise.entropy_bound, 0.8);
    assert_eq!(
        params(json!({})).unwrap().params.denoise.entropy_bound,
        0.35
    );
}
