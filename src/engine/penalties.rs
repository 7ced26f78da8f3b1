//! Presence, frequency and repetition penalties over the tokens a sequence has written, as
//! OpenAI and vLLM define them: presence and frequency subtract from the logits of tokens in the
//! completion so far (once, and once per occurrence); repetition divides a positive logit (or
//! multiplies a negative one) of every token seen in the prompt or the completion. The pure part
//! turns a sequence's tokens into per-token adjustments; [`StagedPenalties`] carries them to the
//! device in the step's one upload and applies them to the step's logits.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::transfer::{Segment, Upload, Uploaded};

/// A request's penalties (all off by default).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Penalties {
    /// Subtracted once from the logit of every token the completion already holds.
    pub presence: f64,
    /// Subtracted from a token's logit once per time the completion holds it.
    pub frequency: f64,
    /// Divides positive logits (multiplies negative ones) of tokens in the prompt or completion;
    /// 1 = off.
    pub repetition: f64,
}

impl Default for Penalties {
    fn default() -> Self {
        Self {
            presence: 0.0,
            frequency: 0.0,
            repetition: 1.0,
        }
    }
}

impl Penalties {
    /// Whether any penalty changes logits.
    pub fn active(&self) -> bool {
        self.presence != 0.0 || self.frequency != 0.0 || self.repetition != 1.0
    }
}

/// How one token's logit changes: `(logit > 0 ? logit / repetition : logit · repetition) −
/// subtract`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenPenalty {
    /// Token id.
    pub token: i64,
    /// Presence + frequency · count.
    pub subtract: f32,
    /// Repetition factor (1 = none).
    pub repetition: f32,
}

/// The adjustments `penalties` make for a sequence with `prompt` and `written` (completion)
/// tokens, one per distinct token, in id order.
pub fn token_penalties(
    penalties: &Penalties,
    prompt: &[i64],
    written: &[i64],
) -> Vec<TokenPenalty> {
    let mut counts: BTreeMap<i64, u32> = BTreeMap::new();
    for &t in written {
        *counts.entry(t).or_default() += 1;
    }
    if penalties.repetition != 1.0 {
        for &t in prompt {
            counts.entry(t).or_default();
        }
    }
    counts
        .into_iter()
        .map(|(token, count)| {
            let seen_in_output = count > 0;
            let subtract = if seen_in_output {
                penalties.presence + penalties.frequency * f64::from(count)
            } else {
                0.0
            };
            TokenPenalty {
                token,
                subtract: subtract as f32,
                repetition: penalties.repetition as f32,
            }
        })
        .filter(|p| p.subtract != 0.0 || p.repetition != 1.0)
        .collect()
}

/// A step's penalties, staged into its upload: (row, token, subtract, repetition) entries.
#[derive(Debug, Clone, Copy)]
pub struct StagedPenalties {
    rows: Segment,
    tokens: Segment,
    subtract: Segment,
    repetition: Segment,
}

impl StagedPenalties {
    /// Stages `per_row` (each logits row and its adjustments); `None` when no row has any.
    pub fn stage(upload: &mut Upload, per_row: &[(usize, &[TokenPenalty])]) -> Option<Self> {
        let entries: Vec<(i64, TokenPenalty)> = per_row
            .iter()
            .flat_map(|(row, list)| list.iter().map(move |p| (*row as i64, *p)))
            .collect();
        if entries.is_empty() {
            return None;
        }
        let rows: Vec<i64> = entries.iter().map(|e| e.0).collect();
        let tokens: Vec<i64> = entries.iter().map(|e| e.1.token).collect();
        let subtract: Vec<f32> = entries.iter().map(|e| e.1.subtract).collect();
        let repetition: Vec<f32> = entries.iter().map(|e| e.1.repetition).collect();
        Some(Self {
            rows: upload.push_i64(&rows),
            tokens: upload.push_i64(&tokens),
            subtract: upload.push_f32(&subtract),
            repetition: upload.push_f32(&repetition),
        })
    }

    /// `logits` `(R, V)` with the staged adjustments applied (a new tensor).
    pub fn apply(&self, logits: &Tensor, uploaded: &Uploaded) -> Tensor {
        let index = [
            Some(uploaded.get(self.rows)),
            Some(uploaded.get(self.tokens)),
        ];
        let current = logits.index(&index).to_kind(Kind::Float);
        let repetition = uploaded.get(self.repetition);
        let scaled =
            (&current / &repetition).where_self(&current.gt(0.0), &(&current * &repetition));
        let adjusted = (scaled - uploaded.get(self.subtract)).to_kind(logits.kind());
        logits.index_put(&index, &adjusted, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_and_frequency_count_the_completion_and_repetition_the_prompt_too() {
        let p = Penalties {
            presence: 0.5,
            frequency: 0.25,
            repetition: 2.0,
        };
        let got = token_penalties(&p, &[7, 9], &[3, 9, 3]);
        let want = [(3, 0.5 + 0.25 * 2.0), (7, 0.0), (9, 0.5 + 0.25)];
        assert_eq!(got.len(), want.len());
        for (g, (token, subtract)) in got.iter().zip(want) {
            assert_eq!((g.token, g.subtract, g.repetition), (token, subtract, 2.0));
        }
        let off = token_penalties(&Penalties::default(), &[1], &[1, 2]);
        assert!(off.is_empty());
        let presence_only = Penalties {
            presence: 1.0,
            ..Penalties::default()
        };
        // The prompt is not the completion: presence alone leaves prompt tokens alone.
        let got = token_penalties(&presence_only, &[5], &[6]);
        assert_eq!(got.iter().map(|p| p.token).collect::<Vec<_>>(), vec![6]);
    }

    #[test]
    fn applied_on_the_device_as_defined() {
        let logits = Tensor::from_slice(&[2.0f32, -2.0, 1.0, 4.0, 4.0, 4.0]).view([2, 3]);
        let adjust = |token, subtract, repetition| TokenPenalty {
            token,
            subtract,
            repetition,
        };
        let row0 = [adjust(0, 0.5, 2.0), adjust(1, 0.0, 2.0)];
        let row1 = [adjust(2, 1.0, 1.0)];
        let mut upload = Upload::default();
        let staged = StagedPenalties::stage(&mut upload, &[(0, &row0[..]), (1, &row1[..])]);
        let uploaded = upload.send(tch::Device::Cpu);
        let out = staged.unwrap().apply(&logits, &uploaded);
        let got: Vec<f32> = Vec::try_from(out.flatten(0, 1)).unwrap();
        assert_eq!(got, vec![2.0 / 2.0 - 0.5, -2.0 * 2.0, 1.0, 4.0, 4.0, 3.0]);
        let mut empty = Upload::default();
        assert!(StagedPenalties::stage(&mut empty, &[(0, &[][..])]).is_none());
    }
}
