//! The engine thread's loop (continuous batching): intake, cancellation, admission into free
//! KV slots, one forward per block-size group per iteration (prefills stepped apart), event
//! delivery with streaming text, retirement with per-request metrics.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use super::kv_cache::Admission;
use super::logprobs::TokenLogprob;
use super::request::{Completion, EngineEvent, EngineRequest, RunnerLimits, Shared};
use super::sequence::context_needed;
use super::text_stream::TextStream;
use super::{BlockDecoder, EngineError, FinishReason, GenerationParams, Sequence, SpecialIds};
use crate::metrics::Metrics;
use crate::model::{Sdar, TextTokenizer};

/// A running sequence with its delivery state.
struct Active {
    seq: Sequence,
    events: UnboundedSender<EngineEvent>,
    text: TextStream,
    enqueued: Instant,
    request_id: String,
    last_block: Option<Instant>,
    blocks: u32,
    failed: bool,
}

/// The engine thread's state: the decoder (model + KV cache) and the requests it serves.
pub(crate) struct Engine<'m> {
    decoder: BlockDecoder<'m>,
    special: SpecialIds,
    waiting: VecDeque<EngineRequest>,
    active: Vec<Active>,
    turn: usize,
    next_id: u64,
    metrics: Arc<Metrics>,
    shared: Arc<Shared>,
}

impl<'m> Engine<'m> {
    pub(crate) fn new(
        model: &'m Sdar,
        tokenizer: &'m TextTokenizer,
        limits: RunnerLimits,
        metrics: Arc<Metrics>,
        shared: Arc<Shared>,
    ) -> Self {
        let special = SpecialIds {
            eos: tokenizer.eos_id,
            mask: tokenizer.mask_id,
        };
        let decoder = BlockDecoder::with_cache(model, special, Some(tokenizer), limits.cache)
            .with_cuda_graphs(limits.cuda_graphs);
        // On a GPU the cache may hold fewer slots than asked (each is sized for the longest
        // context): report what it has.
        metrics.kv_slots_total.set(decoder.cache().slots() as i64);
        metrics.kv_pages_total.set(limits.cache.pages as i64);
        metrics.kv_page_size.set(limits.cache.page_size as i64);
        Self {
            decoder,
            special,
            waiting: VecDeque::new(),
            active: Vec::new(),
            turn: 0,
            next_id: 0,
            metrics,
            shared,
        }
    }

    /// Serves until every handle is dropped.
    pub(crate) fn run(mut self, rx: &Receiver<EngineRequest>) {
        match warm_up(self.decoder.model(), self.special) {
            Ok(()) => self.shared.ready.store(true, Ordering::SeqCst),
            Err(e) => tracing::error!(error = %e, "warm-up decode failed; not ready"),
        }
        self.shared.warmed.store(true, Ordering::SeqCst);
        loop {
            if self.active.is_empty() && self.waiting.is_empty() {
                match rx.recv() {
                    Ok(request) => self.waiting.push_back(request),
                    Err(_) => return, // every handle dropped: shut down
                }
            }
            while let Ok(request) = rx.try_recv() {
                self.waiting.push_back(request);
            }
            self.drop_cancelled();
            self.admit();
            self.step_one_group();
            self.publish_gauges();
        }
    }

    fn drop_cancelled(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|r| !r.events.is_closed());
        let gone = before - self.waiting.len();
        self.shared.waiting.fetch_sub(gone, Ordering::SeqCst);
        let metrics = self.metrics.clone();
        metrics
            .failures
            .with_label_values(&["cancelled"])
            .inc_by(gone as u64);
        let decoder = &mut self.decoder;
        self.active.retain_mut(|a| {
            if !a.events.is_closed() {
                return true;
            }
            decoder.release(&mut a.seq);
            tracing::info!(request_id = %a.request_id, "client went away; sequence cancelled");
            metrics.failures.with_label_values(&["cancelled"]).inc();
            false
        });
    }

    /// Admits waiting requests in arrival order while the cache can promise them their pages
    /// (one that never could fails at once).
    fn admit(&mut self) {
        while let Some(front) = self.waiting.front() {
            let needed = context_needed(front.prompt.len(), &front.params);
            if self.decoder.cache().admission(needed) == Admission::Wait {
                break;
            }
            let Some(request) = self.waiting.pop_front() else {
                break;
            };
            self.shared.waiting.fetch_sub(1, Ordering::SeqCst);
            self.metrics
                .queue_time
                .observe(request.enqueued.elapsed().as_secs_f64());
            self.metrics
                .prompt_tokens
                .observe(request.prompt.len() as f64);
            self.next_id += 1;
            let stops = request.params.stop.stop_strings.clone();
            let mut seq =
                Sequence::new(self.next_id, &request.prompt, request.params, self.special);
            if let Err(e) = self.decoder.admit(&mut seq) {
                self.metrics
                    .failures
                    .with_label_values(&["admission"])
                    .inc();
                let _ = request.events.send(EngineEvent::Error(e.to_string()));
                continue;
            }
            self.active.push(Active {
                seq,
                events: request.events,
                text: TextStream::new(&stops),
                enqueued: request.enqueued,
                request_id: request.request_id,
                last_block: None,
                blocks: 0,
                failed: false,
            });
        }
    }

    /// The block size whose turn it is (round robin over those running).
    fn next_block_size(&mut self) -> Option<usize> {
        let sizes: BTreeSet<usize> = self.active.iter().map(|a| a.seq.block_size()).collect();
        let size = sizes.iter().nth(self.turn % sizes.len().max(1)).copied();
        self.turn = self.turn.wrapping_add(1);
        size
    }

    fn step_one_group(&mut self) {
        let Some(block) = self.next_block_size() else {
            return;
        };
        // A sequence whose prompt is still to be prefilled needs many query rows; stepping it
        // apart keeps the running batch from being padded to the longest prompt.
        let (prefill, decode): (Vec<usize>, Vec<usize>) = (0..self.active.len())
            .filter(|&i| self.active[i].seq.block_size() == block)
            .partition(|&i| self.active[i].seq.query_len() > 2 * block);
        for members in [decode, prefill] {
            if !members.is_empty() {
                self.step_members(&members);
            }
        }
        self.retire_finished();
    }

    /// One forward for the active sequences at `members` (ascending indices, one block size).
    fn step_members(&mut self, members: &[usize]) {
        let span = tracing::debug_span!("engine_step", sequences = members.len());
        let _enter = span.enter();
        let started = Instant::now();
        let mut selected = vec![false; self.active.len()];
        for &i in members {
            selected[i] = true;
        }
        let result = {
            let mut group: Vec<&mut Sequence> = self
                .active
                .iter_mut()
                .zip(&selected)
                .filter(|(_, &chosen)| chosen)
                .map(|(a, _)| &mut a.seq)
                .collect();
            self.decoder.step(&mut group)
        };
        self.metrics
            .engine_step
            .observe(started.elapsed().as_secs_f64());
        self.metrics.engine_steps.inc();
        self.metrics.batch_size.observe(members.len() as f64);
        match result {
            Ok(outcomes) => {
                for (&i, outcome) in members.iter().zip(outcomes) {
                    self.deliver(i, outcome.committed, outcome.logprobs);
                }
            }
            Err(e) => self.fail(members, &e),
        }
    }

    fn deliver(&mut self, index: usize, committed: Vec<i64>, logprobs: Vec<TokenLogprob>) {
        if committed.is_empty() {
            return;
        }
        let metrics = &self.metrics;
        let a = &mut self.active[index];
        let now = Instant::now();
        match a.last_block {
            None => metrics
                .time_to_first_block
                .observe((now - a.enqueued).as_secs_f64()),
            Some(prev) => metrics
                .inter_block_latency
                .observe((now - prev).as_secs_f64()),
        }
        a.last_block = Some(now);
        a.blocks += 1;
        metrics
            .generated_tokens_total
            .inc_by(committed.len() as u64);
        let text = if a.seq.finish_reason().is_some() {
            String::new() // the final delta goes out with `Done`
        } else {
            a.text.ready(a.seq.text())
        };
        let _ = a.events.send(EngineEvent::Block {
            text,
            tokens: committed,
            logprobs,
        });
    }

    fn fail(&mut self, members: &[usize], error: &EngineError) {
        for &i in members {
            let a = &mut self.active[i];
            tracing::error!(request_id = %a.request_id, error = %error, "forward failed; request fails");
            a.seq.finish_now(FinishReason::Stop);
            self.metrics.failures.with_label_values(&["forward"]).inc();
            let _ = a.events.send(EngineEvent::Error(error.to_string()));
            a.failed = true;
        }
    }

    fn retire_finished(&mut self) {
        let metrics = self.metrics.clone();
        let decoder = &mut self.decoder;
        self.active.retain_mut(|a| {
            let Some(reason) = a.seq.finish_reason() else {
                return true;
            };
            decoder.release(&mut a.seq);
            if a.failed {
                return false;
            }
            let tokens = a.seq.completion().len();
            let forwards = a.seq.forwards();
            tracing::debug!(request_id = %a.request_id, tokens, forwards, reason = reason.as_str(), "finished");
            metrics
                .request_duration
                .observe(a.enqueued.elapsed().as_secs_f64());
            metrics.generation_tokens.observe(tokens as f64);
            metrics.forwards_per_request.observe(f64::from(forwards));
            metrics
                .tokens_per_forward
                .observe(tokens as f64 / f64::from(forwards.max(1)));
            metrics
                .steps_per_block
                .observe(f64::from(forwards) / f64::from(a.blocks.max(1)));
            let done = Completion {
                finish_reason: reason,
                text: a.text.finish(a.seq.text()),
                prompt_tokens: a.seq.prompt_len(),
                completion_tokens: tokens,
                forwards,
            };
            let _ = a.events.send(EngineEvent::Done(done));
            false
        });
    }

    fn publish_gauges(&self) {
        self.metrics.running.set(self.active.len() as i64);
        self.metrics.waiting.set(self.waiting.len() as i64);
        let cache = self.decoder.cache();
        self.metrics
            .kv_slots_used
            .set((cache.slots() - cache.free_slots()) as i64);
        self.metrics.kv_pages_used.set(cache.pages_in_use() as i64);
    }
}

/// Decodes one block of one token of prompt: proves the model runs before `/ready` says so.
fn warm_up(model: &Sdar, special: SpecialIds) -> Result<(), EngineError> {
    let mut params = GenerationParams::default();
    params.denoise.block_size = model.config().block_size.unwrap_or(4);
    params.denoise.steps_per_block = 1;
    params.stop.max_tokens = params.denoise.block_size;
    super::generate(model, special, None, &[(vec![special.eos], params)], 1).map(|_| ())
}
