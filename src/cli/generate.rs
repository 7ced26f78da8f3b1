//! The `generate`, `init` and `convert` subcommands (the thin `main` dispatches here).

use std::time::Instant;

use anyhow::Context;

use super::args::{ConvertArgs, GenerateArgs, InitArgs};
use super::common::{resolve_model, setup_device};
use crate::engine::recommended::recommended;
use crate::engine::sequence::context_needed;
use crate::engine::{BlockDecoder, Generation, GenerationParams, SpecialIds};
use crate::model::checkpoint::{self, SaveOptions};
use crate::model::tokenizer::{
    write_byte_tokenizer, ChatMessage, TextTokenizer, BYTE_SPECIAL_TOKENS,
};
use crate::model::{parse_dtype, SdarConfig};

/// `t3d generate`: decodes one prompt, prints the text, then one line of stats on stderr.
pub fn run_generate(args: &GenerateArgs) -> anyhow::Result<()> {
    let (device, kind) = setup_device(&args.device)?;
    let dir = resolve_model(args.model.as_deref(), args.revision.as_deref())?;
    let loaded = checkpoint::load(&dir, device, kind)?;
    let tokenizer = TextTokenizer::from_dir(&dir, &loaded.config)?;
    let cfg = &loaded.config;
    let mut params = args
        .decode
        .params(&recommended(cfg).map_err(anyhow::Error::msg)?);
    // Every EOS the checkpoint lists ends the text (SDAR-Chat: <|im_end|> too), as served.
    params.stop.add_eos_ids(&tokenizer.stop_ids);
    params.validate().map_err(anyhow::Error::msg)?;
    let prompt = prompt_ids(args, &tokenizer)?;
    let special = SpecialIds {
        eos: tokenizer.eos_id,
        mask: tokenizer.mask_id,
    };
    let start = Instant::now();
    let request = [(prompt, params.clone())];
    let capacity = context_needed(request[0].0.len(), &params);
    let (outputs, stats) = BlockDecoder::new(&loaded.model, special, Some(&tokenizer), 1, capacity)
        .with_cuda_graphs(args.device.cuda_graphs)
        .generate(&request)?;
    let seconds = start.elapsed().as_secs_f64();
    let out = &outputs[0];
    if args.json {
        let record = serde_json::json!({
            "text": out.text, "prompt_token_ids": request[0].0, "token_ids": out.tokens,
            "trajectory": out.trajectory, "finish_reason": out.finish_reason.as_str(),
            "forwards": stats.forwards, "cuda_graph_replays": stats.graph_replays,
        });
        println!("{record}");
    } else {
        println!("{}", out.text);
    }
    print_stats(&params, out, stats.forwards, seconds);
    Ok(())
}

/// The prompt's token ids, through the chat template with `--chat`.
fn prompt_ids(args: &GenerateArgs, tokenizer: &TextTokenizer) -> anyhow::Result<Vec<i64>> {
    let text = if args.chat {
        let msg = ChatMessage::new("user", &args.prompt);
        tokenizer.apply_chat_template(&[msg], true)?
    } else {
        args.prompt.clone()
    };
    let prompt = tokenizer.encode(&text)?;
    anyhow::ensure!(!prompt.is_empty(), "the prompt encodes to no tokens");
    Ok(prompt)
}

/// The one stats line of `generate`, on stderr.
fn print_stats(params: &GenerationParams, out: &Generation, forwards: u64, seconds: f64) {
    let d = &params.denoise;
    eprintln!(
        "[t3d] b={} S={} {} tokens={} forwards={} tokens/forward={:.2} tokens/s={:.1} finish={}",
        d.block_size,
        d.steps_per_block,
        d.policy(),
        out.tokens.len(),
        forwards,
        out.tokens.len() as f64 / forwards.max(1) as f64,
        out.tokens.len() as f64 / seconds,
        out.finish_reason.as_str()
    );
}

/// `t3d init`: writes a random-init SDAR checkpoint with a byte-level tokenizer.
pub fn run_init(args: &InitArgs) -> anyhow::Result<()> {
    let vocab = 256 + BYTE_SPECIAL_TOKENS.len() as i64;
    let mut config = SdarConfig::named_shape(&args.shape, vocab).map_err(anyhow::Error::msg)?;
    config.eos_token_id = Some(256.into());
    config.mask_token_id = Some(257);
    let kind = parse_dtype(&args.dtype, tch::Device::Cpu).map_err(anyhow::Error::msg)?;
    let loaded = checkpoint::random(&config, tch::Device::Cpu, kind, args.seed);
    let staging = tempfile::tempdir().context("creating a temporary directory")?;
    write_byte_tokenizer(staging.path())?;
    let opts = SaveOptions {
        tokenizer_from: Some(staging.path().to_path_buf()),
        ..SaveOptions::default()
    };
    checkpoint::save(&args.out, &loaded.vars, &config, &opts)?;
    eprintln!(
        "[t3d] wrote {} ({} parameters, shape {})",
        args.out.display(),
        config.num_parameters(),
        args.shape
    );
    Ok(())
}

/// `t3d convert`: the checkpoint rewritten with its weights in `--dtype`.
pub fn run_convert(args: &ConvertArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.dtype != "auto",
        "--dtype must name a dtype (f32, bf16 or f16)"
    );
    let kind = parse_dtype(&args.dtype, tch::Device::Cpu).map_err(anyhow::Error::msg)?;
    let bytes = crate::model::convert::convert(&args.model, &args.out, kind)?;
    eprintln!(
        "[t3d] wrote {} ({:.1} MB of {} weights)",
        args.out.display(),
        bytes as f64 / 1e6,
        args.dtype
    );
    Ok(())
}
