//! Rejection filtering of teacher trajectories: keep only those whose completion the bundled
//! task's checker scores as a correct answer (`keep_correct` in the distillation config).
//!
//! Self-distillation copies the teacher's mistakes along with its decoding order; on a task with
//! a verifier, dropping the wrong trajectories before training removes that inherited error. The
//! questions must be problems of the bundled task (`17+4+32+9`); for free-form prompts there is
//! nothing to check an answer against, and asking for the filter is an error.

use super::rollout::Trajectory;
use crate::train::task::{check, Problem};

/// What the filter kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filtered {
    /// The trajectories with a correct final answer, in their original order.
    pub kept: Vec<Trajectory>,
    /// How many were dropped.
    pub dropped: usize,
}

/// Keeps the trajectories whose decoded completion (`decode` of its ids, special tokens
/// skipped) ends in the problem's sum; fails on a question that is not a task problem, and when
/// nothing is left.
pub fn keep_correct(
    trajectories: Vec<Trajectory>,
    decode: impl Fn(&[i64]) -> anyhow::Result<String>,
) -> anyhow::Result<Filtered> {
    let total = trajectories.len();
    let mut kept = Vec::with_capacity(total);
    for (i, trajectory) in trajectories.into_iter().enumerate() {
        let problem = checkable_problem(i, &trajectory.question)?;
        if check(&problem, &decode(&trajectory.completion_ids)?).answer_correct {
            kept.push(trajectory);
        }
    }
    anyhow::ensure!(
        !kept.is_empty(),
        "keep_correct: none of the {total} trajectories has a correct answer"
    );
    let dropped = total - kept.len();
    Ok(Filtered { kept, dropped })
}

/// The problem that question `index` (0-based) asks, or the error `keep_correct` gives for a
/// prompt it cannot check. The distiller also runs it over the prompts before a rollout, so a
/// free-form prompt set fails before the teacher decodes it, not after.
pub fn checkable_problem(index: usize, question: &str) -> anyhow::Result<Problem> {
    Problem::from_question(question).ok_or_else(|| {
        anyhow::anyhow!(
            "keep_correct: prompt {} asks {question:?}, which is not a problem of the bundled \
             task (only its answers can be checked)",
            index + 1
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::rollout::{TRAJECTORY_FORMAT, TRAJECTORY_VERSION};

    /// A trajectory whose completion "ids" are the bytes of `completion`.
    fn trajectory(question: &str, completion: &str) -> Trajectory {
        let ids: Vec<i64> = completion.bytes().map(i64::from).collect();
        Trajectory {
            format: TRAJECTORY_FORMAT.into(),
            version: TRAJECTORY_VERSION,
            question: question.into(),
            prompt_ids: vec![1],
            step_map: (1..=ids.len() as u32).collect(),
            completion_ids: ids,
            block_size: 4,
            steps_per_block: 4,
            finish_reason: "stop".into(),
        }
    }

    fn bytes_to_text(ids: &[i64]) -> anyhow::Result<String> {
        Ok(ids.iter().map(|&b| char::from(b as u8)).collect())
    }

    #[test]
    fn wrong_answers_are_dropped_and_the_order_is_kept() {
        let all = vec![
            trajectory("5+4+15", "5+4=9;9+15=24;#24"),
            trajectory("5+4+15", "5+4=9;9+15=25;#25"),
            trajectory("19+3", "19+3=22;#22"),
            trajectory("19+3", "19+3=22;"),
        ];
        let out = keep_correct(all.clone(), bytes_to_text).unwrap();
        assert_eq!(out.kept, vec![all[0].clone(), all[2].clone()]);
        assert_eq!(out.dropped, 2);
    }

    #[test]
    fn a_free_form_question_or_no_correct_answer_is_an_error() {
        let free_form = vec![trajectory("What is 2+2?", "4")];
        let err = keep_correct(free_form, bytes_to_text).unwrap_err();
        assert!(err.to_string().contains("prompt 1 asks"), "{err}");
        let all_wrong = vec![trajectory("1+1", "#3")];
        let err = keep_correct(all_wrong, bytes_to_text).unwrap_err();
        assert!(err.to_string().contains("none of the 1"), "{err}");
    }
}
